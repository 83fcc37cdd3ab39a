/* The shared emitter: turns one kernel into statements, in a tree of blocks.
 *
 * Expressions become inline C expressions wherever that keeps the semantics;
 * statements appear only for reductions (a loop), for nodes used more than once
 * (computed once into a temporary) and for selects whose branches need
 * statements (an if/else, so the branch not taken is never evaluated — no GNU
 * statement expressions, so the OpenCL dialect can share this).
 *
 * Reductions are hoisted out of loops whose variables they do not use, as far as
 * is safe: never out of a branch that may not run (select branch, conditional
 * store), never when they read a buffer the kernel writes (order would change),
 * and out of a reduction loop only under a guard that the loop runs at least
 * once. Main loops always run (the kernel returns early when a main extent is
 * zero), so hoisting out of them needs no guard. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg_internal.h"

void cg_fail(cg_t *g, flagos_code_t code, const char *fmt, ...) {
  if (g->err) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  g->err = flagos_status_new(code, "kernel '%s': %s", g->k->name, msg);
}

const char *cg_fmt(cg_t *g, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  char *s = fl_arena_alloc(g->a, (size_t)(n > 0 ? n : 0) + 1);
  vsnprintf(s, (size_t)(n > 0 ? n : 0) + 1, fmt, ap);
  va_end(ap);
  return s;
}

void cg_line(fl_buf_t *b, int depth, const char *fmt, ...) {
  for (int i = 0; i < depth; i++) fl_buf_puts(b, "  ");
  va_list ap;
  va_start(ap, fmt);
  fl_buf_vprintf(b, fmt, ap);
  va_end(ap);
  fl_buf_putc(b, '\n');
}

const char *cg_vec_elem(const char *stype) {
  static const char *const map[][2] = {{"float", "float"},   {"int32_t", "int"},  {"uint32_t", "uint"}, {"uint16_t", "ushort"},
                                        {"int16_t", "short"}, {"uint8_t", "uchar"}, {"int8_t", "char"}};
  for (size_t i = 0; stype && i < sizeof map / sizeof map[0]; i++)
    if (!strcmp(stype, map[i][0])) return map[i][1];
  return NULL;
}

bool cg_dtype_supported(flagos_dtype_t dt) {
  return dt > FLAGOS_UNDEFINED && dt < FLAGOS_DTYPE_COUNT && dt != FLAGOS_STRING && dt != FLAGOS_COMPLEX64 &&
         dt != FLAGOS_COMPLEX128;
}

/* ---- blocks ---- */
cg_block_t *cg_blk_new(cg_t *g, cg_block_t *parent, cg_block_kind_t kind) {
  cg_block_t *b = fl_arena_alloc(g->a, sizeof(*b));
  b->parent = parent;
  b->kind = kind;
  b->depth = parent ? parent->depth + 1 : 1;
  b->var = -1;
  return b;
}

/* Appends a child block's statements to its parent's, wrapped in `open`/"}". */
void cg_blk_close(cg_block_t *b, const char *open) {
  cg_block_t *p = b->parent;
  if (open) cg_line(&p->buf, p->depth, "%s", open);
  if (b->buf.len) fl_buf_append(&p->buf, b->buf.data, b->buf.len);
  if (open) cg_line(&p->buf, p->depth, "}");
  p->has_loop |= b->has_loop;
  fl_buf_free(&b->buf);
}

static const char *memo_find(cg_block_t *b, const kir_expr_t *e) {
  for (; b; b = b->parent)
    for (int i = 0; i < b->n_memo; i++)
      if (b->memo[i].e == e) return b->memo[i].name;
  return NULL;
}

void cg_memo_add(cg_t *g, cg_block_t *b, const kir_expr_t *e, const char *name) {
  if (b->n_memo == b->cap_memo) {
    int nc = b->cap_memo ? b->cap_memo * 2 : 8;
    cg_memo_t *m = fl_arena_alloc(g->a, sizeof(*m) * (size_t)nc);
    if (b->n_memo) memcpy(m, b->memo, sizeof(*m) * (size_t)b->n_memo);
    b->memo = m;
    b->cap_memo = nc;
  }
  b->memo[b->n_memo++] = (cg_memo_t){e, name};
}

/* After a store to `buf`, values computed from loads of it are stale. */
static void memo_forget_loads(cg_t *g, cg_block_t *b, int buf) {
  for (; b; b = b->parent) {
    int j = 0;
    for (int i = 0; i < b->n_memo; i++) {
      cg_info_t *in = cg_info(g, b->memo[i].e);
      if (!in || !cg_bit_get(in->loads, buf)) b->memo[j++] = b->memo[i];
    }
    b->n_memo = j;
  }
}

