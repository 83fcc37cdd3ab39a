/* Resize (opset 10 to 19) and the deprecated Upsample (7, 9).
 *
 * One kernel over the output. Interpolation is separable, so each output point
 * is a weighted sum over a box of taps, one tap range per resized axis; the
 * weight is the product of the per-axis 1-D coefficients (nearest picks one tap,
 * linear two, cubic four, antialiased modes widen the box by 1/scale and
 * normalise). Everything is computed in f64, like ONNX's reference.
 *
 * Scales, sizes and roi are input values: infer turns them into per-axis
 * parameters (a double's bits, see misc_util.h), so the same lowering serves
 * constant and runtime scales. params (r = rank), each r long:
 *   [0r) scale, [1r) roi start, [2r) roi end (doubles' bits),
 *   [3r) taps per axis, [4r) 1 when the axis is left as is (scale 1, same size,
 *   default roi: the reference skips such axes, so must we). */
#include <math.h>
#include <string.h>

#include "ops/misc_util.h"

#define AR (c->arena)

enum { RS_NEAREST, RS_LINEAR, RS_CUBIC };
enum {
  CT_HALF_PIXEL, CT_HALF_PIXEL_SYM, CT_PYTORCH_HALF_PIXEL, CT_ALIGN_CORNERS, CT_ASYMMETRIC, CT_TF_HALF_PIXEL_NN,
  CT_TF_CROP
};
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL };

typedef struct rs_cfg {
  bool upsample;   /* Upsample, or Resize-10: scales only, asymmetric, floor */
  int in_scales, in_sizes, in_roi; /* input indices, -1 if the op has none */
  int mode, ctm, nearest;
  bool antialias, exclude_outside;
  double cubic_a, extrapolation;
  int keep_aspect; /* 0 stretch, 1 not_larger, 2 not_smaller */
  int n_axes;
  int axes[OPS_MAX_RANK];
  bool axis_listed[OPS_MAX_RANK];
} rs_cfg_t;

static flagos_status_t pick(const ops_ctx_t *c, const char *attr, const char *val, const char *const *names, int n,
                            int *out) {
  for (int i = 0; i < n; i++)
    if (strcmp(val, names[i]) == 0) {
      *out = i;
      return NULL;
    }
  return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute %s has unsupported value \"%s\"", attr, val);
}

static flagos_status_t rs_config(const ops_ctx_t *c, int rank, rs_cfg_t *g) {
  memset(g, 0, sizeof(*g));
  const fir_node_t *n = c->node;
  g->upsample = strcmp(n->op_type, "Upsample") == 0 || c->opset < 11;
  static const char *const modes[] = {"nearest", "linear", "cubic"};
  const char *mode = fir_attr_string(n, "mode", "nearest");
  if (g->upsample && strcmp(mode, "bilinear") == 0) mode = "linear";
  FL_TRY(pick(c, "mode", mode, modes, 3, &g->mode));
  if (g->upsample) {
    if (g->mode == RS_CUBIC) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "mode cubic needs Resize opset 11 or later");
    g->in_scales = strcmp(n->op_type, "Upsample") == 0 && c->opset < 9 ? -1 : 1;
    g->in_sizes = g->in_roi = -1;
    g->ctm = CT_ASYMMETRIC;
    g->nearest = NM_FLOOR;
  } else {
    g->in_roi = 1;
    g->in_scales = 2;
    g->in_sizes = 3;
    static const char *const ctms[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                       "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
    FL_TRY(pick(c, "coordinate_transformation_mode", fir_attr_string(n, "coordinate_transformation_mode", "half_pixel"),
                ctms, 7, &g->ctm));
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    FL_TRY(pick(c, "nearest_mode", fir_attr_string(n, "nearest_mode", "round_prefer_floor"), nms, 4, &g->nearest));
    static const char *const kar[] = {"stretch", "not_larger", "not_smaller"};
    FL_TRY(pick(c, "keep_aspect_ratio_policy", fir_attr_string(n, "keep_aspect_ratio_policy", "stretch"), kar, 3,
                &g->keep_aspect));
    g->antialias = fir_attr_int(n, "antialias", 0) != 0;
    g->exclude_outside = fir_attr_int(n, "exclude_outside", 0) != 0;
    g->cubic_a = fir_attr_float(n, "cubic_coeff_a", -0.75f);
    g->extrapolation = fir_attr_float(n, "extrapolation_value", 0.0f);
    if (g->antialias && g->mode == RS_NEAREST)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "antialias is not defined for mode nearest");
  }
  const int64_t *ax;
  int na = fir_attr_ints(n, "axes", &ax);
  if (na >= 0 && !g->upsample) {
    if (na > rank) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axes lists %d axes for rank %d", na, rank);
    for (int i = 0; i < na; i++) {
      int a;
      FL_TRY(ops_axis(c, ax[i], rank, &a));
      if (g->axis_listed[a]) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axes repeats axis %d", a);
      g->axis_listed[a] = true;
      g->axes[i] = a;
    }
    g->n_axes = na;
  } else {
    for (int i = 0; i < rank; i++) {
      g->axes[i] = i;
      g->axis_listed[i] = true;
    }
    g->n_axes = rank;
  }
  return NULL;
}

