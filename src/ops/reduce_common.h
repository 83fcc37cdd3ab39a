/* Helpers shared by the reduce, norm, nn and sort families: reductions over a
 * set of axes whose membership may be known at compile time (a constant 0/1 per
 * axis) or only at run time (a params symbol), and the "keepdims" view that the
 * per-row statistics of softmax-like operators live in.
 *
 * A reduced-axis flag is an int64 expression that is 0 or 1. Where it is a
 * constant the lowering emits no trace of the other case; where it is a symbol
 * the extent of the axis's reduction variable is `flag ? dim : 1`, so one
 * lowering serves any axes. */
#ifndef FLAGOS_OPS_REDUCE_COMMON_H
#define FLAGOS_OPS_REDUCE_COMMON_H

#include "ops/ops.h"

/* A reduction over some axes of one input: fresh reduction variables, their
 * extents, and the full input index (outer index plus reduction variable). */
typedef struct ops_red_space {
  int nr;
  int rvars[OPS_MAX_RANK];
  kir_expr_t *rext[OPS_MAX_RANK];
  kir_expr_t *idx[OPS_MAX_RANK];
  kir_expr_t *count; /* number of elements reduced (int64) */
} ops_red_space_t;

/* Dtype arithmetic of an input of dtype dt is carried out in: narrow floats in
 * f32, everything else in itself. `want_float` asks for a float type even for
 * integer inputs (f64), for operators whose math is inherently real. */
flagos_dtype_t ops_red_acc_dtype(flagos_dtype_t dt, bool want_float);
kir_expr_t *ops_red_fconst(ops_ctx_t *c, flagos_dtype_t dt, double v);
/* Loads buffer `buf` of kernel k at idx, converted to dt. */
kir_expr_t *ops_red_load(ops_ctx_t *c, kir_kernel_t *k, int buf, kir_expr_t *const *idx, flagos_dtype_t dt);

/* Builds the reduction over input `in` of kernel k (its buffer `buf`): for
 * axis i, flag[i] says whether it is reduced and outer[i] is the index used
 * when it is not (with a symbolic flag the two are added, the output index of a
 * reduced axis being 0). */
void ops_red_space(ops_ctx_t *c, kir_kernel_t *k, int buf, kir_expr_t *const *outer, kir_expr_t *const *flag,
                   ops_red_space_t *s);
kir_expr_t *ops_red_reduce(ops_ctx_t *c, kir_op_t op, const ops_red_space_t *s, kir_expr_t *body);

/* Constant flags from a bit mask of axes. */
void ops_red_flags_mask(ops_ctx_t *c, int rank, uint64_t mask, kir_expr_t **flag);
/* Dims of input `in` with reduced axes set to 1 (the keepdims shape). */
void ops_red_keep_dims(ops_ctx_t *c, int in, kir_expr_t *const *flag, kir_expr_t **dims);
/* Index into a keepdims-shaped tensor from full-shape vars: 0 on reduced axes. */
void ops_red_keep_idx(ops_ctx_t *c, int rank, kir_expr_t *const *flag, kir_expr_t *const *vars, kir_expr_t **idx);
/* Starts a kernel over temp t's shape; returns its buffer index, vars filled. */
kir_kernel_t *ops_red_temp_kernel(ops_ctx_t *c, int t, const char *suffix, kir_expr_t **vars, int *tbuf);

/* Integer shorthands. */
kir_expr_t *ops_red_eq(ops_ctx_t *c, kir_expr_t *x, int64_t v);
/* Row-major unflattening of int64 `flat` over dims[0..rank). */
void ops_red_unflatten(ops_ctx_t *c, kir_expr_t *flat, int rank, kir_expr_t *const *dims, kir_expr_t **idx);

/* FLOP count of one per element of input 0 (reductions, normalisations). */
double ops_red_flops_in0(const ops_ctx_t *c);

/* Operators defined in reduce_scan.c, listed in the reduce family's table. */
flagos_status_t ops_red_cum_infer(ops_ctx_t *c);
flagos_status_t ops_red_cumsum_lower(ops_ctx_t *c);
flagos_status_t ops_red_cumprod_lower(ops_ctx_t *c);
/* Operators defined in norm_stats.c, listed in the norm family's table. */
flagos_status_t ops_norm_layer_infer(ops_ctx_t *c);
flagos_status_t ops_norm_layer_lower(ops_ctx_t *c);
flagos_status_t ops_norm_rms_infer(ops_ctx_t *c);
flagos_status_t ops_norm_rms_lower(ops_ctx_t *c);
flagos_status_t ops_norm_group_infer(ops_ctx_t *c);
flagos_status_t ops_norm_group_lower(ops_ctx_t *c);
flagos_status_t ops_norm_instance_infer(ops_ctx_t *c);
flagos_status_t ops_norm_instance_lower(ops_ctx_t *c);
flagos_status_t ops_norm_batch_infer(ops_ctx_t *c);
flagos_status_t ops_norm_batch_lower(ops_ctx_t *c);
/* Unique, defined in sort_unique.c. */
flagos_status_t ops_sort_unique_infer(ops_ctx_t *c);
flagos_status_t ops_sort_unique_lower(ops_ctx_t *c);

#endif
