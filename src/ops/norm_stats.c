/* Normalisations by mean and variance: LayerNormalization, RMSNormalization,
 * GroupNormalization, InstanceNormalization, BatchNormalization.
 *
 * Mean and inverse standard deviation (two-pass variance, numerically safer
 * than E[x^2] - E[x]^2) are row reductions inside the one output kernel where the
 * statistics are over x's trailing axes and not outputs themselves (LayerNorm,
 * RMSNorm: inline_invstd); otherwise they go to keepdims-shaped temps and one
 * elementwise kernel applies them. Statistics are computed in f32 for narrow floats (stash_type 1)
 * and in the input's type otherwise. */
#include <math.h>

#include "ops/reduce_common.h"

static bool out_wanted(const ops_ctx_t *c, int k) { return k < c->n_out && c->node->outputs[k] != NULL; }

static flagos_status_t need_float(ops_ctx_t *c, int k, const char *name) {
  if (!ops_has_in(c, k)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing input '%s'", name);
  if (c->in[k].rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input '%s' has unknown rank", name);
  if (!flagos_dtype_is_float(c->in[k].dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must be a float tensor, is %s", name,
                   flagos_dtype_name(c->in[k].dtype));
  return NULL;
}

/* Checks that input k's shape broadcasts onto x's trailing dims (known dims only). */
static flagos_status_t need_bcast(ops_ctx_t *c, int k, const char *name) {
  const ops_tensor_info_t *x = &c->in[0], *t = &c->in[k];
  if (t->rank > x->rank) return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' has higher rank than 'X'", name);
  for (int i = 0; i < t->rank; i++) {
    int64_t d = t->dims[i], xd = x->dims[x->rank - t->rank + i];
    if (d >= 0 && xd >= 0 && d != 1 && d != xd)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' dim %d is %lld, 'X' has %lld there", name, i, (long long)d,
                     (long long)xd);
  }
  return NULL;
}

static flagos_dtype_t stats_dtype(flagos_dtype_t dt) { return dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32; }

/* Mean (two-pass) and inverse std of x over the flagged axes into temps tm, ti;
 * optionally also into outputs om / oi (-1: none) of the same (keepdims) shape. */
static void mean_invstd(ops_ctx_t *c, kir_expr_t *const *flag, int tm, int ti, int om, int oi, double eps,
                        bool centred) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t acc = c->temps[ti].dtype;
  kir_expr_t *v[OPS_MAX_RANK];
  ops_red_space_t s;
  int tb, xb;
  kir_kernel_t *k;
  if (centred) {
    k = ops_red_temp_kernel(c, tm, "mean", v, &tb);
    xb = ops_buf_in(c, k, 0);
    ops_red_space(c, k, xb, v, flag, &s);
    kir_expr_t *m = kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, ops_red_load(c, k, xb, s.idx, acc)),
                            kir_cast(a, acc, s.count));
    kir_store(k, tb, v, m, NULL);
    if (om >= 0) kir_store(k, ops_buf_out(c, k, om), v, m, NULL);
  }
  k = ops_red_temp_kernel(c, ti, "invstd", v, &tb);
  xb = ops_buf_in(c, k, 0);
  ops_red_space(c, k, xb, v, flag, &s);
  kir_expr_t *d = ops_red_load(c, k, xb, s.idx, acc);
  if (centred) d = kir_bin(a, KIR_SUB, d, kir_load(k, ops_buf_temp(c, k, tm), v));
  kir_expr_t *var =
      kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, kir_bin(a, KIR_MUL, d, d)), kir_cast(a, acc, s.count));
  kir_expr_t *inv = kir_bin(a, KIR_DIV, ops_red_fconst(c, acc, 1),
                            kir_un(a, KIR_SQRT, kir_bin(a, KIR_ADD, var, ops_red_fconst(c, acc, eps))));
  kir_store(k, tb, v, inv, NULL);
  if (oi >= 0) kir_store(k, ops_buf_out(c, k, oi), v, inv, NULL);
}

/* The same statistics as expressions inside kernel k, whose space is x's (so the
 * reduced axes, a suffix of x's, are the innermost loops): every emitter
 * computes such row reductions once per row (the C emitter hoists them out of
 * the column loops, the GPU dialects share them across a block), so a
 * normalisation is one kernel that reads x from memory once. *mean is NULL
 * when not centred. */