/* An input that is given and not empty (Resize passes "" or an empty tensor for
 * the one of scales/sizes it does not use). -1: given, size unknown yet. */
static int rs_given(const ops_ctx_t *c, int k) {
  if (k < 0 || !ops_has_in(c, k)) return 0;
  const ops_tensor_info_t *t = &c->in[k];
  if (t->rank == 1 && t->dims[0] == 0) return 0;
  if (t->numel == 0) return 0;
  if (t->rank == 1 && t->dims[0] > 0) return 1;
  return t->numel > 0 ? 1 : -1;
}

/* Taps of one axis: 2 - 2*start with start = floor(-R/s') + 1, the reference's
 * support of the (antialiased) filter; R = 1 linear, 2 cubic. */
static int64_t rs_taps(const rs_cfg_t *g, double scale) {
  if (g->mode == RS_NEAREST) return 1;
  double s = g->antialias && scale < 1.0 ? scale : 1.0;
  double radius = g->mode == RS_LINEAR ? 1.0 : 2.0;
  int64_t start = (int64_t)floor(-radius / s) + 1;
  return 2 - 2 * start;
}

static flagos_status_t rs_infer(ops_ctx_t *c) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input X is missing");
  const ops_tensor_info_t *X = &c->in[0];
  if (X->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input X has unknown rank");
  if (!ops_dt_in(X->dtype, OPS_DT_NUMERIC))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input X has dtype %s, which Resize does not accept", flagos_dtype_onnx_name(X->dtype));
  int r = X->rank;
  rs_cfg_t g;
  FL_TRY(rs_config(c, r, &g));
  c->n_params = 5 * r;
  double scale[OPS_MAX_RANK], r0[OPS_MAX_RANK], r1[OPS_MAX_RANK];
  int64_t out[OPS_MAX_RANK];
  bool known = true;
  for (int i = 0; i < r; i++) {
    scale[i] = 1.0;
    r0[i] = 0.0;
    r1[i] = 1.0;
    out[i] = X->dims[i];
  }
  int has_scales = rs_given(c, g.in_scales), has_sizes = rs_given(c, g.in_sizes);
  const float *attr_scales = NULL;
  if (g.upsample && g.in_scales < 0) {
    int ns = fir_attr_floats(c->node, "scales", &attr_scales);
    if (ns != r) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute scales has %d values for rank %d", ns, r);
    has_scales = 1;
  }
  if (has_scales == 0 && has_sizes == 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "one of scales and sizes must be given");
  if (has_scales && has_sizes > 0 && has_scales > 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "only one of scales and sizes may be given");
  bool use_sizes = has_sizes != 0 && has_scales <= 0;
  if (has_scales == -1 && has_sizes == -1) known = false; /* which one is used is not known yet */
  int k = use_sizes ? g.in_sizes : g.in_scales;
  if (known && !attr_scales) {
    const ops_tensor_info_t *t = &c->in[k];
    if (t->rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "%s must be 1-D", use_sizes ? "sizes" : "scales");
    if (t->dims[0] >= 0 && t->dims[0] != g.n_axes)
      return ops_err(c, FLAGOS_ERR_SHAPE, "%s has %lld values but %d axes are resized", use_sizes ? "sizes" : "scales",
                     (long long)t->dims[0], g.n_axes);
    if (use_sizes && t->dtype != FLAGOS_INT64) return ops_err(c, FLAGOS_ERR_SHAPE, "sizes must be int64");
    if (!use_sizes && !flagos_dtype_is_float(t->dtype)) return ops_err(c, FLAGOS_ERR_SHAPE, "scales must be float");
    if (!t->value) known = false;
  }
  for (int i = 0; i < r; i++)
    if (X->dims[i] < 0) known = false;
  if (known) {
    if (!use_sizes) {
      for (int j = 0; j < g.n_axes; j++) {
        int a = g.axes[j];
        scale[a] = attr_scales ? (double)attr_scales[j] : ops_in_float(c, k, j);
        if (!(scale[a] > 0.0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "scale %g is not positive", scale[a]);
        out[a] = (int64_t)floor((double)X->dims[a] * scale[a]);
      }
    } else {
      for (int j = 0; j < g.n_axes; j++) {
        int a = g.axes[j];
        out[a] = ops_in_int(c, k, j);
        if (out[a] < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "sizes holds a negative size %lld", (long long)out[a]);
        scale[a] = X->dims[a] ? (double)out[a] / (double)X->dims[a] : 1.0;
      }
      if (g.keep_aspect) {
        double s = scale[g.axes[0]];
        for (int j = 1; j < g.n_axes; j++) {
          double t = scale[g.axes[j]];
          s = g.keep_aspect == 1 ? (t < s ? t : s) : (t > s ? t : s);
        }
        for (int j = 0; j < g.n_axes; j++) {
          int a = g.axes[j];
          scale[a] = s;
          out[a] = (int64_t)(s * (double)X->dims[a] + 0.5);
        }
      }
    }
    if (g.ctm == CT_TF_CROP && !g.upsample) {
      if (rs_given(c, g.in_roi) != 1 || !c->in[g.in_roi].value) {
        if (rs_given(c, g.in_roi) == 0)
          return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "tf_crop_and_resize needs the roi input");
        known = false;
      } else {
        int64_t nr = c->in[g.in_roi].numel;
        bool per_axis = nr == 2 * g.n_axes;
        if (!per_axis && nr != 2 * r)
          return ops_err(c, FLAGOS_ERR_SHAPE, "roi has %lld values, expected %d", (long long)nr, 2 * g.n_axes);
        for (int j = 0; j < (per_axis ? g.n_axes : r); j++) {
          int a = per_axis ? g.axes[j] : j;
          r0[a] = ops_in_float(c, g.in_roi, j);
          r1[a] = ops_in_float(c, g.in_roi, (per_axis ? g.n_axes : r) + j);
        }
      }
    }
  }
  if (!known)
    for (int j = 0; j < g.n_axes; j++) out[g.axes[j]] = -1;
  ops_set_out(c, 0, X->dtype, r, out);
  for (int i = 0; i < r; i++) {
    bool ident = fabs(scale[i] - 1.0) <= 1e-9 && out[i] == X->dims[i] && fabs(r0[i]) <= 1e-9 && fabs(r1[i] - 1.0) <= 1e-9;
    c->params[i] = ops_dbits(scale[i]);
    c->params[r + i] = ops_dbits(r0[i]);
    c->params[2 * r + i] = ops_dbits(r1[i]);
    c->params[3 * r + i] = ident ? 1 : rs_taps(&g, scale[i]);
    c->params[4 * r + i] = ident ? 1 : 0;
  }
  return NULL;
}

