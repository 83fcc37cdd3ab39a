/* Scalar semantics of kernel IR on the host (kir_interp_scalar.c), shared by the
 * interpreter's driver (kir_interp.c). Each function mirrors what the C emitter
 * writes for the same operation (src/codegen/emit_expr.c and the fo_* helpers of
 * src/codegen/prelude_c.inc); the comments there say why each rule is what it is.
 *
 * A value is held in the representation of its dtype's compute dtype
 * (kir_compute_dtype): f32 in `f32`, f64 in `f64`, bool 0/1 in `i`, integers in
 * `i` wrapped to their compute width (sign- or zero-extended; uint64 as its bits). */
#ifndef FLAGOS_KIR_INTERP_INTERNAL_H
#define FLAGOS_KIR_INTERP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/kir.h"

typedef union ki_val {
  float f32;
  double f64;
  int64_t i;
} ki_val_t;

typedef enum ki_class { KI_F32, KI_F64, KI_INT, KI_BOOL, KI_NONE } ki_class_t;

/* Class of a dtype's compute representation; KI_NONE for strings and complex types. */
ki_class_t ki_class(flagos_dtype_t dt);
/* Wraps an integer to the compute width of dt (an integer or bool dtype). */
int64_t ki_norm(flagos_dtype_t dt, int64_t v);

/* The value of a constant node. */
bool ki_const(const kir_expr_t *e, ki_val_t *out);
/* Element idx of a buffer of dtype dt -> value (of dt's compute class). */
void ki_decode(flagos_dtype_t dt, const void *data, int64_t idx, ki_val_t *out);
/* Stores value x of dtype vdt into element idx of a buffer of dtype bdt (the
 * conversion a store makes). */
bool ki_store(flagos_dtype_t vdt, flagos_dtype_t bdt, ki_val_t x, void *data, int64_t idx);
bool ki_cast(flagos_dtype_t from, flagos_dtype_t to, bool sat, ki_val_t x, ki_val_t *out);
bool ki_bitcast(flagos_dtype_t from, flagos_dtype_t to, ki_val_t x, ki_val_t *out);
/* dt is the operand dtype. */
bool ki_unary(kir_op_t op, flagos_dtype_t dt, ki_val_t x, ki_val_t *out);
bool ki_binary(kir_op_t op, flagos_dtype_t dt, ki_val_t x, ki_val_t y, ki_val_t *out);
bool ki_reduce_init(kir_op_t op, flagos_dtype_t dt, ki_val_t *out);
bool ki_reduce_step(kir_op_t op, flagos_dtype_t dt, ki_val_t *acc, ki_val_t x);

#endif
