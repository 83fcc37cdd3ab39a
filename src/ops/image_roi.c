/* RoiAlign (opset 10, 16): one kernel over the pooled output. Each bin averages
 * (or maxes) a grid of bilinear samples; the grid size comes from the ROI's own
 * extent when sampling_ratio is 0, so the reduction's extents are computed from
 * loaded ROI coordinates (a data-dependent loop bound, which kernel IR allows).
 * Sample positions and weights follow ONNX's reference (from Caffe2/ORT). */
#include <math.h>
#include <string.h>

#include "ops/misc_util.h"

#define AR (c->arena)

flagos_status_t ops_roialign_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 3, 3));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, 2, OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32)));
  const ops_tensor_info_t *X = &c->in[0], *R = &c->in[1], *B = &c->in[2];
  if (X->rank != 4) return ops_err(c, FLAGOS_ERR_SHAPE, "X must have rank 4, got %d", X->rank);
  if (R->rank != 2 || (R->dims[1] >= 0 && R->dims[1] != 4))
    return ops_err(c, FLAGOS_ERR_SHAPE, "rois must have shape (num_rois, 4)");
  if (B->rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "batch_indices must be 1-D");
  if (R->dims[0] >= 0 && B->dims[0] >= 0 && R->dims[0] != B->dims[0])
    return ops_err(c, FLAGOS_ERR_SHAPE, "rois has %lld rows but batch_indices %lld", (long long)R->dims[0],
                   (long long)B->dims[0]);
  const char *mode = fir_attr_string(c->node, "mode", "avg");
  if (strcmp(mode, "avg") != 0 && strcmp(mode, "max") != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute mode must be avg or max, got \"%s\"", mode);
  const char *ctm = fir_attr_string(c->node, "coordinate_transformation_mode", "half_pixel");
  if (strcmp(ctm, "half_pixel") != 0 && strcmp(ctm, "output_half_pixel") != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "coordinate_transformation_mode \"%s\" is not supported", ctm);
  int64_t oh = fir_attr_int(c->node, "output_height", 1), ow = fir_attr_int(c->node, "output_width", 1);
  if (oh < 1 || ow < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "output_height/width must be positive");
  int64_t d[4] = {B->dims[0] >= 0 ? B->dims[0] : R->dims[0], X->dims[1], oh, ow};
  ops_set_out(c, 0, X->dtype, 4, d);
  return NULL;
}

double ops_roialign_flops(const ops_ctx_t *c) {
  int64_t sr = fir_attr_int(c->node, "sampling_ratio", 0);
  double per = sr > 0 ? (double)(sr * sr) : 4.0;
  return c->out[0].numel < 0 ? 0 : (double)c->out[0].numel * per * 8.0;
}

