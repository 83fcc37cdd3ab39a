/* Spectral operators: DFT (opset 17 axis attribute, opset 20 axis input) and
 * STFT; the family table also lists the window functions and MelWeightMatrix
 * (signal_window.c).
 *
 * A transform is written as its direct O(n^2) sum: each output bin is a
 * reduction over the input samples with twiddle factor angle 2*pi*((k*t) mod n)/n
 * (the index product is reduced in int64 so the angle stays exact for long
 * transforms). This is deliberately simple and portable; an FFT library call can
 * be added later like "gemm". Sums are carried out in f64, like the reference's
 * NumPy FFT.
 *
 * DFT's axis may be a runtime input, so the lowering does not fix it: the index
 * along every dimension is select(axis == d, transform index, loop index), which
 * folds away when the axis is known. DFT params: [0] axis, [1] transform length n,
 * [2] number of input samples summed, [3] output length along the axis.
 * STFT params: [0] frame_step, [1] frame_length. */
#include <math.h>
#include <string.h>

#include "ops/misc_util.h"

#define AR (c->arena)

/* ---- DFT ---- */

static int dft_axis_input(const ops_ctx_t *c) { return c->opset >= 20 ? 2 : -1; }

static flagos_status_t dft_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 3));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_FLOATS));
  const ops_tensor_info_t *X = &c->in[0];
  int r = X->rank;
  if (r < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input must have rank >= 2 (signal dims and a last dim of 1 or 2)");
  int64_t comp = X->dims[r - 1];
  if (comp != 1 && comp != 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "the last dim must be 1 (real) or 2 (complex), got %lld", (long long)comp);
  bool inverse = fir_attr_int(c->node, "inverse", 0) != 0, onesided = fir_attr_int(c->node, "onesided", 0) != 0;
  bool known = true;
  int64_t axis;
  int ai = dft_axis_input(c);
  if (ai >= 0) {
    axis = -2;
    if (ops_has_in(c, ai)) {
      FL_TRY(ops_ew_check_in(c, ai, OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32)));
      if (c->in[ai].value) axis = ops_in_int(c, ai, 0);
      else known = false;
    }
  } else {
    axis = fir_attr_int(c->node, "axis", 1);
  }
  axis = ((axis % r) + r) % r;
  if (known && axis == r - 1)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %lld is the complex dim, not a signal dim", (long long)axis);
  int64_t lin = known ? X->dims[axis] : -1, n = -1;
  if (ops_has_in(c, 1)) {
    FL_TRY(ops_ew_check_in(c, 1, OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32)));
    if (c->in[1].value) {
      n = ops_in_int(c, 1, 0);
      if (n < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "dft_length must be positive, got %lld", (long long)n);
    } else {
      known = false;
    }
  } else if (lin >= 0) {
    n = inverse && onesided ? 2 * (lin - 1) : lin;
    if (n < 1) return ops_err(c, FLAGOS_ERR_SHAPE, "the signal along axis %lld is too short", (long long)axis);
  }
  int64_t out_len = n < 0 ? -1 : (onesided && !inverse) ? n / 2 + 1 : n;
  int64_t summed = -1;
  if (n >= 0 && lin >= 0) {
    int64_t avail = inverse && onesided ? n / 2 + 1 : n;
    summed = lin < avail ? lin : avail;
  }
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < r - 1; i++) d[i] = known ? X->dims[i] : -1;
  if (known) d[axis] = out_len;
  d[r - 1] = inverse && onesided ? 1 : 2;
  ops_set_out(c, 0, X->dtype, r, d);
  c->n_params = 4;
  c->params[0] = axis;
  c->params[1] = n;
  c->params[2] = summed;
  c->params[3] = out_len;
  return NULL;
}

static double dft_flops(const ops_ctx_t *c) {
  if (c->out[0].numel < 0 || c->params[2] < 0) return 0;
  return (double)c->out[0].numel * (double)c->params[2] * 4.0;
}

/* cos and sin of 2*pi*((a*b) mod n)/n. */
static void twiddle(ops_ctx_t *c, kir_expr_t *a, kir_expr_t *b, kir_expr_t *n, kir_expr_t **cs, kir_expr_t **sn) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  kir_expr_t *m = kir_bin(AR, KIR_MOD, kir_mul(AR, a, b), n);
  kir_expr_t *ang = ops_fdiv(c, ops_fmul(c, ops_fc(c, F, 2.0 * M_PI), ops_itof(c, F, m)), ops_itof(c, F, n));
  *cs = kir_un(AR, KIR_COS, ang);
  *sn = kir_un(AR, KIR_SIN, ang);
}

/* The terms of one output bin for transform index t: the real and imaginary
 * parts of x[t] * exp(-+ 2 pi i k t / n) (irfft: only the real part, weighted). */
