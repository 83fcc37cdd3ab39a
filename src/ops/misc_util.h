/* Small helpers shared by the resize, image, signal, rnn and misc families:
 * float parameters carried through the int64 params array, and shorthands for
 * float arithmetic in kernel IR. Internal to src/ops. */
#ifndef FLAGOS_OPS_MISC_UTIL_H
#define FLAGOS_OPS_MISC_UTIL_H

#include <string.h>

#include "ops/elementwise.h"

/* Params are int64; a float parameter that depends on input values (a Resize
 * scale, an roi bound) travels as the bits of a double and is bitcast back in
 * the kernel, so it can be a runtime symbol like any other param. */
static inline int64_t ops_dbits(double d) {
  int64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
}

static inline kir_expr_t *ops_param_f64(ops_ctx_t *c, int i) {
  return kir_bitcast(c->arena, FLAGOS_FLOAT64, ops_param(c, i));
}

static inline kir_expr_t *ops_fc(ops_ctx_t *c, flagos_dtype_t dt, double v) { return kir_const(c->arena, dt, v); }
static inline kir_expr_t *ops_fadd(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *y) { return kir_bin(c->arena, KIR_ADD, x, y); }
static inline kir_expr_t *ops_fsub(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *y) { return kir_bin(c->arena, KIR_SUB, x, y); }
static inline kir_expr_t *ops_fmul(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *y) { return kir_bin(c->arena, KIR_MUL, x, y); }
static inline kir_expr_t *ops_fdiv(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *y) { return kir_bin(c->arena, KIR_DIV, x, y); }
/* int64 index expression as a float of dtype dt. */
static inline kir_expr_t *ops_itof(ops_ctx_t *c, flagos_dtype_t dt, kir_expr_t *i) { return kir_cast(c->arena, dt, i); }
/* min(max(x, lo), hi) on int64 indices. */
static inline kir_expr_t *ops_clampi(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *lo, kir_expr_t *hi) {
  return kir_bin(c->arena, KIR_MIN, kir_bin(c->arena, KIR_MAX, x, lo), hi);
}
/* lo <= x < hi on int64 indices. */
static inline kir_expr_t *ops_inside(ops_ctx_t *c, kir_expr_t *x, kir_expr_t *lo, kir_expr_t *hi) {
  return kir_bin(c->arena, KIR_AND, kir_bin(c->arena, KIR_GE, x, lo), kir_bin(c->arena, KIR_LT, x, hi));
}

/* Converts a value computed in a float type to `to` the way ONNX's reference
 * saturate_cast does: integers round half to even and clamp to their range. */
static inline kir_expr_t *ops_float_to(ops_ctx_t *c, kir_expr_t *x, flagos_dtype_t to) {
  if (flagos_dtype_is_int(to)) {
    flagos_dtype_t cd = x->dtype;
    x = kir_un(c->arena, KIR_ROUND, x);
    x = kir_bin(c->arena, KIR_MIN, kir_bin(c->arena, KIR_MAX, x, kir_const(c->arena, cd, ops_ew_dtype_lowest(to))),
                kir_const(c->arena, cd, to == FLAGOS_INT64 ? 9223372036854774784.0 : ops_ew_dtype_max(to)));
  }
  return kir_cast(c->arena, to, x);
}

static inline bool ops_has_out(const ops_ctx_t *c, int k) {
  return k < c->node->n_outputs && c->node->outputs[k] != NULL;
}

/* Operators defined in one file of a family and listed in the family table of another. */
flagos_status_t ops_roialign_infer(ops_ctx_t *c);
flagos_status_t ops_roialign_lower(ops_ctx_t *c);
double ops_roialign_flops(const ops_ctx_t *c);
flagos_status_t ops_window_infer(ops_ctx_t *c);
flagos_status_t ops_window_lower(ops_ctx_t *c);
flagos_status_t ops_melweight_infer(ops_ctx_t *c);
flagos_status_t ops_melweight_lower(ops_ctx_t *c);
flagos_status_t ops_linattn_infer(ops_ctx_t *c);
flagos_status_t ops_linattn_lower(ops_ctx_t *c);
double ops_linattn_flops(const ops_ctx_t *c);

#endif
