/* Index family, part 2: Slice (strided windows) and the operators whose output
 * size depends on input values (Compress, NonZero). For the latter, infer counts
 * on the host values and the kernels place each kept element at its rank among
 * the kept ones; every input position writes a distinct output position, so the
 * placing kernel stays parallel. */
#include <string.h>

#include "ops/shape_util.h"

/* ---- Slice ---- */
/* params[d] = first input index of axis d, params[r + d] = its step. */
static void slice_axis(int64_t n, int64_t s, int64_t e, int64_t step, int64_t *start, int64_t *len) {
  if (n == 0) {
    *start = 0;
    *len = 0;
    return;
  }
  if (s < 0) s += n;
  if (e < 0) e += n;
  if (step > 0) {
    s = s < 0 ? 0 : s > n ? n : s;
    e = e < 0 ? 0 : e > n ? n : e;
    *len = e > s ? (e - s - 1) / step + 1 : 0;
  } else {
    /* The spec clamps a negative-step start into [0, n-1] (NumPy would give an empty slice). */
    s = s < 0 ? 0 : s > n - 1 ? n - 1 : s;
    e = e < -1 ? -1 : e > n - 1 ? n - 1 : e;
    *len = s > e ? (s - e - 1) / -step + 1 : 0;
  }
  *start = s;
}

flagos_status_t ops_ix_infer_slice(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  const ops_tensor_info_t *x = &c->in[0];
  int r = x->rank;
  bool attr = c->opset < 10;
  ops_sh_list_t *st = fl_arena_alloc(c->arena, sizeof(*st)), *en = fl_arena_alloc(c->arena, sizeof(*en));
  ops_sh_list_t *ax = fl_arena_alloc(c->arena, sizeof(*ax)), *sp = fl_arena_alloc(c->arena, sizeof(*sp));
  FL_TRY(ops_sh_int_list(c, attr, "starts", 1, st));
  FL_TRY(ops_sh_int_list(c, attr, "ends", 2, en));
  FL_TRY(ops_sh_int_list(c, attr, "axes", 3, ax));
  if (!attr) FL_TRY(ops_sh_int_list(c, false, "steps", 4, sp));
  else sp->present = false;
  if (!st->present || !en->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "starts and ends are required");
  c->n_params = 2 * r;
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < r; i++) {
    d[i] = x->dims[i];
    c->params[i] = 0;
    c->params[r + i] = 1;
  }
  int n = st->n;
  if (n >= 0 && en->n >= 0 && n != en->n)
    return ops_err(c, FLAGOS_ERR_SHAPE, "starts has %d entries, ends %d", n, en->n);
  if (ax->present && ax->n >= 0 && n >= 0 && ax->n != n)
    return ops_err(c, FLAGOS_ERR_SHAPE, "axes has %d entries, starts %d", ax->n, n);
  if (sp->present && sp->n >= 0 && n >= 0 && sp->n != n)
    return ops_err(c, FLAGOS_ERR_SHAPE, "steps has %d entries, starts %d", sp->n, n);
  if (ax->present && !ax->known) {
    for (int i = 0; i < r; i++) d[i] = -1;
    ops_set_out(c, 0, x->dtype, r, d);
    return NULL;
  }
  bool values = st->known && en->known && (!sp->present || sp->known);
  if (n < 0) n = ax->present ? ax->n : -1;
  if (n < 0) {
    for (int i = 0; i < r; i++) d[i] = -1;
    ops_set_out(c, 0, x->dtype, r, d);
    return NULL;
  }
  if (n > r) return ops_err(c, FLAGOS_ERR_SHAPE, "%d sliced axes for rank %d", n, r);
  bool seen[OPS_MAX_RANK] = {false};
  for (int i = 0; i < n; i++) {
    int a = i;
    if (ax->present) FL_TRY(ops_axis(c, ax->v[i], r, &a));
    if (seen[a]) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %d is sliced twice", a);
    seen[a] = true;
    if (!values || x->dims[a] < 0) {
      d[a] = -1;
      continue;
    }
    int64_t step = sp->present ? sp->v[i] : 1;
    if (step == 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "step of axis %d is 0", a);
    if (step == INT64_MIN) step = -INT64_MAX;
    int64_t s, len;
    slice_axis(x->dims[a], st->v[i], en->v[i], step, &s, &len);
    d[a] = len;
    c->params[a] = s;
    c->params[r + a] = step;
  }
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

flagos_status_t ops_ix_lower_slice(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "slice", v);
  int x = ops_buf_in(c, k, 0);
  for (int i = 0; i < r; i++) idx[i] = kir_add(a, ops_param(c, i), kir_mul(a, v[i], ops_param(c, r + i)));
  kir_store(k, 0, v, kir_load(k, x, idx), NULL);
  return NULL;
}

