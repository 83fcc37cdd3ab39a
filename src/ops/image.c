/* Image sampling: GridSample (opset 16 4-D, opset 20+ N-D) and AffineGrid; the
 * family table also lists RoiAlign (image_roi.c).
 *
 * GridSample is one kernel over the output: each point maps its grid entry to a
 * source position per spatial axis (denormalise, then clamp or reflect it when
 * it lies outside), and interpolates over a box of taps (1 nearest, 2 linear, 4
 * cubic per axis) as a reduction whose weight is the product of the per-axis
 * coefficients. Taps outside the input read as zero, the border or their
 * reflection per padding_mode, following ONNX's reference (PyTorch's sampler). */
#include <math.h>
#include <string.h>

#include "ops/misc_util.h"

#define AR (c->arena)

enum { GS_NEAREST, GS_LINEAR, GS_CUBIC };
enum { GS_ZEROS, GS_BORDER, GS_REFLECTION };

typedef struct gs_cfg {
  int mode, pad;
  bool align;
} gs_cfg_t;

static flagos_status_t gs_config(const ops_ctx_t *c, gs_cfg_t *g) {
  const char *m = fir_attr_string(c->node, "mode", c->opset >= 20 ? "linear" : "bilinear");
  if (strcmp(m, "nearest") == 0) g->mode = GS_NEAREST;
  else if (strcmp(m, "linear") == 0 || strcmp(m, "bilinear") == 0) g->mode = GS_LINEAR;
  else if (strcmp(m, "cubic") == 0 || strcmp(m, "bicubic") == 0) g->mode = GS_CUBIC;
  else return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute mode has unsupported value \"%s\"", m);
  const char *p = fir_attr_string(c->node, "padding_mode", "zeros");
  if (strcmp(p, "zeros") == 0) g->pad = GS_ZEROS;
  else if (strcmp(p, "border") == 0) g->pad = GS_BORDER;
  else if (strcmp(p, "reflection") == 0) g->pad = GS_REFLECTION;
  else return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute padding_mode has unsupported value \"%s\"", p);
  g->align = fir_attr_int(c->node, "align_corners", 0) != 0;
  return NULL;
}

static flagos_status_t gs_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_NUMERIC));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT_FLOATS));
  gs_cfg_t g;
  FL_TRY(gs_config(c, &g));
  const ops_tensor_info_t *X = &c->in[0], *G = &c->in[1];
  int nd = X->rank - 2;
  if (nd < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "X must have rank >= 3, got %d", X->rank);
  if (G->rank != X->rank) return ops_err(c, FLAGOS_ERR_SHAPE, "grid has rank %d but X has rank %d", G->rank, X->rank);
  if (G->dims[nd + 1] >= 0 && G->dims[nd + 1] != nd)
    return ops_err(c, FLAGOS_ERR_SHAPE, "grid's last dim is %lld, expected %d", (long long)G->dims[nd + 1], nd);
  if (X->dims[0] >= 0 && G->dims[0] >= 0 && X->dims[0] != G->dims[0])
    return ops_err(c, FLAGOS_ERR_SHAPE, "X has batch %lld but grid has %lld", (long long)X->dims[0], (long long)G->dims[0]);
  int64_t d[OPS_MAX_RANK];
  d[0] = X->dims[0] >= 0 ? X->dims[0] : G->dims[0];
  d[1] = X->dims[1];
  for (int i = 0; i < nd; i++) d[2 + i] = G->dims[1 + i];
  ops_set_out(c, 0, X->dtype, X->rank, d);
  return NULL;
}

static double gs_flops(const ops_ctx_t *c) {
  gs_cfg_t g;
  if (c->out[0].numel < 0 || gs_config(c, &g)) return 0;
  int nd = c->out[0].rank - 2;
  double taps = pow(g.mode == GS_NEAREST ? 1.0 : g.mode == GS_LINEAR ? 2.0 : 4.0, nd);
  return (double)c->out[0].numel * taps * 2.0;
}