static double rs_flops(const ops_ctx_t *c) {
  if (c->out[0].numel < 0) return 0;
  int r = c->out[0].rank;
  double taps = 1.0;
  for (int i = 0; i < r; i++) taps *= (double)c->params[3 * r + i];
  return (double)c->out[0].numel * taps * 2.0;
}

/* The source coordinate of output index v along axis i (the reference's
 * _compute_x_ori); *extrap is or'ed with "outside the input" for tf_crop_and_resize. */
static kir_expr_t *rs_coord(ops_ctx_t *c, const rs_cfg_t *g, int i, kir_expr_t *v, kir_expr_t **extrap) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  int r = c->in[0].rank;
  kir_expr_t *s = ops_param_f64(c, i);
  kir_expr_t *in = ops_itof(c, F, ops_in_dim(c, 0, i));
  kir_expr_t *x = ops_itof(c, F, v);
  kir_expr_t *half = ops_fc(c, F, 0.5), *one = ops_fc(c, F, 1.0);
  kir_expr_t *ow = ops_fmul(c, s, in); /* the reference's float output width */
  kir_expr_t *ow_is_1 = kir_bin(AR, KIR_EQ, ow, one);
  kir_expr_t *hp = ops_fsub(c, ops_fdiv(c, ops_fadd(c, x, half), s), half);
  switch (g->ctm) {
  case CT_HALF_PIXEL: return hp;
  case CT_HALF_PIXEL_SYM: {
    kir_expr_t *adj = ops_fdiv(c, ops_itof(c, F, ops_out_dim(c, 0, i)), ow);
    kir_expr_t *off = ops_fmul(c, ops_fdiv(c, in, ops_fc(c, F, 2.0)), ops_fsub(c, one, adj));
    return ops_fadd(c, off, hp);
  }
  case CT_PYTORCH_HALF_PIXEL: return kir_select(AR, ow_is_1, ops_fc(c, F, -0.5), hp);
  case CT_ALIGN_CORNERS:
    return kir_select(AR, ow_is_1, ops_fc(c, F, 0.0),
                      ops_fdiv(c, ops_fmul(c, x, ops_fsub(c, in, one)), ops_fsub(c, ow, one)));
  case CT_ASYMMETRIC: return ops_fdiv(c, x, s);
  case CT_TF_HALF_PIXEL_NN: return ops_fdiv(c, ops_fadd(c, x, half), s);
  default: {
    kir_expr_t *a = ops_param_f64(c, r + i), *b = ops_param_f64(c, 2 * r + i);
    kir_expr_t *span = ops_fsub(c, b, a), *in1 = ops_fsub(c, in, one);
    kir_expr_t *xo = kir_select(AR, ow_is_1, ops_fdiv(c, ops_fmul(c, span, in1), ops_fc(c, F, 2.0)),
                                ops_fdiv(c, ops_fmul(c, ops_fmul(c, x, span), in1), ops_fsub(c, ow, one)));
    xo = ops_fadd(c, xo, ops_fmul(c, a, in1));
    kir_expr_t *out = kir_bin(AR, KIR_OR, kir_bin(AR, KIR_LT, xo, ops_fc(c, F, 0.0)), kir_bin(AR, KIR_GT, xo, in1));
    *extrap = *extrap ? kir_bin(AR, KIR_OR, *extrap, out) : out;
    return xo;
  }
  }
}

