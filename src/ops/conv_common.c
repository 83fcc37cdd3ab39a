/* Spatial geometry for convolutions and pools (see conv_common.h). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/conv_common.h"

flagos_status_t ops_sp_ints(const ops_ctx_t *c, const char *name, int n, int64_t dflt, int64_t *out) {
  const int64_t *v;
  int len = fir_attr_ints(c->node, name, &v);
  for (int i = 0; i < n; i++) out[i] = dflt;
  if (len <= 0) return NULL;
  if (len != n)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute '%s' has %d values, expected %d", name, len, n);
  for (int i = 0; i < n; i++) out[i] = v[i];
  return NULL;
}

flagos_status_t ops_sp_read(const ops_ctx_t *c, int nd, const int64_t *kernel, bool pool, ops_sp_t *g) {
  memset(g, 0, sizeof(*g));
  if (nd < 1 || nd > OPS_MAX_RANK - 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input must have rank 3 to %d (got %d)", OPS_MAX_RANK, nd + 2);
  g->nd = nd;
  const int64_t *ks;
  int nk = fir_attr_ints(c->node, "kernel_shape", &ks);
  if (nk > 0) {
    if (nk != nd)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "kernel_shape has %d values, expected %d", nk, nd);
    for (int i = 0; i < nd; i++) g->k[i] = ks[i];
  } else if (kernel) {
    for (int i = 0; i < nd; i++) g->k[i] = kernel[i];
  } else {
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'kernel_shape' is required");
  }
  FL_TRY(ops_sp_ints(c, "strides", nd, 1, g->s));
  FL_TRY(ops_sp_ints(c, "dilations", nd, 1, g->d));
  int64_t pads[2 * OPS_MAX_RANK];
  FL_TRY(ops_sp_ints(c, "pads", 2 * nd, 0, pads));
  for (int i = 0; i < nd; i++) {
    g->pb[i] = pads[i];
    g->pe[i] = pads[nd + i];
    if (g->s[i] < 1 || g->d[i] < 1)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "strides and dilations must be positive");
    if (g->pb[i] < 0 || g->pe[i] < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "pads must be non-negative");
  }
  const char *ap = fir_attr_string(c->node, "auto_pad", "NOTSET");
  if (strcmp(ap, "NOTSET") == 0 || ap[0] == 0) g->auto_pad = OPS_SP_NOTSET;
  else if (strcmp(ap, "SAME_UPPER") == 0) g->auto_pad = OPS_SP_SAME_UPPER;
  else if (strcmp(ap, "SAME_LOWER") == 0) g->auto_pad = OPS_SP_SAME_LOWER;
  else if (strcmp(ap, "VALID") == 0) g->auto_pad = OPS_SP_VALID;
  else return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown auto_pad '%s'", ap);
  if (g->auto_pad != OPS_SP_NOTSET)
    for (int i = 0; i < nd; i++) g->pb[i] = g->pe[i] = 0;
  g->ceil_mode = pool && fir_attr_int(c->node, "ceil_mode", 0) != 0;
  return NULL;
}

static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

int64_t ops_sp_out(ops_sp_t *g, int i, int64_t in) {
  int64_t dk = (g->k[i] - 1) * g->d[i] + 1, s = g->s[i];
  if (in < 0 || g->k[i] < 0) return -1; /* kernel unknown: W's dims come at run time */
  switch (g->auto_pad) {
  case OPS_SP_SAME_UPPER:
  case OPS_SP_SAME_LOWER: {
    int64_t out = ceil_div(in, s);
    int64_t total = (out - 1) * s + dk - in;
    if (total < 0) total = 0;
    g->pb[i] = g->auto_pad == OPS_SP_SAME_UPPER ? total / 2 : total - total / 2;
    g->pe[i] = total - g->pb[i];
    return out;
  }
  case OPS_SP_VALID: return floor_div(in - dk, s) + 1;
  default: break;
  }
  int64_t span = in + g->pb[i] + g->pe[i] - dk;
  if (!g->ceil_mode) return floor_div(span, s) + 1;
  int64_t out = ceil_div(span, s) + 1;
  /* The last window must start inside the input or its start padding. */
  if ((out - 1) * s >= in + g->pb[i]) out--;
  return out;
}

void ops_sp_params(ops_ctx_t *c, const ops_sp_t *g, int first) {
  for (int i = 0; i < g->nd; i++) c->params[first + i] = g->pb[i];
  if (c->n_params < first + g->nd) c->n_params = first + g->nd;
}

kir_expr_t *ops_sp_lowest(fl_arena_t *a, flagos_dtype_t dt) {
  if (flagos_dtype_is_float(dt)) return kir_const(a, dt, -INFINITY);
  switch (dt) {
  case FLAGOS_INT8: return kir_const_int(a, dt, INT8_MIN);
  case FLAGOS_INT16: return kir_const_int(a, dt, INT16_MIN);
  case FLAGOS_INT32: return kir_const_int(a, dt, INT32_MIN);
  case FLAGOS_INT64: return kir_const_int(a, dt, INT64_MIN);
  case FLAGOS_INT4: return kir_const_int(a, dt, -8);
  case FLAGOS_INT2: return kir_const_int(a, dt, -2);
  default: return kir_const_int(a, dt, 0);
  }
}

kir_expr_t *ops_sp_inside(fl_arena_t *a, int n, kir_expr_t *const *pos, kir_expr_t *const *dim) {
  kir_expr_t *ok = kir_bool(a, true);
  for (int i = 0; i < n; i++) {
    ok = kir_bin(a, KIR_AND, ok, kir_bin(a, KIR_GE, pos[i], kir_i64(a, 0)));
    ok = kir_bin(a, KIR_AND, ok, kir_bin(a, KIR_LT, pos[i], dim[i]));
  }
  return ok;
}
