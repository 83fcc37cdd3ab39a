/* Helpers shared by the data-movement families (shape, index, scatter,
 * generator): index arithmetic for kernels and reading integer lists that ONNX
 * gives as an attribute in old opsets and as an input in new ones. */
#ifndef FLAGOS_OPS_SHAPE_UTIL_H
#define FLAGOS_OPS_SHAPE_UTIL_H

#include "ops/ops.h"

/* Data movement does no useful arithmetic. */
double ops_sh_no_flops(const ops_ctx_t *c);

/* Input k must be present, a tensor, and of known rank; `what` names it in the error. */
flagos_status_t ops_sh_need_tensor(const ops_ctx_t *c, int k, const char *what);

/* An integer list taken from attribute `attr` when from_attr, else from the value
 * of input k (a scalar or 1-D int32/int64 tensor; `attr` then names it in errors).
 * present: the attribute/input is given. n: its length, -1 when input k's length
 * is unknown at compile time. known: v[0..n) hold the values (false when input
 * k's value is not available yet). Lists longer than OPS_MAX_PARAMS are refused.
 * The struct is large: allocate it in the arena. */
typedef struct ops_sh_list {
  bool present;
  bool known;
  int n;
  int64_t v[OPS_MAX_PARAMS];
} ops_sh_list_t;
flagos_status_t ops_sh_int_list(const ops_ctx_t *c, bool from_attr, const char *attr, int k, ops_sh_list_t *l);

/* Row-major linear index of idx over dims, and its inverse. */
kir_expr_t *ops_sh_linear(fl_arena_t *a, int rank, kir_expr_t *const *idx, kir_expr_t *const *dims);
void ops_sh_unravel(fl_arena_t *a, kir_expr_t *lin, int rank, kir_expr_t *const *dims, kir_expr_t **idx);

void ops_sh_in_dims(ops_ctx_t *c, int k, kir_expr_t **dims);
void ops_sh_out_dims(ops_ctx_t *c, int k, kir_expr_t **dims);

/* A loaded integer (any int type, or float: truncated) as an int64 index. */
kir_expr_t *ops_sh_as_index(fl_arena_t *a, kir_expr_t *x);
/* i < 0 ? i + dim : i (ONNX's negative indices). */
kir_expr_t *ops_sh_wrap(fl_arena_t *a, kir_expr_t *i, kir_expr_t *dim);
/* 0 <= i < dim */
kir_expr_t *ops_sh_in_range(fl_arena_t *a, kir_expr_t *i, kir_expr_t *dim);
kir_expr_t *ops_sh_and(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y);

/* A kernel whose iteration space is input k's shape (no buffer added yet). */
kir_kernel_t *ops_sh_in_kernel(ops_ctx_t *c, int k, const char *suffix, kir_expr_t **vars);

/* Output 0 takes input 0's elements in row-major order (Reshape, Flatten,
 * Squeeze, Unsqueeze, Identity). */
flagos_status_t ops_sh_lower_copy(ops_ctx_t *c);

/* Zero of dtype dt (false for bool) as a kernel constant. */
kir_expr_t *ops_sh_zero(fl_arena_t *a, flagos_dtype_t dt);

/* Members of the shape family defined outside shape.c (which holds the table). */
flagos_status_t ops_sh_infer_transpose(ops_ctx_t *c);
flagos_status_t ops_sh_lower_transpose(ops_ctx_t *c);
flagos_status_t ops_sh_infer_concat(ops_ctx_t *c);
flagos_status_t ops_sh_lower_concat(ops_ctx_t *c);
flagos_status_t ops_sh_infer_split(ops_ctx_t *c);
flagos_status_t ops_sh_lower_split(ops_ctx_t *c);
flagos_status_t ops_sh_infer_expand(ops_ctx_t *c);
flagos_status_t ops_sh_lower_expand(ops_ctx_t *c);
flagos_status_t ops_sh_infer_tile(ops_ctx_t *c);
flagos_status_t ops_sh_lower_tile(ops_ctx_t *c);
flagos_status_t ops_sh_infer_depth_to_space(ops_ctx_t *c);
flagos_status_t ops_sh_lower_depth_to_space(ops_ctx_t *c);
flagos_status_t ops_sh_infer_space_to_depth(ops_ctx_t *c);
flagos_status_t ops_sh_lower_space_to_depth(ops_ctx_t *c);
flagos_status_t ops_sh_infer_pad(ops_ctx_t *c);
flagos_status_t ops_sh_lower_pad(ops_ctx_t *c);
flagos_status_t ops_sh_infer_center_crop_pad(ops_ctx_t *c);
flagos_status_t ops_sh_lower_center_crop_pad(ops_ctx_t *c);

/* Members of the index family defined outside index.c (which holds the table). */
flagos_status_t ops_ix_infer_slice(ops_ctx_t *c);
flagos_status_t ops_ix_lower_slice(ops_ctx_t *c);
flagos_status_t ops_ix_infer_compress(ops_ctx_t *c);
flagos_status_t ops_ix_lower_compress(ops_ctx_t *c);
flagos_status_t ops_ix_infer_nonzero(ops_ctx_t *c);
flagos_status_t ops_ix_lower_nonzero(ops_ctx_t *c);
flagos_status_t ops_ix_infer_reverse_sequence(ops_ctx_t *c);
flagos_status_t ops_ix_lower_reverse_sequence(ops_ctx_t *c);
flagos_status_t ops_ix_infer_trilu(ops_ctx_t *c);
flagos_status_t ops_ix_lower_trilu(ops_ctx_t *c);
flagos_status_t ops_ix_infer_onehot(ops_ctx_t *c);
flagos_status_t ops_ix_lower_onehot(ops_ctx_t *c);
flagos_status_t ops_ix_infer_eyelike(ops_ctx_t *c);
flagos_status_t ops_ix_lower_eyelike(ops_ctx_t *c);

/* A constant 1 (true for bool) of dtype dt. */
kir_expr_t *ops_sh_one(fl_arena_t *a, flagos_dtype_t dt);
/* Input k must hold int32 or int64 indices. */
flagos_status_t ops_sh_need_index_dtype(const ops_ctx_t *c, int k, const char *what);

#endif
