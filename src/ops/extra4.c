/* MaxRoiPool: max pooling of each region of interest into a fixed grid (what
 * torchvision.ops.roi_pool exports). Region bounds come from the rois input, so
 * the reduction extents are loaded values: one kernel, one point per output
 * element, bounds computed in the compute type of X.
 *   rois[r] = (batch, x1, y1, x2, y2) in input coordinates, scaled by spatial_scale
 *   and rounded half away from zero; the region spans [start, end] inclusive, at
 *   least one pixel; bin ph covers floor(ph*h/PH) .. ceil((ph+1)*h/PH) of it,
 *   clipped to the image; an empty bin gives 0. */
#include "ops/ops.h"

#define AR (c->arena)

static flagos_status_t infer_maxroipool(ops_ctx_t *c) {
  if (c->n_in != 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs X and rois");
  const ops_tensor_info_t *x = &c->in[0], *r = &c->in[1];
  if (!flagos_dtype_is_float(x->dtype) || r->dtype != x->dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "X and rois must be the same floating type (got %s and %s)",
                   flagos_dtype_name(x->dtype), flagos_dtype_name(r->dtype));
  if (x->rank != 4) return ops_err(c, FLAGOS_ERR_SHAPE, "X must be 4-D (N, C, H, W), got rank %d", x->rank);
  if (r->rank != 2 || (r->dims[1] >= 0 && r->dims[1] != 5))
    return ops_err(c, FLAGOS_ERR_SHAPE, "rois must be (num_rois, 5)");
  const int64_t *ps;
  if (fir_attr_ints(c->node, "pooled_shape", &ps) != 2 || ps[0] < 1 || ps[1] < 1)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "pooled_shape must hold two positive sizes");
  int64_t dims[4] = {r->dims[0], x->dims[1], ps[0], ps[1]};
  ops_set_out(c, 0, x->dtype, 4, dims);
  return NULL;
}

/* round half away from zero, as an int64 */
static kir_expr_t *round_away(ops_ctx_t *c, flagos_dtype_t ft, kir_expr_t *v) {
  kir_expr_t *half = kir_const(AR, ft, 0.5);
  kir_expr_t *up = kir_un(AR, KIR_FLOOR, kir_bin(AR, KIR_ADD, v, half));
  kir_expr_t *down = kir_un(AR, KIR_CEIL, kir_bin(AR, KIR_SUB, v, half));
  kir_expr_t *r = kir_select(AR, kir_bin(AR, KIR_GE, v, kir_const(AR, ft, 0)), up, down);
  return kir_cast(AR, FLAGOS_INT64, r);
}

static kir_expr_t *clampi(ops_ctx_t *c, kir_expr_t *v, kir_expr_t *hi) {
  return kir_bin(AR, KIR_MIN, kir_bin(AR, KIR_MAX, v, kir_i64(AR, 0)), hi);
}