/* ---- Compress ---- */
static flagos_status_t compress_axis(const ops_ctx_t *c, bool *has, int *axis) {
  *has = fir_node_attr(c->node, "axis") != NULL;
  *axis = 0;
  if (*has) return ops_axis(c, fir_attr_int(c->node, "axis", 0), c->in[0].rank, axis);
  return NULL;
}

flagos_status_t ops_ix_infer_compress(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  FL_TRY(ops_sh_need_tensor(c, 1, "condition"));
  const ops_tensor_info_t *x = &c->in[0], *cd = &c->in[1];
  if (cd->rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "condition must be 1-D, has rank %d", cd->rank);
  if (cd->dtype != FLAGOS_BOOL) return ops_err(c, FLAGOS_ERR_SHAPE, "condition must be bool, is %s", flagos_dtype_name(cd->dtype));
  bool has;
  int axis;
  FL_TRY(compress_axis(c, &has, &axis));
  int64_t len = has ? x->dims[axis] : x->numel, count = -1;
  if (cd->value && cd->numel >= 0 && len >= 0) {
    count = 0;
    for (int64_t i = 0; i < cd->numel; i++) {
      if (!ops_in_int(c, 1, i)) continue;
      if (i >= len)
        return ops_err(c, FLAGOS_ERR_SHAPE, "condition selects position %lld beyond the %lld available", (long long)i,
                       (long long)len);
      count++;
    }
  }
  if (!has) {
    ops_set_out(c, 0, x->dtype, 1, &count);
    return NULL;
  }
  int64_t d[OPS_MAX_RANK];
  memcpy(d, x->dims, sizeof(int64_t) * (size_t)x->rank);
  d[axis] = count;
  ops_set_out(c, 0, x->dtype, x->rank, d);
  return NULL;
}

/* ---- ranks of kept positions ----
 * Position i of a predicate over [0, n) (element i, in row-major order, of
 * input `src` being non-zero) goes to output slot "number of true positions
 * before i". A direct count over j < i is quadratic, so positions are cut in
 * blocks of RANK_BLOCK: one parallel kernel counts each block, a serial kernel
 * over the (n / RANK_BLOCK) blocks turns the counts into running totals, and an
 * element's rank is its block's total so far plus a count inside its block. */
#define RANK_BLOCK 64

typedef struct rank_src {
  int input;      /* node input whose elements are the predicate */
  kir_expr_t *n;  /* number of positions (may be below the input's element count) */
  int temp;       /* running totals per block */
} rank_src_t;

static kir_expr_t *is_nonzero(fl_arena_t *a, kir_expr_t *x) {
  if (x->dtype == FLAGOS_BOOL) return x;
  return kir_bin(a, KIR_NE, x, ops_sh_zero(a, x->dtype));
}