/* The 1-D filter at distance d (>= 0) from the sample, in units of input pixels
 * scaled by the antialias factor. */
static kir_expr_t *rs_filter(ops_ctx_t *c, const rs_cfg_t *g, kir_expr_t *z) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  kir_expr_t *one = ops_fc(c, F, 1.0);
  if (g->mode == RS_LINEAR) return kir_bin(AR, KIR_MAX, ops_fsub(c, one, z), ops_fc(c, F, 0.0));
  double A = g->cubic_a;
  /* ((A+2)z - (A+3)) z z + 1 for z <= 1; ((A z - 5A) z + 8A) z - 4A for 1 < z < 2. */
  kir_expr_t *near = ops_fadd(c, ops_fmul(c, ops_fmul(c, ops_fsub(c, ops_fmul(c, ops_fc(c, F, A + 2), z), ops_fc(c, F, A + 3)), z), z), one);
  kir_expr_t *far = ops_fsub(c, ops_fmul(c, ops_fadd(c, ops_fmul(c, ops_fsub(c, ops_fmul(c, ops_fc(c, F, A), z), ops_fc(c, F, 5 * A)), z), ops_fc(c, F, 8 * A)), z), ops_fc(c, F, 4 * A));
  return kir_select(AR, kir_bin(AR, KIR_LE, z, one), near,
                    kir_select(AR, kir_bin(AR, KIR_LT, z, ops_fc(c, F, 2.0)), far, ops_fc(c, F, 0.0)));
}