/* Reflects x into [lo, hi] by folding at the borders (the reference's _gs_reflect). */
static kir_expr_t *gs_reflect(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *lo, kir_expr_t *hi) {
  flagos_dtype_t F = x->dtype;
  kir_expr_t *rng = ops_fsub(c, hi, lo);
  kir_expr_t *below = kir_bin(AR, KIR_LT, x, lo), *above = kir_bin(AR, KIR_GT, x, hi);
  kir_expr_t *dx = kir_select(AR, below, ops_fsub(c, lo, x), ops_fsub(c, x, hi));
  kir_expr_t *nq = kir_un(AR, KIR_FLOOR, ops_fdiv(c, dx, rng));
  kir_expr_t *r = ops_fsub(c, dx, ops_fmul(c, nq, rng));
  kir_expr_t *even = kir_bin(AR, KIR_EQ, kir_bin(AR, KIR_MOD, nq, ops_fc(c, F, 2.0)), ops_fc(c, F, 0.0));
  kir_expr_t *from_lo = ops_fadd(c, lo, r), *from_hi = ops_fsub(c, hi, r);
  kir_expr_t *y = kir_select(AR, below, kir_select(AR, even, from_lo, from_hi),
                             kir_select(AR, above, kir_select(AR, even, from_hi, from_lo), x));
  return kir_select(AR, kir_bin(AR, KIR_EQ, rng, ops_fc(c, F, 0.0)), lo, y);
}

typedef struct gs_axis {
  kir_expr_t *x;        /* source position after padding_mode */
  kir_expr_t *lo, *hi;  /* the borders reflection folds at */
  kir_expr_t *d;        /* input size (int64) */
} gs_axis_t;

/* Index of integer tap i (int64) along an axis, and whether it reads the input
 * (zeros padding: taps outside read 0). */
static kir_expr_t *gs_tap_index(ops_ctx_t *c, const gs_cfg_t *g, const gs_axis_t *a, kir_expr_t *i, kir_expr_t **valid) {
  kir_expr_t *zero = kir_i64(AR, 0), *last = kir_sub(AR, a->d, kir_i64(AR, 1));
  if (g->pad == GS_ZEROS) {
    kir_expr_t *in = ops_inside(c, i, zero, a->d);
    *valid = *valid ? kir_bin(AR, KIR_AND, *valid, in) : in;
  } else if (g->pad == GS_REFLECTION) {
    kir_expr_t *f = gs_reflect(c, ops_itof(c, a->x->dtype, i), a->lo, a->hi);
    i = kir_cast(AR, FLAGOS_INT64, f); /* truncates toward zero, like int() */
  }
  return ops_clampi(c, i, zero, last);
}

