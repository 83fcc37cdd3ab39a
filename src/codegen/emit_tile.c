/* The tiled form of the GPU dialects: a kernel that stores along its innermost
 * level while it loads along another (a 2-D transpose: y[i,j] = x[j,i]) reads
 * with one of the two accesses a stride apart, so every warp touches 32 cache
 * lines for 128 useful bytes. Here a group takes TxT tiles of the two levels
 * (T = 64 for elements of up to 4 bytes, 32 for wider ones): a first pass
 * evaluates the values with the loads' level fastest across threads and puts
 * them in a group-shared tile (its rows padded to T+1 entries: the second pass
 * reads a column without bank conflicts), a barrier, then a second pass stores
 * them with the innermost level fastest. A 64x64 tile gives each of 256
 * threads 16 independent loads per pass (a 32x32 one 4): on an H100 the loads
 * of a 32x32 tile kept too few bytes in flight (70% of copy bandwidth). */
#include "codegen/cg_internal.h"

#include <stdlib.h>

/* Extents below this leave most of a tile's threads idle: those kernels stay
 * one thread per point. */
#define TILE_MIN 32


static bool is_var(const kir_expr_t *e, int v) { return e->kind == KIR_VAR && e->var == v; }

/* Loads in e: `across` becomes the level of the first whose last index is the
 * variable of an outer level while the innermost variable is in another index;
 * `along` is set by any whose last index is the innermost variable (it would be
 * read a stride apart in the first pass). */
static void tile_walk(cg_t *g, const kir_expr_t *e, int *across, bool *along) {
  cg_info_t *in = cg_info(g, e);
  if (!in || in->mark[0] == g->mark_gen[0]) return;
  in->mark[0] = g->mark_gen[0];
  const kir_kernel_t *k = g->k;
  int u = k->vars[k->rank - 1];
  if (e->kind == KIR_LOAD && e->n > 0) {
    const kir_expr_t *last = e->a[e->n - 1];
    if (is_var(last, u)) *along = true;
    for (int l = 0; l + 1 < k->rank && *across < 0; l++)
      if (is_var(last, k->vars[l]) && cg_bit_get(in->vars, u)) *across = l;
  }
  for (int i = 0; i < e->n; i++) tile_walk(g, e->a[i], across, along);
}

static bool tile_extent(const kir_expr_t *e) {
  int64_t v;
  return !kir_eval_int(e, NULL, 0, &v) || v >= TILE_MIN;
}

/* log2 of the tile's side: 64 (32 for 8-byte elements, whose 64x65 tile would
 * pass the 32 KB of local memory OpenCL promises). $FLAGOS_CODEGEN_TILE (32 or
 * 64) replaces it, for measurements. */
static int tile_log2(const kir_kernel_t *k, int buf) {
  const char *e = getenv("FLAGOS_CODEGEN_TILE");
  if (e && atoi(e) == 32) return 5;
  if (e && atoi(e) == 64) return 6;
  return flagos_dtype_size(k->bufs[buf].dtype) > 4 ? 5 : 6;
}

/* Elements a thread moves side by side in each pass: the dialect's tile_vec
 * (CUDA: 4, one 16-byte access; on an H100 64x64 tiles moved one float at a
 * time reached 79% of copy bandwidth) for a plain copy of 4-byte elements (the
 * stored value a load of the stored type, every index a variable or constant,
 * the load's row not using the tile's level), whose buffers' last dims are
 * multiples of it; else 1. The vector accesses are explicit (written for 4
 * elements): tiles inside both extents whose buffers are aligned (checked at
 * run time) take them, the others evaluate and guard each element.
 * $FLAGOS_CODEGEN_TILE_VEC=1 keeps 1, for measurements. */
static int tile_vec(cg_t *g, const kir_store_t *st) {
  const kir_kernel_t *k = g->k;
  const kir_expr_t *x = st->value;
  int v = g->d->tile_vec;
  const char *e = getenv("FLAGOS_CODEGEN_TILE_VEC");
  if ((e && *e && atoi(e) <= 1) || v != 4 || (1 << g->tile_sh) % v) return 1;
  flagos_dtype_t dt = k->bufs[st->buf].dtype;
  const char *el = cg_vec_elem(g->d->stype(dt));
  if (!el || flagos_dtype_size(dt) != 4 || x->kind != KIR_LOAD || x->dtype != dt || k->bufs[x->buf].dtype != dt)
    return 1;
  const kir_expr_t *dims[2] = {k->bufs[x->buf].dims[k->bufs[x->buf].rank - 1], k->bufs[st->buf].dims[k->rank - 1]};
  for (int i = 0; i < 2; i++) {
    int64_t c;
    if (!kir_eval_int(dims[i], NULL, 0, &c) || c % v) return 1;
  }
  int w = k->vars[g->tile_lw];
  for (int i = 0; i < x->n; i++) {
    const kir_expr_t *a = x->a[i];
    if (a->kind != KIR_VAR && a->kind != KIR_CONST) return 1;
    if (i + 1 < x->n && is_var(a, w)) return 1;
  }
  return v;
}