flagos_status_t ops_roialign_lower(ops_ctx_t *c) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  flagos_dtype_t dt = c->out[0].dtype;
  bool is_max = strcmp(fir_attr_string(c->node, "mode", "avg"), "max") == 0;
  /* Opset 10 has no coordinate_transformation_mode and behaves as output_half_pixel. */
  const char *ctm = fir_attr_string(c->node, "coordinate_transformation_mode", c->opset >= 16 ? "half_pixel" : "output_half_pixel");
  bool half_pixel = strcmp(ctm, "half_pixel") == 0;
  int64_t sr = fir_attr_int(c->node, "sampling_ratio", 0);
  double ss = fir_attr_float(c->node, "spatial_scale", 1.0f);
  kir_expr_t *v[4];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "roialign", v);
  int bx = ops_buf_in(c, kk, 0), br = ops_buf_in(c, kk, 1), bb = ops_buf_in(c, kk, 2);
  kir_expr_t *one = ops_fc(c, F, 1.0), *zero = ops_fc(c, F, 0.0), *half = ops_fc(c, F, 0.5);
  kir_expr_t *roi[4];
  for (int j = 0; j < 4; j++) {
    kir_expr_t *ri[2] = {v[0], kir_i64(AR, j)};
    roi[j] = ops_fsub(c, ops_fmul(c, kir_cast(AR, F, kir_load(kk, br, ri)), ops_fc(c, F, ss)), half_pixel ? half : zero);
  }
  kir_expr_t *bi[1] = {v[0]};
  kir_expr_t *batch = kir_cast(AR, FLAGOS_INT64, kir_load(kk, bb, bi));
  kir_expr_t *H = ops_in_dim(c, 0, 2), *W = ops_in_dim(c, 0, 3);
  /* per axis: 0 = h (roi[1], roi[3]), 1 = w (roi[0], roi[2]) */
  kir_expr_t *start[2], *bin[2], *grid[2], *pos[2], *lo[2], *hi[2], *l[2], *outside = NULL;
  int rv[2];
  kir_expr_t *size[2] = {H, W};
  for (int a = 0; a < 2; a++) {
    start[a] = roi[1 - a];
    kir_expr_t *len = ops_fsub(c, roi[3 - a], roi[1 - a]);
    if (!half_pixel) len = kir_bin(AR, KIR_MAX, len, one);
    kir_expr_t *pooled = ops_itof(c, F, ops_out_dim(c, 0, 2 + a));
    bin[a] = ops_fdiv(c, len, pooled);
    grid[a] = sr > 0 ? kir_i64(AR, sr) : kir_cast(AR, FLAGOS_INT64, kir_un(AR, KIR_CEIL, ops_fdiv(c, len, pooled)));
    rv[a] = kir_new_var(kk);
    kir_expr_t *it = ops_itof(c, F, kir_var(AR, rv[a]));
    kir_expr_t *p = ops_fadd(c, ops_fadd(c, start[a], ops_fmul(c, ops_itof(c, F, v[2 + a]), bin[a])),
                             ops_fdiv(c, ops_fmul(c, ops_fadd(c, it, half), bin[a]), ops_itof(c, F, grid[a])));
    kir_expr_t *sf = ops_itof(c, F, size[a]);
    kir_expr_t *o = kir_bin(AR, KIR_OR, kir_bin(AR, KIR_LT, p, ops_fc(c, F, -1.0)), kir_bin(AR, KIR_GT, p, sf));
    outside = outside ? kir_bin(AR, KIR_OR, outside, o) : o;
    p = kir_bin(AR, KIR_MAX, p, zero);
    kir_expr_t *last = kir_sub(AR, size[a], kir_i64(AR, 1));
    kir_expr_t *low = kir_cast(AR, FLAGOS_INT64, p);
    kir_expr_t *at_end = kir_bin(AR, KIR_GE, low, last);
    lo[a] = kir_select(AR, at_end, last, low);
    hi[a] = kir_select(AR, at_end, last, kir_add(AR, low, kir_i64(AR, 1)));
    pos[a] = kir_select(AR, at_end, ops_itof(c, F, last), p);
    l[a] = ops_fsub(c, pos[a], ops_itof(c, F, lo[a]));
  }
  kir_expr_t *hy = ops_fsub(c, one, l[0]), *hx = ops_fsub(c, one, l[1]);
  kir_expr_t *w[4] = {ops_fmul(c, hy, hx), ops_fmul(c, hy, l[1]), ops_fmul(c, l[0], hx), ops_fmul(c, l[0], l[1])};
  kir_expr_t *ys[4] = {lo[0], lo[0], hi[0], hi[0]}, *xs[4] = {lo[1], hi[1], lo[1], hi[1]};
  kir_expr_t *acc = NULL;
  for (int j = 0; j < 4; j++) {
    kir_expr_t *xi[4] = {batch, v[1], ys[j], xs[j]};
    kir_expr_t *t = ops_fmul(c, w[j], kir_cast(AR, F, kir_load(kk, bx, xi)));
    acc = !acc ? t : is_max ? kir_bin(AR, KIR_MAX, acc, t) : ops_fadd(c, acc, t);
  }
  /* A sample outside the map has all weights 0: it adds 0 (avg) or counts as 0 (max). */
  acc = kir_select(AR, outside, zero, acc);
  kir_expr_t *y = kir_reduce(AR, is_max ? KIR_RMAX : KIR_RSUM, 2, rv, grid, acc);
  kir_expr_t *count = kir_mul(AR, grid[0], grid[1]);
  if (is_max) {
    y = kir_select(AR, kir_bin(AR, KIR_GT, count, kir_i64(AR, 0)), y, zero);
  } else {
    kir_expr_t *n = kir_bin(AR, KIR_MAX, count, kir_i64(AR, 1));
    y = ops_fdiv(c, y, ops_itof(c, F, n));
  }
  kir_store(kk, 0, v, kir_cast(AR, dt, y), NULL);
  return NULL;
}