static kir_expr_t *inline_invstd(ops_ctx_t *c, kir_kernel_t *k, int xb, kir_expr_t *const *v, kir_expr_t *const *flag,
                                 flagos_dtype_t acc, double eps, bool centred, kir_expr_t **mean) {
  fl_arena_t *a = c->arena;
  ops_red_space_t s;
  *mean = NULL;
  if (centred) {
    ops_red_space(c, k, xb, v, flag, &s);
    *mean = kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, ops_red_load(c, k, xb, s.idx, acc)),
                    kir_cast(a, acc, s.count));
  }
  ops_red_space(c, k, xb, v, flag, &s);
  kir_expr_t *d = ops_red_load(c, k, xb, s.idx, acc);
  if (centred) d = kir_bin(a, KIR_SUB, d, *mean);
  kir_expr_t *var =
      kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, kir_bin(a, KIR_MUL, d, d)), kir_cast(a, acc, s.count));
  return kir_bin(a, KIR_DIV, ops_red_fconst(c, acc, 1),
                 kir_un(a, KIR_SQRT, kir_bin(a, KIR_ADD, var, ops_red_fconst(c, acc, eps))));
}

/* ---- LayerNormalization (X, Scale, B?) -> (Y, Mean?, InvStdDev?) over axes [axis, r). ---- */
flagos_status_t ops_norm_layer_infer(ops_ctx_t *c) {
  FL_TRY(need_float(c, 0, "X"));
  FL_TRY(need_float(c, 1, "Scale"));
  FL_TRY(need_bcast(c, 1, "Scale"));
  if (ops_has_in(c, 2)) {
    FL_TRY(need_float(c, 2, "B"));
    FL_TRY(need_bcast(c, 2, "B"));
  }
  const ops_tensor_info_t *x = &c->in[0];
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", -1), x->rank, &axis));
  c->n_params = 1;
  c->params[0] = axis;
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  int64_t kd[OPS_MAX_RANK];
  for (int i = 0; i < x->rank; i++)
    kd[i] = i < axis ? x->dims[i] : 1;
  flagos_dtype_t sdt = fir_attr_int(c->node, "stash_type", 1) == 1 ? FLAGOS_FLOAT32 : x->dtype;
  for (int o = 1; o <= 2; o++)
    if (out_wanted(c, o)) ops_set_out(c, o, sdt, x->rank, kd);
  return NULL;
}

flagos_status_t ops_norm_layer_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank, axis = (int)c->params[0];
  flagos_dtype_t acc = stats_dtype(c->in[0].dtype);
  kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK], *v[OPS_MAX_RANK], *ki[OPS_MAX_RANK];
  uint64_t mask = 0;
  for (int i = axis; i < r; i++)
    mask |= 1ull << i;
  ops_red_flags_mask(c, r, mask, flag);
  ops_red_keep_dims(c, 0, flag, kd);
  double eps = fir_attr_float(c->node, "epsilon", 1e-5f);
  if (!out_wanted(c, 1) && !out_wanted(c, 2)) {
    kir_kernel_t *k = ops_out_kernel(c, 0, "layernorm", v);
    int xb = ops_buf_in(c, k, 0), sb = ops_buf_in(c, k, 1);
    kir_expr_t *mean, *inv = inline_invstd(c, k, xb, v, flag, acc, eps, true, &mean);
    kir_expr_t *y = kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), mean), inv);
    y = kir_bin(a, KIR_MUL, y, kir_cast(a, acc, ops_load_bcast(c, k, sb, 1, r, v)));
    if (ops_has_in(c, 2))
      y = kir_bin(a, KIR_ADD, y, kir_cast(a, acc, ops_load_bcast(c, k, ops_buf_in(c, k, 2), 2, r, v)));
    kir_store(k, 0, v, y, NULL);
    return NULL;
  }
  int tm = ops_temp(c, acc, r, kd), ti = ops_temp(c, acc, r, kd);
  mean_invstd(c, flag, tm, ti, out_wanted(c, 1) ? 1 : -1, out_wanted(c, 2) ? 2 : -1, eps, true);

  kir_kernel_t *k = ops_out_kernel(c, 0, "affine", v);
  int xb = ops_buf_in(c, k, 0), mb = ops_buf_temp(c, k, tm), ib = ops_buf_temp(c, k, ti);
  int sb = ops_buf_in(c, k, 1);
  ops_red_keep_idx(c, r, flag, v, ki);
  kir_expr_t *y = kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), kir_load(k, mb, ki)),
                          kir_load(k, ib, ki));
  y = kir_bin(a, KIR_MUL, y, kir_cast(a, acc, ops_load_bcast(c, k, sb, 1, r, v)));
  if (ops_has_in(c, 2))
    y = kir_bin(a, KIR_ADD, y, kir_cast(a, acc, ops_load_bcast(c, k, ops_buf_in(c, k, 2), 2, r, v)));
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