/* The first pass puts element fo_x of its vector in fo_tv[fo_x] (put_loop
 * then copies the vector into the tile). */
const char *cg_tile_slot(cg_t *g) {
  FL_UNUSED(g);
  return "fo_tv[fo_x]";
}

void cg_plan_tile(cg_t *g) {
  const kir_kernel_t *k = g->k;
  g->tile_lw = -1;
  if (!g->d->tile || k->serial || g->coop_level != CG_NO_COOP || k->rank < 2 || k->n_stores != 1) return;
  const kir_store_t *st = &k->stores[0];
  if (st->cond || k->bufs[st->buf].rank != k->rank) return;
  for (int d = 0; d < k->rank; d++)
    if (!is_var(st->idx[d], k->vars[d])) return;
  cg_info_t *in = cg_info(g, st->value);
  if (!in || cg_loads_written(g, in)) return;
  int across = -1;
  bool along = false;
  g->mark_gen[0]++;
  tile_walk(g, st->value, &across, &along);
  if (along || across < 0 || !tile_extent(k->extents[across]) || !tile_extent(k->extents[k->rank - 1])) return;
  g->tile_lw = across;
  g->tile_sh = tile_log2(k, st->buf);
  g->tile_v = tile_vec(g, st);
}

/* One pass over the tile: vectors of tile_v elements along the pass's fast
 * level (fo_r the tile's row, fo_c the vector's first column, fo_x the
 * element), each element evaluated and guarded alone; `vec` (a tile inside
 * both extents, aligned buffers): the value's load or the store as one vector
 * access (`vld`: the load's text at fo_x = 0). */
static void put_loop(cg_t *g, bool second, bool vec, const char *body, size_t len, const char *vld, int depth,
                     fl_buf_t *out) {
  const cg_tile_names_t *n = g->d->tile;
  const kir_kernel_t *k = g->k;
  int r = k->rank - 1, w = g->tile_lw, T = 1 << g->tile_sh, V = g->tile_v, per = T / V;
  const char *S = g->d->stype(k->bufs[g->tile_buf].dtype);
  /* first pass: the loads' level fastest; second: the store's */
  const char *fw = second ? "fo_r" : "(fo_c + fo_x)", *fu = second ? "(fo_c + fo_x)" : "fo_r";
  const char *at_w = cg_fmt(g, "const int64_t v%d = fo_iw * %d + %s;", k->vars[w], T, fw);
  const char *at_u = cg_fmt(g, "const int64_t v%d = fo_iu * %d + %s;", k->vars[r], T, fu);
  cg_line(out, depth, "#pragma unroll");
  cg_line(out, depth, "for (int fo_e = %s; fo_e < %d; fo_e += %s) {", n->lid, T * per, n->lsz);
  cg_line(out, depth + 1, "const int fo_r = fo_e / %d, fo_c = (fo_e %% %d) * %d;", per, per, V);
  cg_line(out, depth + 1, "%s fo_tv[%d]%s;", S, V, vec || second ? "" : " = {0}");
  if (second) {
    cg_line(out, depth + 1, "for (int fo_x = 0; fo_x < %d; fo_x++) fo_tv[fo_x] = fo_tl[fo_c + fo_x][fo_r];", V);
  }
  if (vec) {
    const char *V4 = cg_fmt(g, "%s%d", cg_vec_elem(S), V);
    cg_line(out, depth + 1, "{");
    cg_line(out, depth + 2, "const int fo_x = 0;");
    cg_line(out, depth + 2, "%s", at_w);
    cg_line(out, depth + 2, "%s", at_u);
    if (second) {
      const char *args = "fo_tv[0]";
      for (int i = 1; i < V; i++) args = cg_fmt(g, "%s, fo_tv[%d]", args, i);
      /* __stcg: a plain `*(float4 *)p = v` here was split into four stores */
      cg_line(out, depth + 2, "__stcg((%s *)(b%d + %s), make_%s(%s));", V4, g->tile_buf, g->tile_at, V4, args);
    } else {
      static const char xyzw[] = "xyzw";
      cg_line(out, depth + 2, "const %s fo_q = *(const %s *)&%s;", V4, V4, vld);
      for (int i = 0; i < V; i++) cg_line(out, depth + 2, "fo_tv[%d] = fo_q.%c;", i, xyzw[i]);
    }
    cg_line(out, depth + 1, "}");
  } else {
    const char *guard = cg_fmt(g, "if (v%d < E%d && v%d < E%d) ", k->vars[w], w, k->vars[r], r);
    cg_line(out, depth + 1, "#pragma unroll");
    cg_line(out, depth + 1, "for (int fo_x = 0; fo_x < %d; fo_x++) {", V);
    cg_line(out, depth + 2, "%s", at_w);
    cg_line(out, depth + 2, "%s", at_u);
    if (second) {
      cg_line(out, depth + 2, "%sb%d[%s] = fo_tv[fo_x];", guard, g->tile_buf, g->tile_at);
    } else {
      cg_line(out, depth + 2, "%s{", guard);
      if (len) fl_buf_append(out, body, len);
      cg_line(out, depth + 2, "}");
    }
    cg_line(out, depth + 1, "}");
  }
  /* the tile's entries past the extents are never read back (the second pass
   * skips the same points) */
  if (!second)
    cg_line(out, depth + 1, "for (int fo_x = 0; fo_x < %d; fo_x++) fo_tl[fo_r][fo_c + fo_x] = fo_tv[fo_x];", V);
  cg_line(out, depth, "}");
}

