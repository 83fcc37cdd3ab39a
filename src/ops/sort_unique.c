/* Unique (X) -> (Y, indices, inverse_indices, counts).
 *
 * Without `axis` the elements of X (flattened) are compared; with it, the slices
 * of X along the axis (compared element by element, ordered lexicographically).
 * The number of unique items U decides the output shapes, so infer counts them
 * on the host from X's value (known at run time: value_inputs bit 0).
 *
 * The kernels work by ranks (see sort.c), with n items of m elements each:
 *   first[i] = lowest j with item j == item i                       O(n^2 m)
 *   pos[i]   = place of item i's value in Y = #{ first occurrences j that come
 *              before it: smaller (sorted) or earlier (unsorted) }   O(n^2 m)
 *   sel[p]   = the first occurrence i with pos[i] == p; counts[p] = #{pos == p}
 *   Y        = X gathered at sel. */
#include "ops/reduce_common.h"

static bool out_wanted(const ops_ctx_t *c, int k) { return k < c->n_out && c->node->outputs[k] != NULL; }

/* Item layout: n items along `axis` (or n = numel elements without it), m elements each. */
typedef struct uniq_shape {
  bool has_axis;
  int axis;
  int64_t n, m, inner;
} uniq_shape_t;

static flagos_status_t uniq_shape(ops_ctx_t *c, uniq_shape_t *u) {
  const ops_tensor_info_t *x = &c->in[0];
  const fir_attr_t *ax = fir_node_attr(c->node, "axis");
  u->has_axis = ax != NULL;
  u->axis = 0;
  if (u->has_axis) FL_TRY(ops_axis(c, ax->i, x->rank, &u->axis));
  if (x->numel < 0) {
    u->n = u->m = u->inner = -1;
    return NULL;
  }
  if (!u->has_axis) {
    u->n = x->numel;
    u->m = u->inner = 1;
    return NULL;
  }
  u->n = x->dims[u->axis];
  u->m = 1;
  u->inner = 1;
  for (int i = 0; i < x->rank; i++)
    if (i != u->axis) u->m *= x->dims[i];
  for (int i = u->axis + 1; i < x->rank; i++)
    u->inner *= x->dims[i];
  return NULL;
}

/* Host value equality of element offsets p and q of X. */
static bool host_elem_eq(const ops_ctx_t *c, int64_t p, int64_t q) {
  if (flagos_dtype_is_float(c->in[0].dtype)) return ops_in_float(c, 0, p) == ops_in_float(c, 0, q);
  return ops_in_int(c, 0, p) == ops_in_int(c, 0, q);
}

static bool host_item_eq(const ops_ctx_t *c, const uniq_shape_t *u, int64_t i, int64_t j) {
  for (int64_t k = 0; k < u->m; k++) {
    int64_t o = k / u->inner, in = k % u->inner;
    if (!host_elem_eq(c, (o * u->n + i) * u->inner + in, (o * u->n + j) * u->inner + in)) return false;
  }
  return true;
}

flagos_status_t ops_sort_unique_infer(ops_ctx_t *c) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing input 'X'");
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input 'X' has unknown rank");
  if (!flagos_dtype_is_float(x->dtype) && !flagos_dtype_is_int(x->dtype) && x->dtype != FLAGOS_BOOL)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input 'X' of dtype %s", flagos_dtype_name(x->dtype));
  uniq_shape_t u;
  FL_TRY(uniq_shape(c, &u));
  if (u.has_axis && x->rank == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "attribute 'axis' given for a scalar 'X'");
  int64_t count = -1;
  if (x->value && u.n >= 0) {
    count = 0;
    for (int64_t i = 0; i < u.n; i++) {
      bool first = true;
      for (int64_t j = 0; j < i && first; j++)
        if (host_item_eq(c, &u, i, j)) first = false;
      count += first;
    }
  }
  int64_t yd[OPS_MAX_RANK];
  if (u.has_axis) {
    for (int i = 0; i < x->rank; i++)
      yd[i] = i == u.axis ? count : x->dims[i];
    ops_set_out(c, 0, x->dtype, x->rank, yd);
  } else {
    ops_set_out(c, 0, x->dtype, 1, &count);
  }
  if (out_wanted(c, 1)) ops_set_out(c, 1, FLAGOS_INT64, 1, &count);
  if (out_wanted(c, 2)) ops_set_out(c, 2, FLAGOS_INT64, 1, &u.n);
  if (out_wanted(c, 3)) ops_set_out(c, 3, FLAGOS_INT64, 1, &count);
  return NULL;
}