static flagos_status_t lower_maxroipool(ops_ctx_t *c) {
  kir_expr_t *v[4];
  kir_kernel_t *k = ops_out_kernel(c, 0, "maxroipool", v);
  int xb = ops_buf_in(c, k, 0), rb = ops_buf_in(c, k, 1);
  flagos_dtype_t dt = c->out[0].dtype, ft = kir_compute_dtype(dt);
  const int64_t *ps;
  fir_attr_ints(c->node, "pooled_shape", &ps);
  double scale = fir_attr_float(c->node, "spatial_scale", 1.0f);
  kir_expr_t *H = ops_in_dim(c, 0, 2), *W = ops_in_dim(c, 0, 3);
  kir_expr_t *roi[5];
  for (int j = 0; j < 5; j++) {
    kir_expr_t *idx[2] = {v[0], kir_i64(AR, j)};
    roi[j] = kir_cast(AR, ft, kir_load(k, rb, idx));
  }
  kir_expr_t *batch = kir_cast(AR, FLAGOS_INT64, roi[0]);
  kir_expr_t *sc = kir_const(AR, ft, (float)scale);
  kir_expr_t *x1 = round_away(c, ft, kir_bin(AR, KIR_MUL, roi[1], sc)), *y1 = round_away(c, ft, kir_bin(AR, KIR_MUL, roi[2], sc));
  kir_expr_t *x2 = round_away(c, ft, kir_bin(AR, KIR_MUL, roi[3], sc)), *y2 = round_away(c, ft, kir_bin(AR, KIR_MUL, roi[4], sc));
  kir_expr_t *one = kir_i64(AR, 1);
  kir_expr_t *rh = kir_bin(AR, KIR_MAX, kir_add(AR, kir_sub(AR, y2, y1), one), one);
  kir_expr_t *rw = kir_bin(AR, KIR_MAX, kir_add(AR, kir_sub(AR, x2, x1), one), one);
  kir_expr_t *bh = kir_bin(AR, KIR_DIV, kir_cast(AR, ft, rh), kir_const(AR, ft, (double)ps[0]));
  kir_expr_t *bw = kir_bin(AR, KIR_DIV, kir_cast(AR, ft, rw), kir_const(AR, ft, (double)ps[1]));
  kir_expr_t *ph = kir_cast(AR, ft, v[2]), *pw = kir_cast(AR, ft, v[3]), *f1 = kir_const(AR, ft, 1);
  kir_expr_t *hs = kir_cast(AR, FLAGOS_INT64, kir_un(AR, KIR_FLOOR, kir_bin(AR, KIR_MUL, ph, bh)));
  kir_expr_t *he = kir_cast(AR, FLAGOS_INT64, kir_un(AR, KIR_CEIL, kir_bin(AR, KIR_MUL, kir_bin(AR, KIR_ADD, ph, f1), bh)));
  kir_expr_t *ws = kir_cast(AR, FLAGOS_INT64, kir_un(AR, KIR_FLOOR, kir_bin(AR, KIR_MUL, pw, bw)));
  kir_expr_t *we = kir_cast(AR, FLAGOS_INT64, kir_un(AR, KIR_CEIL, kir_bin(AR, KIR_MUL, kir_bin(AR, KIR_ADD, pw, f1), bw)));
  hs = clampi(c, kir_add(AR, hs, y1), H);
  he = clampi(c, kir_add(AR, he, y1), H);
  ws = clampi(c, kir_add(AR, ws, x1), W);
  we = clampi(c, kir_add(AR, we, x1), W);
  kir_expr_t *nh = kir_bin(AR, KIR_MAX, kir_sub(AR, he, hs), kir_i64(AR, 0));
  kir_expr_t *nw = kir_bin(AR, KIR_MAX, kir_sub(AR, we, ws), kir_i64(AR, 0));
  int rv[2] = {kir_new_var(k), kir_new_var(k)};
  kir_expr_t *ext[2] = {nh, nw};
  kir_expr_t *xi[4] = {batch, v[1], kir_add(AR, hs, kir_var(AR, rv[0])), kir_add(AR, ws, kir_var(AR, rv[1]))};
  kir_expr_t *mx = kir_reduce(AR, KIR_RMAX, 2, rv, ext, kir_cast(AR, ft, kir_load(k, xb, xi)));
  /* An empty bin, or a roi naming a batch that does not exist, gives 0. */
  kir_expr_t *bad_batch = kir_bin(AR, KIR_OR, kir_bin(AR, KIR_LT, batch, kir_i64(AR, 0)),
                                  kir_bin(AR, KIR_GE, batch, ops_in_dim(c, 0, 0)));
  kir_expr_t *empty = kir_bin(AR, KIR_OR, kir_bin(AR, KIR_OR, kir_bin(AR, KIR_LE, he, hs), kir_bin(AR, KIR_LE, we, ws)), bad_batch);
  kir_store(k, 0, v, kir_select(AR, empty, kir_const(AR, ft, 0), mx), NULL);
  return NULL;
}

static double flops_maxroipool(const ops_ctx_t *c) { return 0; }

const ops_def_t ops_family_extra4[] = {
    {"MaxRoiPool", "", 0, infer_maxroipool, lower_maxroipool, flops_maxroipool},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