const char *cg_tmp_name(cg_t *g, const char *prefix) { return cg_fmt(g, "%s%d", prefix, g->next_tmp++); }

/* ---- expressions ---- */
const char *cg_ex_index(cg_t *g, const kir_expr_t *e, cg_block_t *b) {
  bool saved = g->index_ctx;
  g->index_ctx = true;
  const char *t = cg_ex(g, e, b);
  g->index_ctx = saved;
  return t;
}

/* Row-major linear offset of idx into buffer `buf`. */
static const char *linear(cg_t *g, int buf, kir_expr_t *const *idx, cg_block_t *b) {
  const kir_buf_t *kb = &g->k->bufs[buf];
  const char *s = NULL;
  for (int d = 0; d < kb->rank; d++) {
    if (kir_is_const(idx[d], 0)) continue;
    const char *it = cg_ex_index(g, idx[d], b), *st = g->stride[buf][d];
    const char *term = strcmp(st, "1") == 0 ? it : cg_fmt(g, "%s * %s", it, st);
    if (st[0] == 'b') g->stride_used[buf][d] = true;
    s = s ? cg_fmt(g, "%s + %s", s, term) : term;
  }
  return s ? s : "0";
}

static const char *ex_select(cg_t *g, const kir_expr_t *e, cg_block_t *b, bool share) {
  const char *c = cg_ex(g, e->a[0], b);
  cg_block_t *bt = cg_blk_new(g, b, CG_LAZY), *bf = cg_blk_new(g, b, CG_LAZY);
  const char *x = cg_ex(g, e->a[1], bt), *y = cg_ex(g, e->a[2], bf);
  if (!bt->buf.len && !bf->buf.len) {
    const char *t = cg_fmt(g, "(%s ? %s : %s)", c, x, y);
    if (!share) return t;
    const char *name = cg_tmp_name(g, "t");
    cg_line(&b->buf, b->depth, "const %s %s = %s;", cg_ctype(g, e->dtype), name, t);
    cg_memo_add(g, b, e, name);
    return name;
  }
  const char *name = cg_tmp_name(g, "t");
  cg_line(&b->buf, b->depth, "%s %s;", cg_ctype(g, e->dtype), name);
  cg_line(&bt->buf, bt->depth, "%s = %s;", name, x);
  cg_line(&bf->buf, bf->depth, "%s = %s;", name, y);
  cg_line(&b->buf, b->depth, "if (%s) {", c);
  cg_blk_close(bt, NULL);
  cg_line(&b->buf, b->depth, "} else {");
  cg_blk_close(bf, NULL);
  cg_line(&b->buf, b->depth, "}");
  if (share) cg_memo_add(g, b, e, name);
  return name;
}

bool cg_loads_written(cg_t *g, const cg_info_t *in) {
  for (int i = 0; i < g->k->n_bufs; i++)
    if (g->k->bufs[i].written && cg_bit_get(in->loads, i)) return true;
  return false;
}

/* Per-point cost of an expression DAG, for the parallel threshold: one per node
 * plus the trip counts of reductions (symbolic extents stay symbolic; extents
 * that vary per point count as 16). Memoised so shared subtrees cost once. */
static kir_expr_t *cost(cg_t *g, const kir_expr_t *e) {
  cg_info_t *in = cg_info(g, e);
  if (!in) return kir_i64(g->a, 1);
  if (in->cost) return in->cost;
  in->cost = kir_i64(g->a, 1); /* guards against revisiting while computing */
  kir_expr_t *c = kir_i64(g->a, 1);
  for (int i = 0; i < e->n; i++) c = kir_add(g->a, c, cost(g, e->a[i]));
  if (e->kind == KIR_REDUCE) {
    for (int i = 0; i < e->nr; i++) {
      int64_t v;
      cg_info_t *ri = cg_info(g, e->rext[i]);
      bool invariant = ri != NULL;
      for (int w = 0; ri && w < g->nw_var; w++) invariant = invariant && ri->vars[w] == 0;
      for (int w = 0; ri && w < g->nw_buf; w++) invariant = invariant && ri->loads[w] == 0;
      if (kir_eval_int(e->rext[i], NULL, 0, &v)) c = kir_mul(g->a, c, kir_i64(g->a, v > 0 ? v : 0));
      else if (invariant) c = kir_mul(g->a, c, e->rext[i]);
      else c = kir_mul(g->a, c, kir_i64(g->a, 16));
    }
  }
  in->cost = c;
  return c;
}

/* C text of an int64 expression over symbols and constants (no statements). */
static const char *inline_text(cg_t *g, const kir_expr_t *e) {
  bool io = g->inline_only, ic = g->index_ctx;
  g->inline_only = g->index_ctx = true;
  const char *t = cg_ex(g, e, NULL);
  g->inline_only = io;
  g->index_ctx = ic;
  return t;
}