/* Lowering context: what every kernel needs to address item elements. */
typedef struct uniq_low {
  ops_ctx_t *c;
  uniq_shape_t u;
  int r;
  kir_expr_t *n, *m; /* item count and elements per item */
  kir_expr_t *odims[OPS_MAX_RANK]; /* dims of X without the axis */
  bool slices; /* items have more than one element */
} uniq_low_t;

/* Index of element k of item i (k unused without slices). */
static void item_index(const uniq_low_t *L, kir_expr_t *i, kir_expr_t *k, kir_expr_t **idx) {
  ops_ctx_t *c = L->c;
  if (!L->u.has_axis) {
    kir_expr_t *d[OPS_MAX_RANK];
    for (int q = 0; q < L->r; q++)
      d[q] = ops_in_dim(c, 0, q);
    ops_red_unflatten(c, i, L->r, d, idx);
    return;
  }
  kir_expr_t *o[OPS_MAX_RANK];
  if (L->r > 1) ops_red_unflatten(c, k, L->r - 1, L->odims, o);
  for (int q = 0, p = 0; q < L->r; q++)
    idx[q] = q == L->u.axis ? i : o[p++];
}

static kir_expr_t *elem(const uniq_low_t *L, kir_kernel_t *k, int xb, kir_expr_t *i, kir_expr_t *e) {
  kir_expr_t *idx[OPS_MAX_RANK];
  item_index(L, i, e, idx);
  return kir_load(k, xb, idx);
}

static kir_expr_t *item_eq(const uniq_low_t *L, kir_kernel_t *k, int xb, kir_expr_t *i, kir_expr_t *j) {
  fl_arena_t *a = L->c->arena;
  if (!L->slices) return kir_bin(a, KIR_EQ, elem(L, k, xb, i, kir_i64(a, 0)), elem(L, k, xb, j, kir_i64(a, 0)));
  int ev = kir_new_var(k);
  kir_expr_t *e = kir_var(a, ev);
  return kir_reduce(a, KIR_RALL, 1, &ev, &L->m, kir_bin(a, KIR_EQ, elem(L, k, xb, i, e), elem(L, k, xb, j, e)));
}

/* Item j orders before item i (lexicographically for slices). */
static kir_expr_t *item_less(const uniq_low_t *L, kir_kernel_t *k, int xb, kir_expr_t *j, kir_expr_t *i) {
  fl_arena_t *a = L->c->arena;
  if (!L->slices) return kir_bin(a, KIR_LT, elem(L, k, xb, j, kir_i64(a, 0)), elem(L, k, xb, i, kir_i64(a, 0)));
  int ev = kir_new_var(k);
  kir_expr_t *e = kir_var(a, ev);
  kir_expr_t *differs = kir_bin(a, KIR_NE, elem(L, k, xb, j, e), elem(L, k, xb, i, e));
  kir_expr_t *f = kir_reduce(a, KIR_RMIN, 1, &ev, &L->m, kir_select(a, differs, e, L->m));
  return kir_select(a, kir_bin(a, KIR_LT, f, L->m), kir_bin(a, KIR_LT, elem(L, k, xb, j, f), elem(L, k, xb, i, f)),
                    kir_bool(a, false));
}