typedef struct rs_axis {
  kir_expr_t *x;      /* source coordinate */
  kir_expr_t *base;   /* ceil(x) - 1: the tap left of x (x itself counts as right) */
  kir_expr_t *ratio;  /* x - base, in (0, 1] */
  kir_expr_t *start;  /* first tap offset from base: 1 - taps/2 */
  kir_expr_t *taps;
  kir_expr_t *ident;  /* bool: axis copied as is */
  kir_expr_t *aa;     /* antialias factor min(scale, 1) (or 1) */
} rs_axis_t;

/* Weight and clamped index of tap t (int64 expr) along axis i. */
static void rs_tap(ops_ctx_t *c, const rs_cfg_t *g, const rs_axis_t *ax, int i, kir_expr_t *t, kir_expr_t **w,
                   kir_expr_t **idx) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  kir_expr_t *off = kir_add(AR, ax->start, t);
  kir_expr_t *pos = kir_add(AR, ax->base, off);
  kir_expr_t *d = ops_fsub(c, ops_itof(c, F, off), ax->ratio);
  kir_expr_t *z = ops_fmul(c, kir_un(AR, KIR_ABS, d), ax->aa);
  kir_expr_t *wt = rs_filter(c, g, z);
  kir_expr_t *in = ops_in_dim(c, 0, i);
  if (g->exclude_outside) wt = kir_select(AR, ops_inside(c, pos, kir_i64(AR, 0), in), wt, ops_fc(c, F, 0.0));
  *w = wt;
  *idx = ops_clampi(c, pos, kir_i64(AR, 0), kir_sub(AR, in, kir_i64(AR, 1)));
}