#define MAX_GUARDS 32

static const char *ex_reduce(cg_t *g, const kir_expr_t *e, cg_block_t *b) {
  cg_info_t *in = cg_info(g, e);
  cg_block_t *t = b;
  const kir_expr_t *guards[MAX_GUARDS];
  int ng = 0;
  if (in && !cg_loads_written(g, in)) {
    uint64_t *needed = cg_bits_new(g, g->nw_var);
    cg_bits_or(needed, in->vars, g->nw_var);
    for (cg_block_t *x = b; x->parent; x = x->parent) {
      if (x->kind == CG_LAZY || (x->var >= 0 && cg_bit_get(needed, x->var))) break;
      if (x->kind == CG_RLOOP) {
        cg_info_t *xi = cg_info(g, x->ext);
        if (ng == MAX_GUARDS || !xi || cg_loads_written(g, xi)) break;
        guards[ng++] = x->ext;
        cg_bits_or(needed, xi->vars, g->nw_var);
      }
      t = x->parent;
    }
  }
  if (g->coop_level != CG_NO_COOP && t == g->coop_blk && !ng && in && !cg_loads_written(g, in) && cg_flat_extents(g, e))
    return cg_reduce_coop(g, e, t);
  const char *T = cg_ctype(g, e->dtype), *acc = cg_tmp_name(g, "r");
  cg_block_t *host = t;
  if (ng) {
    const char *cond = NULL;
    for (int i = 0; i < ng; i++) {
      const char *gt = cg_fmt(g, "%s > 0", cg_ex_index(g, guards[i], t));
      cond = cond ? cg_fmt(g, "%s && %s", cond, gt) : gt;
    }
    cg_line(&t->buf, t->depth, "%s %s = %s;", T, acc, cg_reduce_init(g, e->op, e->dtype));
    cg_line(&t->buf, t->depth, "if (%s) {", cond);
    host = cg_blk_new(g, t, CG_LAZY);
  } else {
    cg_line(&t->buf, t->depth, "%s %s = %s;", T, acc, cg_reduce_init(g, e->op, e->dtype));
  }
  cg_block_t **loops = fl_arena_alloc(g->a, sizeof(*loops) * (size_t)e->nr);
  const char **ext = fl_arena_alloc(g->a, sizeof(*ext) * (size_t)e->nr);
  cg_block_t *cur = host;
  for (int i = 0; i < e->nr; i++) {
    ext[i] = cg_ex_index(g, e->rext[i], cur);
    loops[i] = cg_blk_new(g, cur, CG_RLOOP);
    loops[i]->var = e->rvars[i];
    loops[i]->ext = e->rext[i];
    cur = loops[i];
  }
  const char *x = cg_ex(g, e->a[0], cur);
  bool simple = cur->buf.len == 0 && !cur->has_loop;
  cg_line(&cur->buf, cur->depth, "%s = %s;", acc, cg_reduce_step(g, e->op, e->dtype, acc, x));
  /* At function level no thread team is running yet: the reduction itself may use one. */
  const char *work = t->kind == CG_ROOT && !g->k->serial && g->d->reduce_parallel ? inline_text(g, cost(g, e)) : NULL;
  for (int i = e->nr - 1; i >= 0; i--) {
    cg_block_t *p = loops[i]->parent;
    bool simd = i == e->nr - 1 && simple;
    if (!(i == 0 && work && g->d->reduce_parallel(g, e->op, e->dtype, acc, simd, work, p->depth, &p->buf)) && simd &&
        g->d->reduce_pragma)
      g->d->reduce_pragma(g, e->op, e->dtype, acc, p->depth, &p->buf);
    int v = e->rvars[i];
    loops[i]->has_loop = true;
    cg_blk_close(loops[i], cg_fmt(g, "for (int64_t v%d = 0; v%d < %s; v%d++) {", v, v, ext[i], v));
  }
  if (ng) {
    cg_blk_close(host, NULL);
    cg_line(&t->buf, t->depth, "}");
  }
  cg_memo_add(g, t, e, acc);
  return acc;
}

/* ---- the vector form ----
 * A load or store moves vec_w (4 or 8) elements at once where its indices are plain
 * (variables, constants, symbols), the last one is the innermost loop variable
 * and no other uses it: the vec_w points then touch consecutive elements. Only
 * buffers the kernel does not write are loaded as vectors (a load after a store
 * at the same point must see it), and only buffers it does not load and stores
 * once are stored as vectors (the stores move after the points). */