static flagos_status_t gs_lower(ops_ctx_t *c) {
  gs_cfg_t g;
  FL_TRY(gs_config(c, &g));
  int r = c->out[0].rank, nd = r - 2;
  flagos_dtype_t dt = c->out[0].dtype;
  flagos_dtype_t F = dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "gridsample", v);
  int bx = ops_buf_in(c, kk, 0), bg = ops_buf_in(c, kk, 1);
  gs_axis_t ax[OPS_MAX_RANK];
  kir_expr_t *one = ops_fc(c, F, 1.0), *half = ops_fc(c, F, 0.5), *two = ops_fc(c, F, 2.0);
  for (int i = 0; i < nd; i++) {
    gs_axis_t *a = &ax[i];
    kir_expr_t *gi[OPS_MAX_RANK];
    gi[0] = v[0];
    for (int j = 0; j < nd; j++) gi[1 + j] = v[2 + j];
    gi[nd + 1] = kir_i64(AR, nd - 1 - i); /* the grid lists x (last axis) first */
    kir_expr_t *n = kir_cast(AR, F, kir_load(kk, bg, gi));
    a->d = ops_in_dim(c, 0, 2 + i);
    kir_expr_t *df = ops_itof(c, F, a->d);
    kir_expr_t *x;
    if (g.align) {
      x = ops_fmul(c, ops_fdiv(c, ops_fadd(c, n, one), two), ops_fsub(c, df, one));
      a->lo = ops_fc(c, F, 0.0);
      a->hi = ops_fsub(c, df, one);
    } else {
      x = ops_fdiv(c, ops_fsub(c, ops_fmul(c, ops_fadd(c, n, one), df), one), two);
      a->lo = ops_fc(c, F, -0.5);
      a->hi = ops_fsub(c, df, half);
    }
    if (g.mode == GS_NEAREST) x = kir_un(AR, KIR_ROUND, x);
    kir_expr_t *outside = kir_bin(AR, KIR_OR, kir_bin(AR, KIR_LT, x, a->lo), kir_bin(AR, KIR_GT, x, a->hi));
    if (g.pad == GS_BORDER)
      x = kir_select(AR, outside,
                     kir_bin(AR, KIR_MIN, kir_bin(AR, KIR_MAX, x, ops_fc(c, F, 0.0)), ops_fsub(c, df, one)), x);
    else if (g.pad == GS_REFLECTION)
      x = kir_select(AR, outside, gs_reflect(c, x, a->lo, a->hi), x);
    a->x = x;
  }
  kir_expr_t *xi[OPS_MAX_RANK];
  xi[0] = v[0];
  xi[1] = v[1];
  kir_expr_t *valid = NULL, *y;
  if (g.mode == GS_NEAREST) {
    for (int i = 0; i < nd; i++) xi[2 + i] = gs_tap_index(c, &g, &ax[i], kir_cast(AR, FLAGOS_INT64, ax[i].x), &valid);
    y = kir_load(kk, bx, xi);
    if (valid) y = kir_select(AR, valid, y, kir_const(AR, dt, 0.0));
    kir_store(kk, 0, v, y, NULL);
    return NULL;
  }
  int ntap = g.mode == GS_LINEAR ? 2 : 4;
  int rv[OPS_MAX_RANK];
  kir_expr_t *rext[OPS_MAX_RANK];
  kir_expr_t *w = NULL;
  for (int i = 0; i < nd; i++) {
    gs_axis_t *a = &ax[i];
    rv[i] = kir_new_var(kk);
    rext[i] = kir_i64(AR, ntap);
    kir_expr_t *t = kir_var(AR, rv[i]);
    kir_expr_t *fl = kir_un(AR, KIR_FLOOR, a->x);
    kir_expr_t *f = ops_fsub(c, a->x, fl);
    kir_expr_t *off = g.mode == GS_LINEAR ? t : kir_sub(AR, t, kir_i64(AR, 1));
    kir_expr_t *tap = kir_add(AR, kir_cast(AR, FLAGOS_INT64, fl), off);
    kir_expr_t *wi;
    if (g.mode == GS_LINEAR) {
      wi = kir_select(AR, kir_bin(AR, KIR_EQ, t, kir_i64(AR, 0)), ops_fsub(c, one, f), f);
    } else {
      const double A = -0.75;
      kir_expr_t *z = kir_un(AR, KIR_ABS, ops_fsub(c, ops_itof(c, F, off), f));
      kir_expr_t *nr = ops_fadd(c, ops_fmul(c, ops_fmul(c, ops_fsub(c, ops_fmul(c, ops_fc(c, F, A + 2), z), ops_fc(c, F, A + 3)), z), z), one);
      kir_expr_t *fr = ops_fsub(c, ops_fmul(c, ops_fadd(c, ops_fmul(c, ops_fsub(c, ops_fmul(c, ops_fc(c, F, A), z), ops_fc(c, F, 5 * A)), z), ops_fc(c, F, 8 * A)), z), ops_fc(c, F, 4 * A));
      wi = kir_select(AR, kir_bin(AR, KIR_LE, z, one), nr, fr);
    }
    w = w ? ops_fmul(c, w, wi) : wi;
    xi[2 + i] = gs_tap_index(c, &g, a, tap, &valid);
  }
  kir_expr_t *px = kir_cast(AR, F, kir_load(kk, bx, xi));
  if (valid) px = kir_select(AR, valid, px, ops_fc(c, F, 0.0));
  y = kir_reduce(AR, KIR_RSUM, nd, rv, rext, ops_fmul(c, w, px));
  kir_store(kk, 0, v, ops_float_to(c, y, dt), NULL);
  return NULL;
}

