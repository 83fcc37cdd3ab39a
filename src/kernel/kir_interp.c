/* The interpreter's driver: flattens a kernel's expression DAG, then walks the
 * iteration space in row-major order and evaluates each store.
 *
 * Kernels are DAGs, and lowerings share subtrees freely (and nest reductions
 * whose value does not depend on the enclosing reduction's variable), so a
 * plain tree walk could take exponential or much more than linear time. Nodes
 * used by several parents and reductions are memoised: a memo entry is valid
 * while none of the node's free variables has been reassigned since it was
 * computed and, for nodes that load a buffer the kernel writes, no store has
 * happened since. This computes what the emitter's hoisting computes, without
 * its restrictions. */
#include <stdio.h>
#include <string.h>

#include "kernel/kir_interp.h"
#include "kernel/kir_interp_internal.h"

#define KI_MAX_DEPTH 2000

typedef struct ki_node {
  const kir_expr_t *e;
  int *kid;           /* e->n operands, then e->nr reduction extents */
  int *fv;            /* free variables */
  int n_fv;
  uint64_t *fvbits;   /* the same as a bitset (while building) */
  int refs;
  bool loads_written; /* loads, somewhere below, a buffer the kernel writes */
  bool konst;
  uint64_t stamp;     /* clock when val was memoised; 0: never */
  ki_val_t val;
} ki_node_t;

typedef struct ki {
  const kir_kernel_t *k;
  void *const *bufs;
  const int64_t *syms;
  int n_syms;
  fl_arena_t *a;
  const kir_expr_t **hkey;
  int *hval;
  size_t hcap, hn;
  ki_node_t *nodes;
  int n_nodes, cap_nodes;
  int nw;             /* bitset words over variables */
  int64_t **dims, **strides;
  int n_vars;
  int64_t *var;
  uint64_t *ver;
  bool *bound;
  uint64_t clock, last_store;
  int64_t work;
  char why[320];
  bool failed;
} ki_t;

static bool fail(ki_t *s, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
static bool fail(ki_t *s, const char *fmt, ...) {
  if (s->failed) return false;
  s->failed = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->why, sizeof s->why, fmt, ap);
  va_end(ap);
  return false;
}

/* ---- flattening ---- */

static int lookup(ki_t *s, const kir_expr_t *e) {
  if (!s->hcap) return -1;
  for (size_t i = fl_hash_ptr(e) & (s->hcap - 1);; i = (i + 1) & (s->hcap - 1)) {
    if (!s->hkey[i]) return -1;
    if (s->hkey[i] == e) return s->hval[i];
  }
}

static void insert(ki_t *s, const kir_expr_t *e, int id) {
  if ((s->hn + 1) * 2 > s->hcap) {
    size_t oc = s->hcap, nc = oc ? oc * 2 : 256;
    const kir_expr_t **ok = s->hkey;
    int *ov = s->hval;
    s->hkey = fl_arena_alloc(s->a, sizeof(*s->hkey) * nc);
    s->hval = fl_arena_alloc(s->a, sizeof(*s->hval) * nc);
    s->hcap = nc;
    for (size_t i = 0; i < oc; i++) {
      if (!ok[i]) continue;
      size_t j = fl_hash_ptr(ok[i]) & (nc - 1);
      while (s->hkey[j]) j = (j + 1) & (nc - 1);
      s->hkey[j] = ok[i];
      s->hval[j] = ov[i];
    }
  }
  size_t j = fl_hash_ptr(e) & (s->hcap - 1);
  while (s->hkey[j]) j = (j + 1) & (s->hcap - 1);
  s->hkey[j] = e;
  s->hval[j] = id;
  s->hn++;
}

static bool var_ok(ki_t *s, int v) { return v >= 0 && v < s->n_vars; }