static void dft_terms(ops_ctx_t *c, kir_kernel_t *kk, int bx, kir_expr_t *const *v, kir_expr_t *t, kir_expr_t **yr,
                      kir_expr_t **yi) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  int r = c->in[0].rank;
  bool inverse = fir_attr_int(c->node, "inverse", 0) != 0, onesided = fir_attr_int(c->node, "onesided", 0) != 0;
  kir_expr_t *axis = ops_param(c, 0), *n = ops_param(c, 1);
  kir_expr_t *k = kir_i64(AR, 0);
  kir_expr_t *xi[OPS_MAX_RANK];
  for (int d = 0; d < r - 1; d++) {
    kir_expr_t *is_ax = kir_bin(AR, KIR_EQ, axis, kir_i64(AR, d));
    k = kir_add(AR, k, kir_select(AR, is_ax, v[d], kir_i64(AR, 0)));
    xi[d] = kir_select(AR, is_ax, t, v[d]);
  }
  xi[r - 1] = kir_i64(AR, 0);
  kir_expr_t *re = kir_cast(AR, F, kir_load(kk, bx, xi)), *im = ops_fc(c, F, 0.0);
  if (c->in[0].dims[r - 1] == 2) {
    xi[r - 1] = kir_i64(AR, 1);
    im = kir_cast(AR, F, kir_load(kk, bx, xi));
  }
  kir_expr_t *cs, *sn;
  twiddle(c, k, t, n, &cs, &sn);
  if (inverse && onesided) {
    /* irfft: the Hermitian half spectrum; bins other than 0 and n/2 count twice. */
    kir_expr_t *single = kir_bin(AR, KIR_OR, kir_bin(AR, KIR_EQ, t, kir_i64(AR, 0)),
                                 kir_bin(AR, KIR_EQ, kir_mul(AR, t, kir_i64(AR, 2)), n));
    kir_expr_t *wgt = kir_select(AR, single, ops_fc(c, F, 1.0), ops_fc(c, F, 2.0));
    *yr = ops_fmul(c, wgt, ops_fsub(c, ops_fmul(c, re, cs), ops_fmul(c, im, sn)));
    *yi = NULL;
  } else if (!inverse) { /* (re + i im)(cos - i sin) */
    *yr = ops_fadd(c, ops_fmul(c, re, cs), ops_fmul(c, im, sn));
    *yi = ops_fsub(c, ops_fmul(c, im, cs), ops_fmul(c, re, sn));
  } else { /* (re + i im)(cos + i sin) */
    *yr = ops_fsub(c, ops_fmul(c, re, cs), ops_fmul(c, im, sn));
    *yi = ops_fadd(c, ops_fmul(c, im, cs), ops_fmul(c, re, sn));
  }
}

static flagos_status_t dft_lower(ops_ctx_t *c) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  int r = c->in[0].rank;
  bool inverse = fir_attr_int(c->node, "inverse", 0) != 0;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "dft", v);
  int bx = ops_buf_in(c, kk, 0);
  kir_expr_t *n = ops_param(c, 1), *ext = ops_param(c, 2);
  /* Each reduction binds its own variable, so the two parts are built twice. */
  int tr = kir_new_var(kk), ti = kir_new_var(kk);
  kir_expr_t *yr, *yi, *unused;
  dft_terms(c, kk, bx, v, kir_var(AR, tr), &yr, &unused);
  kir_expr_t *y = kir_reduce(AR, KIR_RSUM, 1, &tr, &ext, yr);
  if (unused) {
    dft_terms(c, kk, bx, v, kir_var(AR, ti), &unused, &yi);
    kir_expr_t *si = kir_reduce(AR, KIR_RSUM, 1, &ti, &ext, yi);
    y = kir_select(AR, kir_bin(AR, KIR_EQ, v[r - 1], kir_i64(AR, 0)), y, si);
  }
  if (inverse) y = ops_fdiv(c, y, ops_itof(c, F, n));
  kir_store(kk, 0, v, kir_cast(AR, c->out[0].dtype, y), NULL);
  return NULL;
}

/* ---- STFT ---- */

