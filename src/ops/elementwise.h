/* Helpers shared by the pointwise families (elementwise, logical, cast, activation,
 * quant): dtype sets, broadcast shape rules and a one-kernel "map" lowering.
 * Internal to src/ops; the families' tables are the only things registry.c sees. */
#ifndef FLAGOS_OPS_ELEMENTWISE_H
#define FLAGOS_OPS_ELEMENTWISE_H

#include "ops/ops.h"

/* Sets of dtypes as bit masks (bit = flagos_dtype_t value). */
#define OPS_DT(d) (UINT64_C(1) << (d))
#define OPS_DT_FLOATS (OPS_DT(FLAGOS_FLOAT16) | OPS_DT(FLAGOS_BFLOAT16) | OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT64))
#define OPS_DT_F8                                                                                                   \
  (OPS_DT(FLAGOS_FLOAT8E4M3FN) | OPS_DT(FLAGOS_FLOAT8E4M3FNUZ) | OPS_DT(FLAGOS_FLOAT8E5M2) |                        \
   OPS_DT(FLAGOS_FLOAT8E5M2FNUZ))
#define OPS_DT_SINTS (OPS_DT(FLAGOS_INT8) | OPS_DT(FLAGOS_INT16) | OPS_DT(FLAGOS_INT32) | OPS_DT(FLAGOS_INT64))
#define OPS_DT_UINTS (OPS_DT(FLAGOS_UINT8) | OPS_DT(FLAGOS_UINT16) | OPS_DT(FLAGOS_UINT32) | OPS_DT(FLAGOS_UINT64))
#define OPS_DT_INTS (OPS_DT_SINTS | OPS_DT_UINTS)
#define OPS_DT_NUMERIC (OPS_DT_FLOATS | OPS_DT_INTS)
#define OPS_DT_BOOL OPS_DT(FLAGOS_BOOL)
/* Everything kernel IR can hold (strings and complex numbers excluded). */
#define OPS_DT_ANY                                                                                                  \
  (OPS_DT_NUMERIC | OPS_DT_BOOL | OPS_DT_F8 | OPS_DT(FLAGOS_FLOAT4E2M1) | OPS_DT(FLAGOS_FLOAT8E8M0) |                \
   OPS_DT(FLAGOS_INT4) | OPS_DT(FLAGOS_UINT4) | OPS_DT(FLAGOS_INT2) | OPS_DT(FLAGOS_UINT2))

/* A family table entry of the default domain; designated so fields added to
 * ops_def_t later start out zero. */
#define OPS_EW_DEF(name, infer_fn, lower_fn, flops_fn)                                                              \
  { .op_type = (name), .domain = "", .infer = (infer_fn), .lower = (lower_fn), .flops = (flops_fn) }
#define OPS_EW_END { .op_type = NULL }

static inline bool ops_dt_in(flagos_dtype_t dt, uint64_t set) {
  return (unsigned)dt < 64 && (set & OPS_DT(dt)) != 0;
}

/* Checks that input k is present, a tensor of known rank, and of a dtype in `allowed`. */
flagos_status_t ops_ew_check_in(ops_ctx_t *c, int k, uint64_t allowed);
/* Checks the input count is within [lo, hi] (hi < 0: unbounded). */
flagos_status_t ops_ew_check_count(ops_ctx_t *c, int lo, int hi);
/* Shape rule of a broadcasting op: the present inputs in [first, first+n) must be
 * tensors of a dtype in `allowed`, all the same dtype when same_dtype; output 0
 * takes the broadcast shape and `out_dt` (FLAGOS_UNDEFINED: input first's dtype). */
flagos_status_t ops_ew_infer_bcast(ops_ctx_t *c, int first, int n, uint64_t allowed, bool same_dtype,
                                   flagos_dtype_t out_dt);

/* Builds the value of one output element from the inputs' values (absent inputs are NULL). */
typedef kir_expr_t *(*ops_ew_fn_t)(ops_ctx_t *c, kir_expr_t *const *x);
/* One kernel over output 0 that loads every present input broadcast onto it and
 * stores fn(inputs). In capture mode (c->capture_in set) it makes no kernel and
 * leaves fn(capture_in) in c->capture_out: this is what makes an operator
 * fusible (src/ops/fused.c). */
flagos_status_t ops_ew_lower_map(ops_ctx_t *c, ops_ew_fn_t fn);

/* The type a float computation on `dt` is carried out in: f64 stays f64, every
 * other type computes in f32 (integers too, for activations that take them). */
flagos_dtype_t ops_ew_float_compute(flagos_dtype_t dt);
/* Float constant in `dt`. */
kir_expr_t *ops_ew_f(ops_ctx_t *c, flagos_dtype_t dt, double v);
/* Largest and smallest finite values of an integer or float dtype. */
double ops_ew_dtype_max(flagos_dtype_t dt);
double ops_ew_dtype_lowest(flagos_dtype_t dt);

/* Converts x to `to` with ONNX Cast semantics (saturate applies to float8,
 * round_mode "up"/"down"/"nearest" to float8e8m0); shared by Cast, CastLike and
 * the quantisation operators. Returns NULL and sets *err for unsupported pairs. */
kir_expr_t *ops_cast_expr(ops_ctx_t *c, kir_expr_t *x, flagos_dtype_t to, bool saturate, const char *round_mode,
                          flagos_status_t *err);

/* Lowerings of the unary elementwise operators (elementwise_unary.c), listed in
 * the elementwise family table. */
#define OPS_EW_UNARY_LIST(X)                                                                                        \
  X(Abs) X(Neg) X(Reciprocal) X(Sqrt) X(Exp) X(Log) X(Ceil) X(Floor) X(Round) X(Sign) X(Sin) X(Cos) X(Tan)        \
  X(Asin) X(Acos) X(Atan) X(Sinh) X(Cosh) X(Asinh) X(Acosh) X(Atanh) X(Erf) X(IsNaN) X(IsInf) X(BitwiseNot)
#define OPS_EW_DECL(name)                                                                                           \
  flagos_status_t ops_ew_infer_##name(ops_ctx_t *c);                                                                \
  flagos_status_t ops_ew_lower_##name(ops_ctx_t *c);
OPS_EW_UNARY_LIST(OPS_EW_DECL)
#undef OPS_EW_DECL

#endif