/* Returns the node id of e (building it and its operands once), or -1. */
static int build(ki_t *s, const kir_expr_t *e, int depth) {
  if (!e) return fail(s, "an expression operand is missing"), -1;
  int id = lookup(s, e);
  if (id >= 0) {
    s->nodes[id].refs++;
    return id;
  }
  if (depth > KI_MAX_DEPTH) return fail(s, "expression deeper than %d", KI_MAX_DEPTH), -1;
  if (ki_class(e->dtype) == KI_NONE)
    return fail(s, "expression of dtype %s", flagos_dtype_name(e->dtype)), -1;
  int nkid = e->n + (e->kind == KIR_REDUCE ? e->nr : 0);
  if (e->n < 0 || (e->n > 0 && !e->a) || (e->kind == KIR_REDUCE && (e->nr <= 0 || !e->rvars || !e->rext)))
    return fail(s, "malformed expression node"), -1;
  int need = e->kind == KIR_UNARY || e->kind == KIR_CAST || e->kind == KIR_BITCAST || e->kind == KIR_REDUCE ? 1
             : e->kind == KIR_BINARY                                                                       ? 2
             : e->kind == KIR_SELECT                                                                       ? 3
                                                                                                           : 0;
  if (e->kind == KIR_LOAD) {
    if (e->buf < 0 || e->buf >= s->k->n_bufs) return fail(s, "load from buffer %d of %d", e->buf, s->k->n_bufs), -1;
    need = s->k->bufs[e->buf].rank;
  }
  if (e->n < need) return fail(s, "%s node has %d operands", e->kind == KIR_LOAD ? "load" : "an expression", e->n), -1;
  int *kid = fl_arena_alloc(s->a, sizeof(int) * (size_t)(nkid + 1));
  for (int i = 0; i < e->n; i++)
    if ((kid[i] = build(s, e->a[i], depth + 1)) < 0) return -1;
  for (int i = 0; e->kind == KIR_REDUCE && i < e->nr; i++)
    if ((kid[e->n + i] = build(s, e->rext[i], depth + 1)) < 0) return -1;

  if (s->n_nodes == s->cap_nodes) {
    int nc = s->cap_nodes ? s->cap_nodes * 2 : 64;
    ki_node_t *nn = fl_arena_alloc(s->a, sizeof(*nn) * (size_t)nc);
    if (s->n_nodes) memcpy(nn, s->nodes, sizeof(*nn) * (size_t)s->n_nodes);
    s->nodes = nn;
    s->cap_nodes = nc;
  }
  id = s->n_nodes++;
  ki_node_t *nd = &s->nodes[id];
  memset(nd, 0, sizeof(*nd));
  nd->e = e;
  nd->kid = kid;
  nd->refs = 1;
  nd->fvbits = fl_arena_alloc(s->a, sizeof(uint64_t) * (size_t)s->nw);
  for (int i = 0; i < nkid; i++) {
    const ki_node_t *c = &s->nodes[kid[i]];
    for (int w = 0; w < s->nw; w++) nd->fvbits[w] |= c->fvbits[w];
    nd->loads_written |= c->loads_written;
  }
  switch (e->kind) {
  case KIR_CONST:
    if (!ki_const(e, &nd->val)) return fail(s, "constant of dtype %s", flagos_dtype_name(e->dtype)), -1;
    nd->konst = true;
    break;
  case KIR_VAR:
    if (!var_ok(s, e->var)) return fail(s, "variable v%d was not made by kir_new_var", e->var), -1;
    nd->fvbits[e->var >> 6] |= 1ull << (e->var & 63);
    break;
  case KIR_SYM:
    if (e->sym < 0 || e->sym >= s->n_syms) return fail(s, "symbol %d of %d", e->sym, s->n_syms), -1;
    nd->val.i = s->syms[e->sym];
    nd->konst = true;
    break;
  case KIR_LOAD:
    if (s->k->bufs[e->buf].written) nd->loads_written = true;
    break;
  case KIR_REDUCE:
    for (int i = 0; i < e->nr; i++) {
      if (!var_ok(s, e->rvars[i])) return fail(s, "reduction variable v%d was not made by kir_new_var", e->rvars[i]), -1;
      nd->fvbits[e->rvars[i] >> 6] &= ~(1ull << (e->rvars[i] & 63));
    }
    break;
  default: break;
  }
  int n = 0;
  for (int v = 0; v < s->n_vars; v++)
    if (nd->fvbits[v >> 6] >> (v & 63) & 1) n++;
  nd->fv = fl_arena_alloc(s->a, sizeof(int) * (size_t)(n + 1));
  for (int v = 0; v < s->n_vars; v++)
    if (nd->fvbits[v >> 6] >> (v & 63) & 1) nd->fv[nd->n_fv++] = v;
  insert(s, e, id);
  return id;
}

/* ---- evaluation ---- */
static void set_var(ki_t *s, int v, int64_t x) {
  s->var[v] = x;
  s->ver[v] = ++s->clock;
}