static bool vec_access(cg_t *g, int buf, kir_expr_t *const *idx) {
  const kir_buf_t *kb = &g->k->bufs[buf];
  if (kb->rank < 1) return false;
  for (int d = 0; d < kb->rank; d++) {
    const kir_expr_t *x = idx[d];
    if (x->kind != KIR_VAR && x->kind != KIR_CONST && x->kind != KIR_SYM) return false;
    if ((x->kind == KIR_VAR && x->var == g->vec_var) != (d == kb->rank - 1)) return false;
  }
  return true;
}

static bool stored_twice(cg_t *g, int buf) {
  int n = 0;
  for (int s = 0; s < g->k->n_stores; s++) {
    const kir_store_t *st = &g->k->stores[s];
    n += st->buf == buf;
    for (int r = 0; r < 2 + g->k->bufs[st->buf].rank; r++) {
      const kir_expr_t *e = r == 0 ? st->value : r == 1 ? st->cond : st->idx[r - 2];
      cg_info_t *in = e ? cg_info(g, e) : NULL;
      if (in && cg_bit_get(in->loads, buf)) return true;
    }
  }
  return n > 1;
}

const char *cg_ex(cg_t *g, const kir_expr_t *e, cg_block_t *b) {
  if (g->err) return "0";
  if (g->inline_only && (e->kind == KIR_REDUCE || e->kind == KIR_VAR)) {
    cg_fail(g, FLAGOS_ERR_INTERNAL, "a buffer dim or loop extent uses a %s",
            e->kind == KIR_VAR ? "loop variable" : "reduction");
    return "0";
  }
  cg_info_t *in = g->inline_only ? NULL : cg_info(g, e);
  bool leaf = e->kind == KIR_CONST || e->kind == KIR_VAR || e->kind == KIR_SYM;
  bool share = in && !leaf && (in->refs > 1 || e->kind == KIR_REDUCE);
  if (share) {
    const char *m = memo_find(b, e);
    if (m) return m;
  }
  const char *t;
  switch (e->kind) {
  case KIR_CONST: return cg_const(g, e);
  case KIR_VAR: return g->vec_base && e->var == g->vec_var ? "fo_vb" : cg_fmt(g, "v%d", e->var);
  case KIR_SYM:
    if (e->sym < 0 || e->sym >= g->k->n_syms) {
      cg_fail(g, FLAGOS_ERR_INTERNAL, "symbol %d is outside the kernel's %d symbols", e->sym, g->k->n_syms);
      return "0";
    }
    g->sym_used[e->sym] = true;
    return cg_fmt(g, "S%d", e->sym);
  case KIR_LOAD:
    if (e->buf < 0 || e->buf >= g->k->n_bufs) {
      cg_fail(g, FLAGOS_ERR_INTERNAL, "load from buffer %d of %d", e->buf, g->k->n_bufs);
      return "0";
    }
    g->buf_loaded[e->buf] = true;
    if (g->vec && b == g->point && !g->k->bufs[e->buf].written && vec_access(g, e->buf, e->a)) {
      const char *arr = cg_tmp_name(g, "fo_v");
      g->vec_base = true;
      const char *off = linear(g, e->buf, e->a, b);
      g->vec_base = false;
      if (g->d->vec_load(g, e->buf, off, arr, 0, &g->vec_pre)) {
        g->vec_buf[e->buf] = true;
        g->n_vec++;
        t = cg_decode(g, g->k->bufs[e->buf].dtype, cg_fmt(g, "%s[fo_u]", arr));
        break;
      }
    }
    t = cg_decode(g, g->k->bufs[e->buf].dtype, cg_fmt(g, "b%d[%s]", e->buf, linear(g, e->buf, e->a, b)));
    if (g->rc_var >= 0) {
      const char *c = cg_rc_load(g, e, t);
      if (c) t = c;
    }
    break;
  case KIR_UNARY: t = cg_unary(g, e, cg_ex(g, e->a[0], b)); break;
  case KIR_BINARY: {
    const char *x = cg_ex(g, e->a[0], b);
    t = cg_binary(g, e, x, cg_ex(g, e->a[1], b));
    break;
  }
  case KIR_SELECT: return ex_select(g, e, b, share);
  case KIR_CAST: t = cg_cast(g, e->a[0]->dtype, e->dtype, e->sat, cg_ex(g, e->a[0], b)); break;
  case KIR_BITCAST: t = cg_bitcast(g, e->a[0]->dtype, e->dtype, cg_ex(g, e->a[0], b)); break;
  case KIR_REDUCE: return ex_reduce(g, e, b);
  default:
    cg_fail(g, FLAGOS_ERR_INTERNAL, "unknown expression kind %d", (int)e->kind);
    return "0";
  }
  if (!share) return t;
  const char *name = cg_tmp_name(g, "t");
  cg_line(&b->buf, b->depth, "const %s %s = %s;", cg_ctype(g, e->dtype), name, t);
  cg_memo_add(g, b, e, name);
  return name;
}