/* Predicate at flat position i of the input bound as buffer `buf` of kernel k. */
static kir_expr_t *pred_at(ops_ctx_t *c, kir_kernel_t *k, int buf, const rank_src_t *rs, kir_expr_t *i) {
  kir_expr_t *dims[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  int r = c->in[rs->input].rank;
  ops_sh_in_dims(c, rs->input, dims);
  ops_sh_unravel(c->arena, i, r, dims, idx);
  return is_nonzero(c->arena, kir_load(k, buf, idx));
}

/* Count of true positions in [from, from + len). */
static kir_expr_t *count_range(ops_ctx_t *c, kir_kernel_t *k, int buf, const rank_src_t *rs, kir_expr_t *from,
                               kir_expr_t *len) {
  fl_arena_t *a = c->arena;
  int j = kir_new_var(k);
  kir_expr_t *body = kir_cast(a, FLAGOS_INT64, pred_at(c, k, buf, rs, kir_add(a, from, kir_var(a, j))));
  return kir_reduce(a, KIR_RSUM, 1, &j, &len, body);
}

static void rank_prepare(ops_ctx_t *c, rank_src_t *rs) {
  fl_arena_t *a = c->arena;
  kir_expr_t *B = kir_i64(a, RANK_BLOCK);
  kir_expr_t *nb = kir_bin(a, KIR_DIV, kir_add(a, rs->n, kir_i64(a, RANK_BLOCK - 1)), B);
  rs->temp = ops_temp(c, FLAGOS_INT64, 1, &nb);
  kir_expr_t *v[1];
  kir_kernel_t *k = ops_kernel(c, "blockcount");
  kir_set_space(k, 1, &nb, v);
  int t = ops_buf_temp(c, k, rs->temp), x = ops_buf_in(c, k, rs->input);
  kir_expr_t *from = kir_mul(a, v[0], B);
  kir_expr_t *len = kir_bin(a, KIR_MIN, B, kir_sub(a, rs->n, from));
  kir_store(k, t, v, count_range(c, k, x, rs, from, len), NULL);

  k = ops_kernel(c, "blockscan");
  k->serial = true;
  kir_set_space(k, 1, &nb, v);
  t = ops_buf_temp(c, k, rs->temp);
  kir_expr_t *prev = kir_sub(a, v[0], kir_i64(a, 1));
  kir_expr_t *before = kir_select(a, kir_bin(a, KIR_GT, v[0], kir_i64(a, 0)), kir_load(k, t, &prev), kir_i64(a, 0));
  kir_store(k, t, v, kir_add(a, before, kir_load(k, t, v)), NULL);
}

/* Rank of position i (true positions before it) inside kernel k, where the
 * input is bound as buffer `buf`. */
static kir_expr_t *rank_of(ops_ctx_t *c, kir_kernel_t *k, int buf, const rank_src_t *rs, kir_expr_t *i) {
  fl_arena_t *a = c->arena;
  kir_expr_t *B = kir_i64(a, RANK_BLOCK);
  int t = ops_buf_temp(c, k, rs->temp);
  kir_expr_t *blk = kir_bin(a, KIR_DIV, i, B), *prev = kir_sub(a, blk, kir_i64(a, 1));
  kir_expr_t *base = kir_select(a, kir_bin(a, KIR_GT, blk, kir_i64(a, 0)), kir_load(k, t, &prev), kir_i64(a, 0));
  kir_expr_t *from = kir_mul(a, blk, B);
  return kir_add(a, base, count_range(c, k, buf, rs, from, kir_sub(a, i, from)));
}

flagos_status_t ops_ix_lower_compress(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  bool has;
  int axis, r = c->in[0].rank;
  FL_TRY(compress_axis(c, &has, &axis));
  kir_expr_t *len = ops_in_dim(c, 1, 0);
  kir_expr_t *avail = has ? ops_in_dim(c, 0, axis) : kir_i64(a, 1);
  if (!has)
    for (int d = 0; d < r; d++) avail = kir_mul(a, avail, ops_in_dim(c, 0, d));
  rank_src_t rs = {1, kir_bin(a, KIR_MIN, len, avail), -1};
  rank_prepare(c, &rs);
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_sh_in_kernel(c, 0, "compress", v);
  int o = ops_buf_out(c, k, 0), x = ops_buf_in(c, k, 0), cb = ops_buf_in(c, k, 1);
  kir_expr_t *i;
  if (has) {
    i = v[axis];
  } else {
    kir_expr_t *dims[OPS_MAX_RANK];
    ops_sh_in_dims(c, 0, dims);
    i = ops_sh_linear(a, r, v, dims);
  }
  kir_expr_t *keep = kir_select(a, kir_bin(a, KIR_LT, i, len), kir_load(k, cb, &i), kir_bool(a, false));
  /* Clamped so the rank stays computable (not stored) where the condition is shorter. */
  kir_expr_t *pos = rank_of(c, k, cb, &rs, kir_bin(a, KIR_MIN, i, rs.n));
  if (has) {
    memcpy(idx, v, sizeof(*v) * (size_t)r);
    idx[axis] = pos;
  } else {
    idx[0] = pos;
  }
  kir_store(k, o, idx, kir_load(k, x, v), keep);
  return NULL;
}

/* ---- NonZero ---- */
flagos_status_t ops_ix_infer_nonzero(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "X"));
  const ops_tensor_info_t *x = &c->in[0];
  /* A scalar counts as a 1-element vector, as NumPy's nonzero does. */
  int64_t d[2] = {x->rank > 0 ? x->rank : 1, -1};
  if (x->value && x->numel >= 0) {
    d[1] = 0;
    for (int64_t i = 0; i < x->numel; i++)
      if (ops_in_float(c, 0, i) != 0.0) d[1]++;
  }
  ops_set_out(c, 0, FLAGOS_INT64, 2, d);
  return NULL;
}

flagos_status_t ops_ix_lower_nonzero(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  kir_expr_t *v[OPS_MAX_RANK], *dims[OPS_MAX_RANK];
  ops_sh_in_dims(c, 0, dims);
  kir_expr_t *n = kir_i64(a, 1);
  for (int d = 0; d < r; d++) n = kir_mul(a, n, dims[d]);
  rank_src_t rs = {0, n, -1};
  rank_prepare(c, &rs);
  kir_kernel_t *k = ops_sh_in_kernel(c, 0, "nonzero", v);
  int o = ops_buf_out(c, k, 0), x = ops_buf_in(c, k, 0);
  kir_expr_t *pos = rank_of(c, k, x, &rs, ops_sh_linear(a, r, v, dims));
  kir_expr_t *keep = is_nonzero(a, kir_load(k, x, v));
  if (r == 0) {
    kir_expr_t *idx[2] = {kir_i64(a, 0), pos};
    kir_store(k, o, idx, kir_i64(a, 0), keep);
  }
  for (int d = 0; d < r; d++) {
    kir_expr_t *idx[2] = {kir_i64(a, d), pos};
    kir_store(k, o, idx, v[d], keep);
  }
  return NULL;
}