static void put_pass(cg_t *g, bool second, const char *body, size_t len, const char *vld, fl_buf_t *out) {
  if (g->tile_v > 1) {
    cg_line(out, 2, "if (fo_full) {");
    put_loop(g, second, true, body, len, vld, 3, out);
    cg_line(out, 2, "} else {");
    put_loop(g, second, false, body, len, vld, 3, out);
    cg_line(out, 2, "}");
  } else {
    put_loop(g, second, false, body, len, vld, 2, out);
  }
  cg_line(out, 2, "%s", g->d->tile->barrier);
}

void cg_tile_loops(cg_t *g, cg_block_t *point, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  const cg_tile_names_t *n = g->d->tile;
  int r = k->rank - 1, w = g->tile_lw, T = 1 << g->tile_sh;
  cg_line(&g->decls, 1, "%s %s fo_tl[%d][%d];", n->shared, g->d->stype(k->bufs[g->tile_buf].dtype), T, T + 1);
  cg_line(out, 1, "const int64_t fo_tu = (E%d + %d) / %d, fo_tw = (E%d + %d) / %d;", r, T - 1, T, w, T - 1, T);
  const char *tot = "fo_tw * fo_tu";
  for (int l = 0; l < r; l++)
    if (l != w) tot = cg_fmt(g, "E%d * %s", l, tot);
  cg_line(out, 1, "const int64_t fo_nt = %s;", tot);
  cg_line(out, 1, "for (int64_t fo_b = %s; fo_b < fo_nt; fo_b += %s) {", n->gid, n->ngr);
  cg_line(out, 2, "int64_t fo_q = fo_b;");
  cg_line(out, 2, "const int64_t fo_iu = fo_q %% fo_tu;");
  cg_line(out, 2, "fo_q /= fo_tu;");
  cg_line(out, 2, "const int64_t fo_iw = fo_q %% fo_tw;");
  cg_line(out, 2, "fo_q /= fo_tw;");
  for (int l = r - 1; l >= 0; l--) {
    if (l == w) continue;
    cg_line(out, 2, "const int64_t v%d = fo_q %% E%d;", k->vars[l], l);
    cg_line(out, 2, "fo_q /= E%d;", l);
  }
  const char *vld = NULL;
  if (g->tile_v > 1) {
    const kir_expr_t *x = k->stores[0].value;
    int bytes = 4 * g->tile_v - 1;
    vld = cg_ex(g, x, point); /* a plain load: text alone, no statements */
    cg_line(out, 2, "const int fo_full = fo_iw * %d + %d <= E%d && fo_iu * %d + %d <= E%d && "
                    "(((uint64_t)(const void *)b%d | (uint64_t)(const void *)b%d) & %d) == 0;",
            T, T, w, T, T, r, x->buf, g->tile_buf, bytes);
  }
  put_pass(g, false, point->buf.data, point->buf.len, vld, out);
  put_pass(g, true, NULL, 0, vld, out);
  cg_line(out, 1, "}");
}