static void emit_store(cg_t *g, const kir_store_t *s, cg_block_t *p) {
  const kir_buf_t *kb = &g->k->bufs[s->buf];
  cg_block_t *b = p;
  const char *cond = NULL;
  if (s->cond) {
    cond = cg_ex(g, s->cond, p);
    b = cg_blk_new(g, p, CG_LAZY);
  }
  const char *v = cg_ex(g, s->value, b);
  if (g->vec && !s->cond && vec_access(g, s->buf, s->idx) && !g->buf_loaded[s->buf] && !stored_twice(g, s->buf)) {
    const char *arr = cg_tmp_name(g, "fo_w");
    g->vec_base = true;
    const char *off = linear(g, s->buf, s->idx, b);
    g->vec_base = false;
    fl_buf_t post = {0};
    if (g->d->vec_store(g, s->buf, off, arr, 0, &post)) {
      cg_line(&g->vec_pre, 0, "%s %s[%d];", g->d->stype(kb->dtype), arr, g->vec_w);
      if (post.len) fl_buf_append(&g->vec_post, post.data, post.len);
      fl_buf_free(&post);
      cg_line(&b->buf, b->depth, "%s[fo_u] = %s;", arr, cg_store_value(g, s->value->dtype, kb->dtype, v));
      g->vec_buf[s->buf] = true;
      g->n_vec++;
      g->buf_stored[s->buf] = true;
      memo_forget_loads(g, p, s->buf);
      return;
    }
    fl_buf_free(&post);
  }
  const char *at = linear(g, s->buf, s->idx, b);
  if (g->tile_lw >= 0) { /* the tile's second pass stores it */
    g->tile_buf = s->buf;
    g->tile_at = at;
    g->buf_stored[s->buf] = true;
    cg_line(&b->buf, b->depth, "%s = %s;", cg_tile_slot(g), cg_store_value(g, s->value->dtype, kb->dtype, v));
    return;
  }
  /* In a row shared by a group, one thread writes (the others computed the same value). */
  bool lead = g->coop_level != CG_NO_COOP && p == g->coop_blk;
  cg_line(&b->buf, b->depth, "%sb%d[%s] = %s;", lead ? "if (fo_gt == 0) " : "", s->buf, at,
          cg_store_value(g, s->value->dtype, kb->dtype, v));
  if (s->cond) cg_blk_close(b, cg_fmt(g, "if (%s) {", cond));
  g->buf_stored[s->buf] = true;
  memo_forget_loads(g, p, s->buf);
}

/* ---- kernel ---- */
static void setup_strides(cg_t *g) {
  const kir_kernel_t *k = g->k;
  g->stride = fl_arena_alloc(g->a, sizeof(*g->stride) * (size_t)(k->n_bufs + 1));
  g->stride_used = fl_arena_alloc(g->a, sizeof(*g->stride_used) * (size_t)(k->n_bufs + 1));
  for (int i = 0; i < k->n_bufs; i++) {
    const kir_buf_t *kb = &k->bufs[i];
    int r = kb->rank;
    g->stride[i] = fl_arena_alloc(g->a, sizeof(char *) * (size_t)(r + 1));
    g->stride_used[i] = fl_arena_alloc(g->a, sizeof(bool) * (size_t)(r + 1));
    kir_expr_t *st = kir_i64(g->a, 1);
    for (int d = r - 1; d >= 0; d--) {
      int64_t v;
      if (kir_eval_int(st, NULL, 0, &v)) g->stride[i][d] = cg_fmt(g, "%lld", (long long)v);
      else g->stride[i][d] = cg_fmt(g, "b%d_s%d", i, d);
      if (d > 0) st = kir_mul(g->a, st, kb->dims[d]);
    }
  }
}

/* Declarations of the strides used (recomputed here: dims are symbol expressions). */
static void emit_stride_decls(cg_t *g, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  g->inline_only = true;
  g->index_ctx = true;
  for (int i = 0; i < k->n_bufs; i++) {
    const kir_buf_t *kb = &k->bufs[i];
    kir_expr_t *st = kir_i64(g->a, 1);
    for (int d = kb->rank - 1; d >= 0; d--) {
      if (g->stride_used[i][d]) cg_line(out, 1, "const int64_t b%d_s%d = %s;", i, d, cg_ex(g, st, NULL));
      if (d > 0) st = kir_mul(g->a, st, kb->dims[d]);
    }
  }
}