/* ---- RMSNormalization (X, scale) -> Y = X / sqrt(mean(X^2) + eps) * scale over axes [axis, r). ---- */
flagos_status_t ops_norm_rms_infer(ops_ctx_t *c) {
  FL_TRY(need_float(c, 0, "X"));
  FL_TRY(need_float(c, 1, "scale"));
  FL_TRY(need_bcast(c, 1, "scale"));
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", -1), c->in[0].rank, &axis));
  c->n_params = 1;
  c->params[0] = axis;
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

flagos_status_t ops_norm_rms_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank, axis = (int)c->params[0];
  flagos_dtype_t acc = stats_dtype(c->in[0].dtype);
  kir_expr_t *flag[OPS_MAX_RANK], *v[OPS_MAX_RANK];
  uint64_t mask = 0;
  for (int i = axis; i < r; i++)
    mask |= 1ull << i;
  ops_red_flags_mask(c, r, mask, flag);
  kir_kernel_t *k = ops_out_kernel(c, 0, "rmsnorm", v);
  int xb = ops_buf_in(c, k, 0), sb = ops_buf_in(c, k, 1);
  kir_expr_t *none;
  kir_expr_t *inv = inline_invstd(c, k, xb, v, flag, acc, fir_attr_float(c->node, "epsilon", 1e-5f), false, &none);
  kir_expr_t *y = kir_bin(a, KIR_MUL, ops_red_load(c, k, xb, v, acc), inv);
  y = kir_bin(a, KIR_MUL, y, kir_cast(a, acc, ops_load_bcast(c, k, sb, 1, r, v)));
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

/* ---- InstanceNormalization (X[N,C,...], scale[C], B[C]): statistics over the spatial dims. ---- */
static flagos_status_t need_channel_vec(ops_ctx_t *c, int k, const char *name, int64_t ch) {
  FL_TRY(need_float(c, k, name));
  if (c->in[k].rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must be 1-D", name);
  if (ch >= 0 && c->in[k].dims[0] >= 0 && c->in[k].dims[0] != ch)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' has %lld entries, expected %lld", name, (long long)c->in[k].dims[0],
                   (long long)ch);
  return NULL;
}

flagos_status_t ops_norm_instance_infer(ops_ctx_t *c) {
  FL_TRY(need_float(c, 0, "input"));
  if (c->in[0].rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'input' must have rank >= 2 (N, C, ...)");
  FL_TRY(need_channel_vec(c, 1, "scale", c->in[0].dims[1]));
  FL_TRY(need_channel_vec(c, 2, "B", c->in[0].dims[1]));
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, c->in[0].dims);
  return NULL;
}

/* y = (x - mean) * invstd * scale[c] + bias[c], with stats in keepdims temps. */
static void apply_channel_affine(ops_ctx_t *c, kir_expr_t *const *flag, int tm, int ti, int scale_in, int bias_in) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  flagos_dtype_t acc = c->temps[ti].dtype;
  kir_expr_t *v[OPS_MAX_RANK], *ki[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "affine", v);
  int xb = ops_buf_in(c, k, 0), mb = ops_buf_temp(c, k, tm), ib = ops_buf_temp(c, k, ti);
  int sb = ops_buf_in(c, k, scale_in), bb = ops_buf_in(c, k, bias_in);
  ops_red_keep_idx(c, r, flag, v, ki);
  kir_expr_t *y = kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), kir_load(k, mb, ki)),
                          kir_load(k, ib, ki));
  y = kir_bin(a, KIR_MUL, y, ops_red_load(c, k, sb, &v[1], acc));
  y = kir_bin(a, KIR_ADD, y, ops_red_load(c, k, bb, &v[1], acc));
  kir_store(k, 0, v, y, NULL);
}

flagos_status_t ops_norm_instance_lower(ops_ctx_t *c) {
  int r = c->in[0].rank;
  flagos_dtype_t acc = stats_dtype(c->in[0].dtype);
  kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK];
  uint64_t mask = 0;
  for (int i = 2; i < r; i++)
    mask |= 1ull << i;
  ops_red_flags_mask(c, r, mask, flag);
  ops_red_keep_dims(c, 0, flag, kd);
  int tm = ops_temp(c, acc, r, kd), ti = ops_temp(c, acc, r, kd);
  mean_invstd(c, flag, tm, ti, -1, -1, fir_attr_float(c->node, "epsilon", 1e-5f), true);
  apply_channel_affine(c, flag, tm, ti, 1, 2);
  return NULL;
}