/* ---- AffineGrid: the size input's value gives the output's spatial dims ---- */

static flagos_status_t ag_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT(FLAGOS_INT64)));
  const ops_tensor_info_t *T = &c->in[0], *S = &c->in[1];
  if (T->rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "theta must have rank 3, got %d", T->rank);
  if (S->rank != 1 || S->dims[0] < 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "size must be a 1-D tensor of known length (4 or 5)");
  int nd = (int)S->dims[0] - 2;
  if (nd != 2 && nd != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "size must have 4 or 5 values, got %lld", (long long)S->dims[0]);
  if ((T->dims[1] >= 0 && T->dims[1] != nd) || (T->dims[2] >= 0 && T->dims[2] != nd + 1))
    return ops_err(c, FLAGOS_ERR_SHAPE, "theta must be (N, %d, %d) for %d-D sizes", nd, nd + 1, nd);
  int64_t d[5];
  d[0] = T->dims[0];
  for (int i = 0; i < nd; i++) {
    d[1 + i] = S->value ? ops_in_int(c, 1, 2 + i) : -1;
    if (S->value && d[1 + i] < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "size holds a negative dim");
  }
  if (S->value && T->dims[0] >= 0 && ops_in_int(c, 1, 0) != T->dims[0])
    return ops_err(c, FLAGOS_ERR_SHAPE, "size's batch %lld differs from theta's %lld", (long long)ops_in_int(c, 1, 0),
                   (long long)T->dims[0]);
  d[1 + nd] = nd;
  ops_set_out(c, 0, T->dtype, nd + 2, d);
  return NULL;
}

static flagos_status_t ag_lower(ops_ctx_t *c) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  int nd = c->out[0].rank - 2;
  bool align = fir_attr_int(c->node, "align_corners", 0) != 0;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "affinegrid", v);
  int bt = ops_buf_in(c, kk, 0);
  kir_expr_t *k = v[nd + 1];
  kir_expr_t *acc = NULL;
  /* Homogeneous base coordinate j is for spatial axis nd-1-j (x first), then 1. */
  for (int j = 0; j <= nd; j++) {
    kir_expr_t *ti[3] = {v[0], k, kir_i64(AR, j)};
    kir_expr_t *th = kir_cast(AR, F, kir_load(kk, bt, ti));
    kir_expr_t *term = th;
    if (j < nd) {
      int axis = nd - 1 - j;
      kir_expr_t *L = ops_itof(c, F, ops_out_dim(c, 0, 1 + axis));
      kir_expr_t *i = ops_itof(c, F, v[1 + axis]);
      kir_expr_t *p;
      if (align) {
        kir_expr_t *step = ops_fdiv(c, ops_fc(c, F, 2.0), ops_fsub(c, L, ops_fc(c, F, 1.0)));
        p = kir_select(AR, kir_bin(AR, KIR_EQ, L, ops_fc(c, F, 1.0)), ops_fc(c, F, -1.0),
                       ops_fadd(c, ops_fc(c, F, -1.0), ops_fmul(c, i, step)));
      } else {
        kir_expr_t *step = ops_fdiv(c, ops_fc(c, F, 2.0), L);
        p = ops_fadd(c, ops_fadd(c, ops_fc(c, F, -1.0), ops_fdiv(c, step, ops_fc(c, F, 2.0))), ops_fmul(c, i, step));
      }
      term = ops_fmul(c, th, p);
    }
    acc = acc ? ops_fadd(c, acc, term) : term;
  }
  kir_store(kk, 0, v, kir_cast(AR, c->out[0].dtype, acc), NULL);
  return NULL;
}

static double ag_flops(const ops_ctx_t *c) {
  int nd = c->out[0].rank - 2;
  return c->out[0].numel < 0 ? 0 : (double)c->out[0].numel * 2.0 * (nd + 1);
}

const ops_def_t ops_family_image[] = {
    {"GridSample", "", 0, gs_infer, gs_lower, gs_flops},
    {"AffineGrid", "", 0x2, ag_infer, ag_lower, ag_flops},
    {"RoiAlign", "", 0, ops_roialign_infer, ops_roialign_lower, ops_roialign_flops},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