static flagos_status_t rs_lower(ops_ctx_t *c) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  int r = c->in[0].rank;
  rs_cfg_t g;
  FL_TRY(rs_config(c, r, &g));
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "resize", v);
  int bx = ops_buf_in(c, kk, 0);
  flagos_dtype_t dt = c->out[0].dtype;
  kir_expr_t *extrap = NULL;
  kir_expr_t *idx[OPS_MAX_RANK];
  rs_axis_t ax[OPS_MAX_RANK];
  bool norm = g.antialias || g.exclude_outside;
  int rv[OPS_MAX_RANK], nr = 0;
  kir_expr_t *rext[OPS_MAX_RANK];
  kir_expr_t *weight = NULL, *denom = NULL;
  for (int i = 0; i < r; i++) {
    if (!g.axis_listed[i]) {
      idx[i] = v[i];
      continue;
    }
    rs_axis_t *a = &ax[i];
    a->ident = kir_bin(AR, KIR_NE, ops_param(c, 4 * r + i), kir_i64(AR, 0));
    a->x = rs_coord(c, &g, i, v[i], &extrap);
    kir_expr_t *in = ops_in_dim(c, 0, i);
    kir_expr_t *last = kir_sub(AR, in, kir_i64(AR, 1));
    if (g.mode == RS_NEAREST) {
      kir_expr_t *fl = kir_un(AR, KIR_FLOOR, a->x);
      kir_expr_t *ratio = ops_fsub(c, a->x, fl);
      kir_expr_t *half = ops_fc(c, F, 0.5);
      kir_expr_t *up;
      switch (g.nearest) {
      case NM_ROUND_PREFER_FLOOR: up = kir_bin(AR, KIR_GT, ratio, half); break;
      case NM_ROUND_PREFER_CEIL: up = kir_bin(AR, KIR_GE, ratio, half); break;
      case NM_FLOOR: up = kir_bool(AR, false); break;
      default: up = kir_bin(AR, KIR_GT, ratio, ops_fc(c, F, 0.0)); break;
      }
      kir_expr_t *p = kir_add(AR, kir_cast(AR, FLAGOS_INT64, fl), kir_select(AR, up, kir_i64(AR, 1), kir_i64(AR, 0)));
      idx[i] = kir_select(AR, a->ident, v[i], ops_clampi(c, p, kir_i64(AR, 0), last));
      continue;
    }
    kir_expr_t *ce = kir_un(AR, KIR_CEIL, a->x);
    a->base = kir_sub(AR, kir_cast(AR, FLAGOS_INT64, ce), kir_i64(AR, 1));
    a->ratio = ops_fsub(c, a->x, ops_fsub(c, ce, ops_fc(c, F, 1.0)));
    a->taps = ops_param(c, 3 * r + i);
    a->start = kir_sub(AR, kir_i64(AR, 1), kir_bin(AR, KIR_DIV, a->taps, kir_i64(AR, 2)));
    a->aa = g.antialias ? kir_bin(AR, KIR_MIN, ops_param_f64(c, i), ops_fc(c, F, 1.0)) : ops_fc(c, F, 1.0);
    int tv = kir_new_var(kk);
    kir_expr_t *w, *ix;
    rs_tap(c, &g, a, i, kir_var(AR, tv), &w, &ix);
    idx[i] = kir_select(AR, a->ident, v[i], ix);
    w = kir_select(AR, a->ident, ops_fc(c, F, 1.0), w);
    weight = weight ? ops_fmul(c, weight, w) : w;
    rv[nr] = tv;
    rext[nr++] = a->taps;
    if (norm) {
      int sv = kir_new_var(kk);
      kir_expr_t *sw, *sx;
      rs_tap(c, &g, a, i, kir_var(AR, sv), &sw, &sx);
      kir_expr_t *sum = kir_reduce(AR, KIR_RSUM, 1, &sv, &a->taps, sw);
      sum = kir_select(AR, kir_bin(AR, KIR_EQ, sum, ops_fc(c, F, 0.0)), ops_fc(c, F, 1.0), sum);
      sum = kir_select(AR, a->ident, ops_fc(c, F, 1.0), sum);
      denom = denom ? ops_fmul(c, denom, sum) : sum;
    }
  }
  kir_expr_t *x = kir_load(kk, bx, idx), *y;
  if (g.mode == RS_NEAREST || nr == 0) {
    y = x;
  } else {
    kir_expr_t *acc = kir_reduce(AR, KIR_RSUM, nr, rv, rext, ops_fmul(c, weight, kir_cast(AR, F, x)));
    if (denom) acc = ops_fdiv(c, acc, denom);
    y = ops_float_to(c, acc, dt);
  }
  if (extrap) y = kir_select(AR, extrap, ops_float_to(c, ops_fc(c, F, g.extrapolation), dt), y);
  kir_store(kk, 0, v, y, NULL);
  return NULL;
}

const ops_def_t ops_family_resize[] = {
    {"Resize", "", 0xe, rs_infer, rs_lower, rs_flops},
    {"Upsample", "", 0x2, rs_infer, rs_lower, rs_flops},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