/* ---- BatchNormalization (X, scale, B, input_mean, input_var) ----
 * Inference uses the given mean/var. training_mode (opset >= 14) normalises with
 * the batch statistics (over all dims but 1, population variance) and outputs
 * running_mean/var = input * momentum + batch * (1 - momentum). */
flagos_status_t ops_norm_batch_infer(ops_ctx_t *c) {
  FL_TRY(need_float(c, 0, "X"));
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'X' must have rank >= 2 (N, C, ...)");
  static const char *const names[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (int k = 1; k < 5; k++)
    FL_TRY(need_channel_vec(c, k, names[k], x->dims[1]));
  bool training = c->opset >= 14 && fir_attr_int(c->node, "training_mode", 0) != 0;
  if (c->opset < 14 && c->opset >= 7 && out_wanted(c, 1))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "training outputs of BatchNormalization before opset 14");
  if (c->opset < 7 && fir_attr_int(c->node, "is_test", 0) == 0 && out_wanted(c, 1))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "training outputs of BatchNormalization before opset 7");
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  int64_t ch = x->dims[1];
  if (training)
    for (int o = 1; o <= 2; o++)
      if (out_wanted(c, o)) ops_set_out(c, o, c->in[3].dtype, 1, &ch);
  c->n_params = 1;
  c->params[0] = training;
  return NULL;
}

flagos_status_t ops_norm_batch_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  double eps = fir_attr_float(c->node, "epsilon", 1e-5f);
  flagos_dtype_t acc = stats_dtype(c->in[0].dtype);
  kir_expr_t *v[OPS_MAX_RANK];
  if (!c->params[0]) {
    kir_kernel_t *k = ops_out_kernel(c, 0, "affine", v);
    int xb = ops_buf_in(c, k, 0), sb = ops_buf_in(c, k, 1), bb = ops_buf_in(c, k, 2);
    int mb = ops_buf_in(c, k, 3), vb = ops_buf_in(c, k, 4);
    kir_expr_t *ch = v[1];
    kir_expr_t *inv =
        kir_un(a, KIR_SQRT, kir_bin(a, KIR_ADD, ops_red_load(c, k, vb, &ch, acc), ops_red_fconst(c, acc, eps)));
    kir_expr_t *y = kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), ops_red_load(c, k, mb, &ch, acc));
    y = kir_bin(a, KIR_DIV, kir_bin(a, KIR_MUL, y, ops_red_load(c, k, sb, &ch, acc)), inv);
    kir_store(k, 0, v, kir_bin(a, KIR_ADD, y, ops_red_load(c, k, bb, &ch, acc)), NULL);
    return NULL;
  }
  kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK];
  ops_red_flags_mask(c, r, ~(uint64_t)2 & ((r >= 64 ? 0 : 1ull << r) - 1), flag);
  ops_red_keep_dims(c, 0, flag, kd);
  int tm = ops_temp(c, acc, r, kd), ti = ops_temp(c, acc, r, kd);
  mean_invstd(c, flag, tm, ti, -1, -1, eps, true);
  apply_channel_affine(c, flag, tm, ti, 1, 2);
  /* Running statistics, from the batch mean and the (population) batch variance. */
  double mom = fir_attr_float(c->node, "momentum", 0.9f);
  for (int o = 1; o <= 2; o++) {
    if (!out_wanted(c, o)) continue;
    kir_kernel_t *k = ops_out_kernel(c, o, o == 1 ? "running_mean" : "running_var", v);
    int ib = ops_buf_in(c, k, o == 1 ? 3 : 4), mb = ops_buf_temp(c, k, tm), xb = ops_buf_in(c, k, 0);
    kir_expr_t *outer[OPS_MAX_RANK];
    for (int i = 0; i < r; i++)
      outer[i] = i == 1 ? v[0] : kir_i64(a, 0);
    kir_expr_t *batch = kir_load(k, mb, outer);
    if (o == 2) {
      ops_red_space_t s;
      ops_red_space(c, k, xb, outer, flag, &s);
      kir_expr_t *d = kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, s.idx, acc), batch);
      batch =
          kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, kir_bin(a, KIR_MUL, d, d)), kir_cast(a, acc, s.count));
    }
    kir_expr_t *y =
        kir_bin(a, KIR_ADD, kir_bin(a, KIR_MUL, ops_red_load(c, k, ib, v, acc), ops_red_fconst(c, acc, mom)),
                kir_bin(a, KIR_MUL, batch, ops_red_fconst(c, acc, 1 - mom)));
    kir_store(k, 0, v, y, NULL);
  }
  return NULL;
}