static bool memo_valid(const ki_t *s, const ki_node_t *nd) {
  if (!nd->stamp) return false;
  if (nd->loads_written && s->last_store > nd->stamp) return false;
  for (int i = 0; i < nd->n_fv; i++)
    if (s->ver[nd->fv[i]] > nd->stamp) return false;
  return true;
}

static bool eval(ki_t *s, int id, ki_val_t *out);

static bool count_work(ki_t *s) {
  if (++s->work > KIR_INTERP_MAX_EVALS)
    return fail(s, "needs more than %d evaluations", KIR_INTERP_MAX_EVALS);
  return true;
}

/* Row-major element offset of indices kid[0..rank-1] in buffer b, bounds-checked. */
static bool offset(ki_t *s, int b, const int *kid, int64_t *off) {
  const kir_buf_t *kb = &s->k->bufs[b];
  int64_t o = 0;
  for (int d = 0; d < kb->rank; d++) {
    ki_val_t v;
    if (!eval(s, kid[d], &v)) return false;
    if (v.i < 0 || v.i >= s->dims[b][d])
      return fail(s, "index %lld is outside dimension %d (size %lld) of buffer %d ('%s')", (long long)v.i, d,
                  (long long)s->dims[b][d], b, kb->name);
    o += v.i * s->strides[b][d];
  }
  if (!s->bufs[b]) return fail(s, "buffer %d ('%s') has no memory", b, kb->name);
  *off = o;
  return true;
}

/* Runs reduction loop `level` of node nd, accumulating into acc. */
static bool reduce_level(ki_t *s, const ki_node_t *nd, int level, ki_val_t *acc) {
  const kir_expr_t *e = nd->e;
  ki_val_t ext;
  if (!eval(s, nd->kid[e->n + level], &ext)) return false;
  int v = e->rvars[level];
  bool was_bound = s->bound[v];
  int64_t saved = s->var[v];
  s->bound[v] = true;
  for (int64_t i = 0; i < ext.i; i++) {
    set_var(s, v, i);
    if (level + 1 < e->nr) {
      if (!reduce_level(s, nd, level + 1, acc)) return false;
      continue;
    }
    ki_val_t x;
    if (!count_work(s) || !eval(s, nd->kid[0], &x)) return false;
    if (!ki_reduce_step(e->op, e->dtype, acc, x))
      return fail(s, "reduction %s of dtype %s", kir_op_name(e->op), flagos_dtype_name(e->dtype));
  }
  s->bound[v] = was_bound;
  if (was_bound) set_var(s, v, saved);
  return true;
}

static bool eval(ki_t *s, int id, ki_val_t *out) {
  ki_node_t *nd = &s->nodes[id];
  if (nd->konst || memo_valid(s, nd)) {
    *out = nd->val;
    return true;
  }
  const kir_expr_t *e = nd->e;
  ki_val_t x, y;
  switch (e->kind) {
  case KIR_VAR:
    if (!s->bound[e->var]) return fail(s, "variable v%d is used outside its loop", e->var);
    out->i = s->var[e->var];
    return true;
  case KIR_LOAD: {
    int64_t off;
    if (!offset(s, e->buf, nd->kid, &off)) return false;
    ki_decode(s->k->bufs[e->buf].dtype, s->bufs[e->buf], off, out);
    break;
  }
  case KIR_UNARY:
    if (!eval(s, nd->kid[0], &x)) return false;
    if (!ki_unary(e->op, e->a[0]->dtype, x, out))
      return fail(s, "op %s is not defined for dtype %s", kir_op_name(e->op), flagos_dtype_name(e->a[0]->dtype));
    break;
  case KIR_BINARY:
    if (!eval(s, nd->kid[0], &x) || !eval(s, nd->kid[1], &y)) return false;
    if (e->a[0]->dtype != e->a[1]->dtype ||
        (kir_op_is_compare(e->op) ? e->dtype != FLAGOS_BOOL : e->dtype != e->a[0]->dtype) ||
        !ki_binary(e->op, e->a[0]->dtype, x, y, out))
      return fail(s, "op %s is not defined for dtype %s", kir_op_name(e->op), flagos_dtype_name(e->a[0]->dtype));
    break;
  case KIR_SELECT:
    /* lazy: only the chosen operand is evaluated */
    if (!eval(s, nd->kid[0], &x) || !eval(s, nd->kid[x.i ? 1 : 2], out)) return false;
    break;
  case KIR_CAST:
    if (!eval(s, nd->kid[0], &x)) return false;
    if (!ki_cast(e->a[0]->dtype, e->dtype, e->sat, x, out))
      return fail(s, "cast from %s to %s", flagos_dtype_name(e->a[0]->dtype), flagos_dtype_name(e->dtype));
    break;
  case KIR_BITCAST:
    if (!eval(s, nd->kid[0], &x)) return false;
    if (!ki_bitcast(e->a[0]->dtype, e->dtype, x, out))
      return fail(s, "bitcast from %s to %s", flagos_dtype_name(e->a[0]->dtype), flagos_dtype_name(e->dtype));
    break;
  case KIR_REDUCE:
    if (!ki_reduce_init(e->op, e->dtype, out))
      return fail(s, "reduction %s of dtype %s", kir_op_name(e->op), flagos_dtype_name(e->dtype));
    if (!reduce_level(s, nd, 0, out)) return false;
    break;
  default: return fail(s, "expression kind %d", (int)e->kind);
  }
  if (nd->refs > 1 || e->kind == KIR_REDUCE) {
    nd->val = *out;
    nd->stamp = ++s->clock;
  }
  return true;
}

