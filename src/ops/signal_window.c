/* Window functions (HannWindow, HammingWindow, BlackmanWindow) and
 * MelWeightMatrix. Their sizes are input values (infer reads them for the output
 * shape); the kernels compute every element in f64 from its index and, for
 * MelWeightMatrix, from the scalar inputs loaded inside the kernel. */
#include <math.h>
#include <string.h>

#include "ops/misc_util.h"

#define AR (c->arena)

static flagos_status_t out_dtype(ops_ctx_t *c, flagos_dtype_t *dt) {
  int64_t od = fir_attr_int(c->node, "output_datatype", FLAGOS_FLOAT32);
  if (od < 0 || od >= 64 || !ops_dt_in((flagos_dtype_t)od, OPS_DT_NUMERIC))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "output_datatype %lld is not a numeric type", (long long)od);
  *dt = (flagos_dtype_t)od;
  return NULL;
}

static flagos_status_t scalar_int(ops_ctx_t *c, int k, const char *what) {
  FL_TRY(ops_ew_check_in(c, k, OPS_DT(FLAGOS_INT64) | OPS_DT(FLAGOS_INT32)));
  if (c->in[k].numel > 1 || c->in[k].rank > 1) return ops_err(c, FLAGOS_ERR_SHAPE, "%s must be a scalar", what);
  return NULL;
}

flagos_status_t ops_window_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(scalar_int(c, 0, "size"));
  flagos_dtype_t dt;
  FL_TRY(out_dtype(c, &dt));
  int64_t n = c->in[0].value ? ops_in_int(c, 0, 0) : -1;
  if (c->in[0].value && n < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "size %lld is negative", (long long)n);
  ops_set_out(c, 0, dt, 1, &n);
  return NULL;
}

flagos_status_t ops_window_lower(ops_ctx_t *c) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  kir_expr_t *v[1];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "window", v);
  bool periodic = fir_attr_int(c->node, "periodic", 1) != 0;
  kir_expr_t *N = ops_out_dim(c, 0, 0);
  kir_expr_t *den = ops_itof(c, F, periodic ? N : kir_sub(AR, N, kir_i64(AR, 1)));
  kir_expr_t *x = ops_fdiv(c, ops_fmul(c, ops_itof(c, F, v[0]), ops_fc(c, F, 2.0 * M_PI)), den); /* 2 pi n / N' */
  const char *op = c->node->op_type;
  kir_expr_t *y;
  if (strcmp(op, "HannWindow") == 0) {
    kir_expr_t *s = kir_un(AR, KIR_SIN, ops_fdiv(c, x, ops_fc(c, F, 2.0)));
    y = ops_fmul(c, s, s);
  } else if (strcmp(op, "HammingWindow") == 0) {
    double a = 25.0 / 46.0;
    y = ops_fsub(c, ops_fc(c, F, a), ops_fmul(c, kir_un(AR, KIR_COS, x), ops_fc(c, F, 1.0 - a)));
  } else {
    y = ops_fadd(c, ops_fmul(c, kir_un(AR, KIR_COS, x), ops_fc(c, F, -0.5)),
                 ops_fmul(c, kir_un(AR, KIR_COS, ops_fmul(c, x, ops_fc(c, F, 2.0))), ops_fc(c, F, 0.08)));
    y = ops_fadd(c, y, ops_fc(c, F, 0.42));
  }
  kir_store(kk, 0, v, ops_float_to(c, y, c->out[0].dtype), NULL);
  return NULL;
}

/* ---- MelWeightMatrix ----
 * Triangular filters between mel-spaced edges; edge i is the spectrogram bin
 * floor((dft_length + 1) * hz(i) / sample_rate), as in the reference. */