/* ---- GroupNormalization (X[N,C,...], scale, bias) ----
 * Statistics per (n, group) over the group's channels and the spatial dims;
 * scale/bias are per group before opset 21 and per channel from it. */
flagos_status_t ops_norm_group_infer(ops_ctx_t *c) {
  FL_TRY(need_float(c, 0, "X"));
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'X' must have rank >= 2 (N, C, ...)");
  const fir_attr_t *g = fir_node_attr(c->node, "num_groups");
  if (!g || g->i <= 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'num_groups' must be a positive int");
  if (x->dims[1] >= 0 && x->dims[1] % g->i != 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "%lld channels do not split into %lld groups", (long long)x->dims[1],
                   (long long)g->i);
  int64_t per = c->opset >= 21 ? x->dims[1] : g->i;
  FL_TRY(need_channel_vec(c, 1, "scale", per));
  FL_TRY(need_channel_vec(c, 2, "bias", per));
  c->n_params = 1;
  c->params[0] = g->i;
  ops_set_out(c, 0, x->dtype, x->rank, x->dims);
  return NULL;
}

flagos_status_t ops_norm_group_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  int64_t groups = c->params[0];
  double eps = fir_attr_float(c->node, "epsilon", 1e-5f);
  flagos_dtype_t acc = stats_dtype(c->in[0].dtype);
  kir_expr_t *gdims[2] = {ops_in_dim(c, 0, 0), kir_i64(a, groups)};
  kir_expr_t *cpg = kir_bin(a, KIR_DIV, ops_in_dim(c, 0, 1), kir_i64(a, groups)); /* channels per group */
  int tm = ops_temp(c, acc, 2, gdims), ti = ops_temp(c, acc, 2, gdims);

  /* x at (n, g*cpg + rc, spatial...) with fresh reduction vars for rc and the spatial dims. */
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK], *ext[OPS_MAX_RANK];
  int rv[OPS_MAX_RANK];
  for (int pass = 0; pass < 2; pass++) {
    int tb;
    kir_kernel_t *k = ops_red_temp_kernel(c, pass == 0 ? tm : ti, pass == 0 ? "mean" : "invstd", v, &tb);
    int xb = ops_buf_in(c, k, 0);
    kir_expr_t *cnt = kir_i64(a, 1);
    for (int i = 1; i < r; i++) {
      rv[i - 1] = kir_new_var(k);
      ext[i - 1] = i == 1 ? cpg : ops_in_dim(c, 0, i);
      cnt = kir_mul(a, cnt, ext[i - 1]);
      idx[i] = kir_var(a, rv[i - 1]);
    }
    idx[0] = v[0];
    idx[1] = kir_add(a, kir_mul(a, v[1], cpg), idx[1]);
    kir_expr_t *x = ops_red_load(c, k, xb, idx, acc), *n = kir_cast(a, acc, cnt);
    if (pass == 0) {
      kir_store(k, tb, v, kir_bin(a, KIR_DIV, kir_reduce(a, KIR_RSUM, r - 1, rv, ext, x), n), NULL);
    } else {
      kir_expr_t *d = kir_bin(a, KIR_SUB, x, kir_load(k, ops_buf_temp(c, k, tm), v));
      kir_expr_t *var = kir_bin(a, KIR_DIV, kir_reduce(a, KIR_RSUM, r - 1, rv, ext, kir_bin(a, KIR_MUL, d, d)), n);
      kir_store(k, tb, v,
                kir_bin(a, KIR_DIV, ops_red_fconst(c, acc, 1),
                        kir_un(a, KIR_SQRT, kir_bin(a, KIR_ADD, var, ops_red_fconst(c, acc, eps)))),
                NULL);
    }
  }

  kir_kernel_t *k = ops_out_kernel(c, 0, "affine", v);
  int xb = ops_buf_in(c, k, 0), mb = ops_buf_temp(c, k, tm), ib = ops_buf_temp(c, k, ti);
  int sb = ops_buf_in(c, k, 1), bb = ops_buf_in(c, k, 2);
  kir_expr_t *gi[2] = {v[0], kir_bin(a, KIR_DIV, v[1], cpg)};
  kir_expr_t *pi = c->opset >= 21 ? v[1] : gi[1];
  kir_expr_t *y = kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), kir_load(k, mb, gi)),
                          kir_load(k, ib, gi));
  y = kir_bin(a, KIR_ADD, kir_bin(a, KIR_MUL, y, ops_red_load(c, k, sb, &pi, acc)), ops_red_load(c, k, bb, &pi, acc));
  kir_store(k, 0, v, y, NULL);
  return NULL;
}