/* ---- kernel ---- */
typedef struct ki_store_ids {
  int value, cond;
  int *idx;
} ki_store_ids_t;

static bool run_point(ki_t *s, const ki_store_ids_t *ids) {
  const kir_kernel_t *k = s->k;
  for (int i = 0; i < k->n_stores; i++) {
    const kir_store_t *st = &k->stores[i];
    ki_val_t c, v;
    if (ids[i].cond >= 0) {
      if (!eval(s, ids[i].cond, &c)) return false;
      if (!c.i) continue;
    }
    int64_t off;
    if (!eval(s, ids[i].value, &v) || !offset(s, st->buf, ids[i].idx, &off)) return false;
    if (!ki_store(st->value->dtype, k->bufs[st->buf].dtype, v, s->bufs[st->buf], off))
      return fail(s, "store of %s into a buffer of %s", flagos_dtype_name(st->value->dtype),
                  flagos_dtype_name(k->bufs[st->buf].dtype));
    s->last_store = ++s->clock;
  }
  return true;
}

static int64_t sat_mul(int64_t a, int64_t b) {
  if (a <= 0 || b <= 0) return 0;
  return a > INT64_MAX / b ? INT64_MAX : a * b;
}

static bool setup(ki_t *s, ki_store_ids_t **ids_out, int64_t **ext_out) {
  const kir_kernel_t *k = s->k;
  s->dims = fl_arena_alloc(s->a, sizeof(*s->dims) * (size_t)(k->n_bufs + 1));
  s->strides = fl_arena_alloc(s->a, sizeof(*s->strides) * (size_t)(k->n_bufs + 1));
  for (int b = 0; b < k->n_bufs; b++) {
    const kir_buf_t *kb = &k->bufs[b];
    if (ki_class(kb->dtype) == KI_NONE)
      return fail(s, "buffer %d ('%s') has dtype %s", b, kb->name, flagos_dtype_name(kb->dtype));
    if (kb->rank < 0) return fail(s, "buffer %d has rank %d", b, kb->rank);
    s->dims[b] = fl_arena_alloc(s->a, sizeof(int64_t) * (size_t)(kb->rank + 1));
    s->strides[b] = fl_arena_alloc(s->a, sizeof(int64_t) * (size_t)(kb->rank + 1));
    for (int d = 0; d < kb->rank; d++)
      if (!kir_eval_int(kb->dims[d], s->syms, s->n_syms, &s->dims[b][d]) || s->dims[b][d] < 0)
        return fail(s, "dimension %d of buffer %d ('%s') is not a size the symbols give", d, b, kb->name);
    int64_t st = 1;
    for (int d = kb->rank - 1; d >= 0; d--) {
      s->strides[b][d] = st;
      st = sat_mul(st, s->dims[b][d]);
      if (st == INT64_MAX) return fail(s, "buffer %d ('%s') is too large", b, kb->name);
    }
  }
  int64_t *ext = fl_arena_alloc(s->a, sizeof(int64_t) * (size_t)(k->rank + 1));
  int64_t points = 1;
  for (int i = 0; i < k->rank; i++) {
    if (!kir_eval_int(k->extents[i], s->syms, s->n_syms, &ext[i]))
      return fail(s, "loop extent %d is not a size the symbols give", i);
    if (!var_ok(s, k->vars[i])) return fail(s, "loop variable v%d was not made by kir_new_var", k->vars[i]);
    points = ext[i] <= 0 ? 0 : sat_mul(points, ext[i]);
  }
  ki_store_ids_t *ids = fl_arena_alloc(s->a, sizeof(*ids) * (size_t)(k->n_stores + 1));
  for (int i = 0; i < k->n_stores; i++) {
    const kir_store_t *st = &k->stores[i];
    if (st->buf < 0 || st->buf >= k->n_bufs) return fail(s, "store %d into buffer %d of %d", i, st->buf, k->n_bufs);
    int r = k->bufs[st->buf].rank;
    ids[i].idx = fl_arena_alloc(s->a, sizeof(int) * (size_t)(r + 1));
    for (int d = 0; d < r; d++)
      if ((ids[i].idx[d] = build(s, st->idx[d], 0)) < 0) return false;
    if ((ids[i].value = build(s, st->value, 0)) < 0) return false;
    ids[i].cond = st->cond ? build(s, st->cond, 0) : -1;
    if (st->cond && ids[i].cond < 0) return false;
  }
  /* Refuse up front what is sure to be too much work: the points, plus for each
   * reduction whose extents are fixed, its trip count per point (once in all when
   * it depends on no variable, since it is memoised). */
  int64_t work = points;
  for (int i = 0; i < s->n_nodes && points > 0; i++) {
    const ki_node_t *nd = &s->nodes[i];
    if (nd->e->kind != KIR_REDUCE) continue;
    int64_t trips = 1, v;
    bool fixed = true;
    for (int r = 0; r < nd->e->nr && fixed; r++) {
      fixed = kir_eval_int(nd->e->rext[r], s->syms, s->n_syms, &v);
      trips = v <= 0 ? 0 : sat_mul(trips, v);
    }
    if (!fixed) continue;
    int64_t w = nd->n_fv ? sat_mul(trips, points) : trips;
    work = work > INT64_MAX - w ? INT64_MAX : work + w;
  }
  if (work > KIR_INTERP_MAX_EVALS)
    return fail(s, "needs about %lld evaluations (at most %d)", (long long)work, KIR_INTERP_MAX_EVALS);
  *ids_out = ids;
  *ext_out = ext;
  return true;
}