static flagos_status_t stft_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 4));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, 1, OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32)));
  const ops_tensor_info_t *X = &c->in[0];
  if (X->rank != 3 || (X->dims[2] != 1 && X->dims[2] != 2))
    return ops_err(c, FLAGOS_ERR_SHAPE, "signal must be (batch, length, 1 or 2)");
  bool onesided = fir_attr_int(c->node, "onesided", 1) != 0;
  int64_t step = c->in[1].value ? ops_in_int(c, 1, 0) : -1, len = -1;
  if (c->in[1].value && step < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "frame_step must be positive");
  if (ops_has_in(c, 2)) {
    FL_TRY(ops_ew_check_in(c, 2, OPS_DT_FLOATS));
    if (c->in[2].rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "window must be 1-D");
    len = c->in[2].dims[0];
  }
  if (ops_has_in(c, 3)) {
    FL_TRY(ops_ew_check_in(c, 3, OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32)));
    if (c->in[3].value) {
      int64_t fl = ops_in_int(c, 3, 0);
      if (len >= 0 && fl != len)
        return ops_err(c, FLAGOS_ERR_SHAPE, "frame_length %lld differs from the window's length %lld", (long long)fl,
                       (long long)len);
      len = fl;
    } else {
      len = -1;
    }
  } else if (!ops_has_in(c, 2)) {
    len = X->dims[1];
  }
  if (len == 0 || len < -1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "frame_length must be positive");
  int64_t frames = -1;
  if (len > 0 && step > 0 && X->dims[1] >= 0) {
    if (X->dims[1] < len) return ops_err(c, FLAGOS_ERR_SHAPE, "the signal is shorter than one frame");
    frames = (X->dims[1] - len) / step + 1;
  }
  int64_t d[4] = {X->dims[0], frames, len < 0 ? -1 : onesided ? len / 2 + 1 : len, 2};
  ops_set_out(c, 0, X->dtype, 4, d);
  c->n_params = 2;
  c->params[0] = step;
  c->params[1] = len;
  return NULL;
}

static void stft_terms(ops_ctx_t *c, kir_kernel_t *kk, int bx, int bw, kir_expr_t *const *v, kir_expr_t *t,
                       kir_expr_t **yr, kir_expr_t **yi) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  kir_expr_t *step = ops_param(c, 0), *n = ops_param(c, 1);
  kir_expr_t *pos = kir_add(AR, kir_mul(AR, v[1], step), t);
  kir_expr_t *inside = kir_bin(AR, KIR_LT, pos, ops_in_dim(c, 0, 1));
  kir_expr_t *xi[3] = {v[0], pos, kir_i64(AR, 0)};
  kir_expr_t *w = ops_fc(c, F, 1.0);
  if (bw >= 0) {
    kir_expr_t *wi[1] = {t};
    w = kir_cast(AR, F, kir_load(kk, bw, wi));
  }
  kir_expr_t *zero = ops_fc(c, F, 0.0);
  kir_expr_t *re = kir_select(AR, inside, ops_fmul(c, w, kir_cast(AR, F, kir_load(kk, bx, xi))), zero), *im = zero;
  if (c->in[0].dims[2] == 2) {
    xi[2] = kir_i64(AR, 1);
    im = kir_select(AR, inside, ops_fmul(c, w, kir_cast(AR, F, kir_load(kk, bx, xi))), zero);
  }
  kir_expr_t *cs, *sn;
  twiddle(c, v[2], t, n, &cs, &sn);
  *yr = ops_fadd(c, ops_fmul(c, re, cs), ops_fmul(c, im, sn));
  *yi = ops_fsub(c, ops_fmul(c, im, cs), ops_fmul(c, re, sn));
}

static flagos_status_t stft_lower(ops_ctx_t *c) {
  kir_expr_t *v[4];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "stft", v);
  int bx = ops_buf_in(c, kk, 0);
  int bw = ops_has_in(c, 2) ? ops_buf_in(c, kk, 2) : -1;
  kir_expr_t *n = ops_param(c, 1);
  int tr = kir_new_var(kk), ti = kir_new_var(kk);
  kir_expr_t *yr, *yi, *unused;
  stft_terms(c, kk, bx, bw, v, kir_var(AR, tr), &yr, &unused);
  stft_terms(c, kk, bx, bw, v, kir_var(AR, ti), &unused, &yi);
  kir_expr_t *sr = kir_reduce(AR, KIR_RSUM, 1, &tr, &n, yr), *si = kir_reduce(AR, KIR_RSUM, 1, &ti, &n, yi);
  kir_expr_t *y = kir_select(AR, kir_bin(AR, KIR_EQ, v[3], kir_i64(AR, 0)), sr, si);
  kir_store(kk, 0, v, kir_cast(AR, c->out[0].dtype, y), NULL);
  return NULL;
}

static double stft_flops(const ops_ctx_t *c) {
  if (c->out[0].numel < 0 || c->params[1] < 0) return 0;
  return (double)c->out[0].numel * (double)c->params[1] * 4.0;
}

const ops_def_t ops_family_signal[] = {
    {"DFT", "", 0x6, dft_infer, dft_lower, dft_flops},
    {"STFT", "", 0xa, stft_infer, stft_lower, stft_flops},
    {"HannWindow", "", 0x1, ops_window_infer, ops_window_lower, NULL},
    {"HammingWindow", "", 0x1, ops_window_infer, ops_window_lower, NULL},
    {"BlackmanWindow", "", 0x1, ops_window_infer, ops_window_lower, NULL},
    {"MelWeightMatrix", "", 0x3, ops_melweight_infer, ops_melweight_lower, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL},
};