/* Emits the stores into a fresh tree of blocks and wraps the main levels;
 * returns the function body's block. In the vector form, returns NULL (and
 * emits nothing) where the form does not apply. */
static cg_block_t *emit_body(cg_t *g) {
  const kir_kernel_t *k = g->k;
  const cg_dialect_t *d = g->d;
  cg_block_t *root = cg_blk_new(g, NULL, CG_ROOT), *cur = root;
  cg_block_t **levels = fl_arena_alloc(g->a, sizeof(*levels) * (size_t)(k->rank + 1));
  for (int i = 0; i < k->rank; i++) {
    cur = cg_blk_new(g, cur, CG_LOOP);
    cur->var = k->vars[i];
    cur->level = i;
    levels[i] = cur;
  }
  g->levels = levels;
  g->point = cur;
  if (g->coop_level != CG_NO_COOP) g->coop_blk = g->coop_level < 0 ? root : levels[g->coop_level];
  g->n_vec = 0;
  g->rc_ready = g->rc_inner_hit = false;
  g->rc_var = g->coop_level != CG_NO_COOP ? g->rc_inner_var : -1;
  for (int s = 0; s < k->n_stores && !g->err; s++) emit_store(g, &k->stores[s], cur);
  g->rc_var = -1;
  if (g->vec) {
    /* per-point reduction loops stay one point per thread: 4 points in a row
     * would walk 4 strided ranges one after the other */
    bool hoisted = root->buf.len > 0 || cur->has_loop;
    for (int i = 0; i + 1 < k->rank; i++) hoisted = hoisted || levels[i]->buf.len > 0;
    if (hoisted || !g->n_vec || g->err) {
      for (int i = 0; i < k->rank; i++) fl_buf_free(&levels[i]->buf);
      fl_buf_free(&root->buf);
      fl_buf_free(&g->vec_pre);
      fl_buf_free(&g->vec_post);
      return NULL;
    }
  }
  if (g->tile_lw >= 0) { /* everything per point, or not tiled (the caller emits again) */
    bool hoisted = root->buf.len > 0 || g->err;
    for (int i = 0; i + 1 < k->rank; i++) hoisted = hoisted || levels[i]->buf.len > 0;
    if (!hoisted) cg_tile_loops(g, cur, &root->buf);
    for (int i = 0; i < k->rank; i++) fl_buf_free(&levels[i]->buf);
    if (hoisted) fl_buf_free(&root->buf);
    return hoisted ? NULL : root;
  }
  for (int i = k->rank - 1; i >= 0; i--) {
    cg_block_t *p = levels[i]->parent;
    p->pre_len = p->buf.len;
    if (g->coop_level != CG_NO_COOP) cg_coop_main_loop(g, levels[i], &p->buf);
    else d->main_loop(g, levels[i], &p->buf);
    p->has_loop |= levels[i]->has_loop;
    fl_buf_free(&levels[i]->buf);
  }
  fl_buf_free(&g->vec_pre);
  fl_buf_free(&g->vec_post);
  return root;
}

static bool has_16bit_buf(const kir_kernel_t *k) {
  for (int i = 0; i < k->n_bufs; i++)
    if (flagos_dtype_size(k->bufs[i].dtype) == 2) return true;
  return false;
}

/* Whether the innermost extent and every vector buffer's last dim may be
 * multiples of vec_w (constants that are not rule the form out). */
static bool vec_extents_fit(cg_t *g) {
  const kir_kernel_t *k = g->k;
  for (int i = 0; i <= k->n_bufs; i++) {
    const kir_expr_t *last = i == k->n_bufs ? k->extents[k->rank - 1] : g->vec_buf[i] ? k->bufs[i].dims[k->bufs[i].rank - 1] : NULL;
    int64_t c;
    if (last && kir_eval_int(last, NULL, 0, &c) && c % g->vec_w != 0) return false;
  }
  return true;
}

void cg_vec_point(cg_t *g, cg_block_t *blk, int depth, fl_buf_t *out) {
  /* vec_pre / vec_post were written at depth 0: indent them here */
  for (int w = 0; w < 2; w++) {
    fl_buf_t *src = w ? &g->vec_post : &g->vec_pre;
    if (w) {
      cg_line(out, depth, "#pragma unroll");
      cg_line(out, depth, "for (int fo_u = 0; fo_u < %d; fo_u++) {", g->vec_w);
      cg_line(out, depth + 1, "const int64_t v%d = fo_vb + fo_u;", blk->var);
      cg_line(out, depth + 1, "(void)v%d;", blk->var);
      if (blk->buf.len) fl_buf_append(out, blk->buf.data, blk->buf.len);
      cg_line(out, depth, "}");
    }
    const char *p = src->data ? src->data : "";
    while (*p) {
      const char *nl = strchr(p, '\n');
      size_t n = nl ? (size_t)(nl - p) : strlen(p);
      for (int i = 0; i < depth; i++) fl_buf_puts(out, "  ");
      fl_buf_append(out, p, n);
      fl_buf_putc(out, '\n');
      p += n + (nl ? 1 : 0);
    }
  }
}