flagos_status_t kir_interp_run(const kir_kernel_t *k, void *const *bufs, const int64_t *syms, int n_syms) {
  if (!k) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kir_interp_run: no kernel");
  if (k->n_bufs > 0 && !bufs) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kernel '%s': no buffers given", k->name);
  ki_t s0 = {0}, *s = &s0;
  s->k = k;
  s->bufs = bufs;
  s->syms = syms;
  s->n_syms = syms ? n_syms : 0;
  s->a = fl_arena_create();
  s->n_vars = k->next_var > 0 ? k->next_var : 0;
  s->nw = (s->n_vars + 63) / 64 + 1;
  s->var = fl_arena_alloc(s->a, sizeof(int64_t) * (size_t)(s->n_vars + 1));
  s->ver = fl_arena_alloc(s->a, sizeof(uint64_t) * (size_t)(s->n_vars + 1));
  s->bound = fl_arena_alloc(s->a, sizeof(bool) * (size_t)(s->n_vars + 1));
  ki_store_ids_t *ids = NULL;
  int64_t *ext = NULL;
  bool ok = setup(s, &ids, &ext);
  bool empty = false;
  for (int i = 0; ok && i < k->rank; i++) {
    if (ext[i] <= 0) empty = true;
    set_var(s, k->vars[i], 0);
    s->bound[k->vars[i]] = true;
  }
  /* Row-major: the last variable varies fastest. */
  while (ok && !empty) {
    ok = count_work(s) && run_point(s, ids);
    int d = k->rank - 1;
    for (; ok && d >= 0; d--) {
      int64_t nx = s->var[k->vars[d]] + 1;
      if (nx < ext[d]) {
        set_var(s, k->vars[d], nx);
        break;
      }
      set_var(s, k->vars[d], 0);
    }
    if (d < 0) break;
  }
  flagos_status_t st = NULL;
  if (!ok) st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "kernel '%s' cannot be interpreted: %s", k->name, s->why);
  fl_arena_destroy(s->a);
  return st;
}