flagos_status_t ops_sort_unique_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  uniq_low_t L = {.c = c, .r = c->in[0].rank};
  FL_TRY(uniq_shape(c, &L.u));
  bool sorted = fir_attr_int(c->node, "sorted", 1) != 0;
  L.m = kir_i64(a, 1);
  if (L.u.has_axis) {
    L.n = ops_in_dim(c, 0, L.u.axis);
    for (int q = 0, p = 0; q < L.r; q++)
      if (q != L.u.axis) {
        L.odims[p++] = ops_in_dim(c, 0, q);
        L.m = kir_mul(a, L.m, ops_in_dim(c, 0, q));
      }
    L.slices = L.r > 1;
  } else {
    L.n = kir_i64(a, 1);
    for (int q = 0; q < L.r; q++)
      L.n = kir_mul(a, L.n, ops_in_dim(c, 0, q));
  }
  kir_expr_t *v[OPS_MAX_RANK], *ucount = ops_out_dim(c, 0, L.u.has_axis ? L.u.axis : 0);

  int tfirst = ops_temp(c, FLAGOS_INT64, 1, &L.n), tb;
  kir_kernel_t *k = ops_red_temp_kernel(c, tfirst, "first", v, &tb);
  int xb = ops_buf_in(c, k, 0);
  int jv = kir_new_var(k);
  kir_expr_t *j = kir_var(a, jv);
  kir_store(k, tb, v, kir_reduce(a, KIR_RMIN, 1, &jv, &L.n, kir_select(a, item_eq(&L, k, xb, j, v[0]), j, L.n)), NULL);

  int tpos = ops_temp(c, FLAGOS_INT64, 1, &L.n);
  k = ops_red_temp_kernel(c, tpos, "pos", v, &tb);
  xb = ops_buf_in(c, k, 0);
  int fb = ops_buf_temp(c, k, tfirst);
  jv = kir_new_var(k);
  j = kir_var(a, jv);
  kir_expr_t *j_first = kir_bin(a, KIR_EQ, kir_load(k, fb, &j), j);
  kir_expr_t *before = sorted ? item_less(&L, k, xb, j, v[0]) : kir_bin(a, KIR_LT, j, kir_load(k, fb, v));
  kir_expr_t *pos =
      kir_reduce(a, KIR_RSUM, 1, &jv, &L.n, kir_cast(a, FLAGOS_INT64, kir_bin(a, KIR_AND, j_first, before)));
  kir_store(k, tb, v, pos, NULL);
  if (out_wanted(c, 2)) kir_store(k, ops_buf_out(c, k, 2), v, pos, NULL);

  int tsel = ops_temp(c, FLAGOS_INT64, 1, &ucount);
  k = ops_red_temp_kernel(c, tsel, "select", v, &tb);
  fb = ops_buf_temp(c, k, tfirst);
  int pb = ops_buf_temp(c, k, tpos);
  int iv = kir_new_var(k);
  kir_expr_t *i = kir_var(a, iv);
  kir_expr_t *hit =
      kir_bin(a, KIR_AND, kir_bin(a, KIR_EQ, kir_load(k, fb, &i), i), kir_bin(a, KIR_EQ, kir_load(k, pb, &i), v[0]));
  kir_expr_t *sel = kir_reduce(a, KIR_RSUM, 1, &iv, &L.n, kir_select(a, hit, i, kir_i64(a, 0)));
  kir_store(k, tb, v, sel, NULL);
  if (out_wanted(c, 1)) kir_store(k, ops_buf_out(c, k, 1), v, sel, NULL);
  if (out_wanted(c, 3)) {
    int cv = kir_new_var(k);
    kir_expr_t *ci = kir_var(a, cv);
    kir_expr_t *cnt = kir_reduce(a, KIR_RSUM, 1, &cv, &L.n,
                                 kir_cast(a, FLAGOS_INT64, kir_bin(a, KIR_EQ, kir_load(k, pb, &ci), v[0])));
    kir_store(k, ops_buf_out(c, k, 3), v, cnt, NULL);
  }

  k = ops_out_kernel(c, 0, "gather", v);
  xb = ops_buf_in(c, k, 0);
  int sb = ops_buf_temp(c, k, tsel);
  kir_expr_t *idx[OPS_MAX_RANK];
  if (L.u.has_axis) {
    for (int q = 0; q < L.r; q++)
      idx[q] = q == L.u.axis ? kir_load(k, sb, &v[q]) : v[q];
  } else {
    item_index(&L, kir_load(k, sb, v), NULL, idx);
  }
  kir_store(k, 0, v, kir_load(k, xb, idx), NULL);
  return NULL;
}