flagos_status_t ops_melweight_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 5, 5));
  FL_TRY(scalar_int(c, 0, "num_mel_bins"));
  FL_TRY(scalar_int(c, 1, "dft_length"));
  FL_TRY(scalar_int(c, 2, "sample_rate"));
  FL_TRY(ops_ew_check_in(c, 3, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, 4, OPS_DT_FLOATS));
  flagos_dtype_t dt;
  FL_TRY(out_dtype(c, &dt));
  int64_t d[2] = {c->in[1].value ? ops_in_int(c, 1, 0) / 2 + 1 : -1, c->in[0].value ? ops_in_int(c, 0, 0) : -1};
  if ((c->in[0].value && d[1] < 0) || (c->in[1].value && d[0] < 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "num_mel_bins and dft_length must be positive");
  ops_set_out(c, 0, dt, 2, d);
  return NULL;
}

static kir_expr_t *scalar(ops_ctx_t *c, kir_kernel_t *kk, int k) {
  int b = ops_buf_in(c, kk, k);
  kir_expr_t *idx[1] = {kir_i64(AR, 0)};
  return kir_cast(AR, FLAGOS_FLOAT64, kir_load(kk, b, idx));
}

flagos_status_t ops_melweight_lower(ops_ctx_t *c) {
  const flagos_dtype_t F = FLAGOS_FLOAT64;
  kir_expr_t *v[2];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "melweight", v);
  kir_expr_t *L = scalar(c, kk, 1), *sr = scalar(c, kk, 2), *lo = scalar(c, kk, 3), *hi = scalar(c, kk, 4);
  kir_expr_t *nbins = ops_itof(c, F, kir_add(AR, ops_out_dim(c, 0, 1), kir_i64(AR, 2)));
  kir_expr_t *ln10 = ops_fc(c, F, log(10.0));
  kir_expr_t *c2595 = ops_fc(c, F, 2595.0), *c700 = ops_fc(c, F, 700.0);
  kir_expr_t *mlo = ops_fdiv(c, ops_fmul(c, c2595, kir_un(AR, KIR_LOG1P, ops_fdiv(c, lo, c700))), ln10);
  kir_expr_t *mhi = ops_fdiv(c, ops_fmul(c, c2595, kir_un(AR, KIR_LOG1P, ops_fdiv(c, hi, c700))), ln10);
  kir_expr_t *step = ops_fdiv(c, ops_fsub(c, mhi, mlo), nbins);
  kir_expr_t *edge[3];
  for (int e = 0; e < 3; e++) {
    kir_expr_t *i = ops_itof(c, F, kir_add(AR, v[1], kir_i64(AR, e)));
    kir_expr_t *mel = ops_fadd(c, ops_fmul(c, i, step), mlo);
    kir_expr_t *hz = ops_fmul(c, c700, kir_un(AR, KIR_EXPM1, ops_fmul(c, ops_fdiv(c, mel, c2595), ln10)));
    kir_expr_t *b = kir_un(AR, KIR_FLOOR, ops_fdiv(c, ops_fmul(c, ops_fadd(c, L, ops_fc(c, F, 1.0)), hz), sr));
    edge[e] = kir_cast(AR, FLAGOS_INT64, b);
  }
  kir_expr_t *j = v[0], *l = edge[0], *m = edge[1], *h = edge[2];
  kir_expr_t *jf = ops_itof(c, F, j);
  kir_expr_t *rise = ops_fdiv(c, ops_fsub(c, jf, ops_itof(c, F, l)), ops_itof(c, F, kir_sub(AR, m, l)));
  kir_expr_t *fall = ops_fdiv(c, ops_fsub(c, ops_itof(c, F, h), jf), ops_itof(c, F, kir_sub(AR, h, m)));
  kir_expr_t *zero = ops_fc(c, F, 0.0);
  kir_expr_t *y = kir_select(AR, kir_bin(AR, KIR_EQ, j, m), ops_fc(c, F, 1.0),
                             kir_select(AR, ops_inside(c, j, l, m), rise,
                                        kir_select(AR, kir_bin(AR, KIR_AND, kir_bin(AR, KIR_GT, j, m),
                                                               kir_bin(AR, KIR_LT, j, h)),
                                                   fall, zero)));
  kir_store(kk, 0, v, ops_float_to(c, y, c->out[0].dtype), NULL);
  return NULL;
}