flagos_status_t cg_emit_kernel(const cg_dialect_t *d, const kir_kernel_t *k, fl_buf_t *out) {
  cg_t g0 = {0}, *g = &g0;
  g->d = d;
  g->k = k;
  g->a = fl_arena_create();
  g->nw_var = (k->next_var + 63) / 64;
  g->nw_buf = (k->n_bufs + 63) / 64;
  g->sym_used = fl_arena_alloc(g->a, (size_t)k->n_syms + 1);
  g->buf_loaded = fl_arena_alloc(g->a, (size_t)k->n_bufs + 1);
  g->buf_stored = fl_arena_alloc(g->a, (size_t)k->n_bufs + 1);
  for (int i = 0; i < k->n_bufs; i++)
    if (!cg_dtype_supported(k->bufs[i].dtype) || !d->stype(k->bufs[i].dtype))
      cg_fail(g, FLAGOS_ERR_UNSUPPORTED, "buffer %d ('%s') has dtype %s, which the %s emitter cannot hold", i,
              k->bufs[i].name, flagos_dtype_name(k->bufs[i].dtype), d->name);
  for (int s = 0; s < k->n_stores && !g->err; s++) {
    const kir_store_t *st = &k->stores[s];
    if (st->buf < 0 || st->buf >= k->n_bufs) {
      cg_fail(g, FLAGOS_ERR_INTERNAL, "store %d to buffer %d of %d", s, st->buf, k->n_bufs);
      break;
    }
    for (int i = 0; i < k->bufs[st->buf].rank; i++) cg_analyze(g, st->idx[i]);
    cg_analyze(g, st->value);
    if (st->cond) cg_analyze(g, st->cond);
  }
  /* Stores may use only the kernel's loop variables (reduction variables are bound
   * inside their reductions); anything else is a lowering bug, reported here
   * rather than as an undeclared identifier from the C compiler. */
  uint64_t *loop_vars = cg_bits_new(g, g->nw_var);
  for (int i = 0; i < k->rank; i++)
    if (k->vars[i] >= 0 && k->vars[i] < k->next_var) cg_bit_set(loop_vars, k->vars[i]);
  for (int s = 0; s < k->n_stores && !g->err; s++) {
    const kir_store_t *st = &k->stores[s];
    const kir_expr_t *roots[2] = {st->value, st->cond};
    for (int r = 0; r < 2 + k->bufs[st->buf].rank && !g->err; r++) {
      const kir_expr_t *e = r < 2 ? roots[r] : st->idx[r - 2];
      cg_info_t *in = e ? cg_info(g, e) : NULL;
      for (int v = 0; in && v < k->next_var; v++)
        if (cg_bit_get(in->vars, v) && !cg_bit_get(loop_vars, v)) {
          cg_fail(g, FLAGOS_ERR_INTERNAL, "store %d uses variable v%d outside the loop that binds it", s, v);
          break;
        }
    }
  }
  setup_strides(g);

  /* Extents first: an empty iteration space returns before anything else runs. */
  fl_buf_t pre = {0}, mid = {0};
  g->inline_only = true;
  g->index_ctx = true;
  for (int i = 0; i < k->rank; i++) cg_line(&pre, 1, "const int64_t E%d = %s;", i, cg_ex(g, k->extents[i], NULL));
  if (k->rank > 0) {
    fl_buf_t c = {0};
    for (int i = 0; i < k->rank; i++) fl_buf_printf(&c, "%sE%d <= 0", i ? " || " : "", i);
    cg_line(&pre, 1, "if (%s) return;", c.data);
    fl_buf_free(&c);
  }
  g->inline_only = false;
  g->index_ctx = false;

  cg_plan_coop(g);
  cg_plan_tile(g);
  cg_block_t *root = emit_body(g), *vroot = NULL;
  if (!root) {
    g->tile_lw = -1;
    root = emit_body(g);
  }
  /* The vector form: a second emission, kept when it found vector accesses and
   * everything runs per point (no statements hoisted out of the innermost level). */
  /* $FLAGOS_CODEGEN_NO_VEC=1 keeps the scalar form alone (for measurements) */
  const char *novec = getenv("FLAGOS_CODEGEN_NO_VEC");
  if (d->vec_load && !(novec && atoi(novec) > 0) && !k->serial && k->rank > 0 && g->coop_level == CG_NO_COOP &&
      g->tile_lw < 0 && !g->err) {
    g->vec = true;
    g->vec_var = k->vars[k->rank - 1];
    g->vec_buf = fl_arena_alloc(g->a, (size_t)k->n_bufs + 1);
    /* 8 points where a buffer has 16-bit elements (16-byte accesses), else 4;
     * 8 whose extents rule it out at compile time falls back to 4 */
    g->vec_w = d->vec_wide && has_16bit_buf(k) ? 8 : 4;
    for (;;) {
      memset(g->vec_buf, 0, (size_t)k->n_bufs + 1);
      vroot = emit_body(g);
      if (!vroot || vec_extents_fit(g) || g->vec_w == 4) break;
      fl_buf_free(&vroot->buf);
      vroot = NULL;
      g->vec_w = 4;
    }
    g->vec = false;
    /* a vector form whose extents rule it out at compile time is dropped */
    if (vroot && !vec_extents_fit(g)) {
      fl_buf_free(&vroot->buf);
      vroot = NULL;
    }
  }
  if (g->work_used) {
    kir_expr_t *w = kir_i64(g->a, 0);
    for (int s = 0; s < k->n_stores; s++) {
      w = kir_add(g->a, w, cost(g, k->stores[s].value));
      if (k->stores[s].cond) w = kir_add(g->a, w, cost(g, k->stores[s].cond));
    }
    for (int i = 0; i < k->rank; i++) w = kir_mul(g->a, w, k->extents[i]);
    g->inline_only = true;
    g->index_ctx = true;
    cg_line(&mid, 1, "const int64_t fo_work = %s;", cg_ex(g, w, NULL));
  }
  emit_stride_decls(g, &mid);
  if (g->coop_level != CG_NO_COOP) {
    /* The row's size (largest trip count, or points of the deeper levels) lets
     * a dialect give short rows smaller groups; a row that is the whole space
     * takes the whole group. */
    kir_expr_t *rs = g->coop_rowsz_e;
    if (g->coop_level + 1 < k->rank) {
      kir_expr_t *inner = kir_i64(g->a, 1);
      for (int i = g->coop_level + 1; i < k->rank; i++) inner = kir_mul(g->a, inner, k->extents[i]);
      rs = rs ? kir_bin(g->a, KIR_MAX, rs, inner) : inner;
    }
    g->coop_rowsz = g->coop_level < 0 || g->coop_rowsz_unknown || !rs ? NULL : inline_text(g, rs);
  }
  const char *vcond = NULL;
  if (vroot) {
    /* vectors need vec_w | the innermost extent and every vector buffer's last
     * dim (every vector then starts at a multiple of vec_w elements), and
     * aligned buffers */
    g->inline_only = g->index_ctx = true;
    vcond = cg_fmt(g, "E%d %% %d == 0", k->rank - 1, g->vec_w);
    for (int i = 0; i < k->n_bufs; i++) {
      if (!g->vec_buf[i]) continue;
      const kir_buf_t *kb = &k->bufs[i];
      vcond = cg_fmt(g, "%s && (%s) %% %d == 0", vcond, cg_ex(g, kb->dims[kb->rank - 1], NULL), g->vec_w);
      const char *al = d->vec_aligned ? d->vec_aligned(g, i) : NULL;
      if (al) vcond = cg_fmt(g, "%s && %s", vcond, al);
    }
  }
  flagos_status_t st = g->err;
  if (!st) {
    d->kernel_begin(g, out);
    if (g->decls.len) fl_buf_append(out, g->decls.data, g->decls.len);
    if (pre.len) fl_buf_append(out, pre.data, pre.len);
    if (mid.len) fl_buf_append(out, mid.data, mid.len);
    if (g->coop_level != CG_NO_COOP) {
      d->coop_setup(g, out);
      if (g->coop_level < 0) cg_line(out, 1, "if (fo_row0 > 0) return; /* one row: the whole space */");
    }
    if (vroot) {
      cg_line(out, 1, "if (%s) {", vcond);
      if (vroot->buf.len) fl_buf_append(out, vroot->buf.data, vroot->buf.len);
      cg_line(out, 1, "} else {");
    }
    cg_coop_put(g, &root->buf, out);
    if (vroot) cg_line(out, 1, "}");
    d->kernel_end(g, out);
  }
  fl_buf_free(&pre);
  fl_buf_free(&mid);
  fl_buf_free(&root->buf);
  if (vroot) fl_buf_free(&vroot->buf);
  fl_buf_free(&g->decls);
  fl_arena_destroy(g->a);
  return st;
}
