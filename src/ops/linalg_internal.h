/* Pieces the linalg family's files share: the operators defined outside
 * linalg.c (which holds the family table) and small helpers for batched
 * contractions. Private to src/ops/linalg*.c. */
#ifndef FLAGOS_OPS_LINALG_INTERNAL_H
#define FLAGOS_OPS_LINALG_INTERNAL_H

#include "ops/ops.h"

/* linalg_einsum.c */
flagos_status_t ops_la_einsum_infer(ops_ctx_t *c);
flagos_status_t ops_la_einsum_lower(ops_ctx_t *c);
double ops_la_einsum_flops(const ops_ctx_t *c);

/* linalg_det.c */
flagos_status_t ops_la_det_infer(ops_ctx_t *c);
flagos_status_t ops_la_det_lower(ops_ctx_t *c);

/* linalg_quant.c */
flagos_status_t ops_la_matmulint_infer(ops_ctx_t *c);
flagos_status_t ops_la_matmulint_lower(ops_ctx_t *c);
flagos_status_t ops_la_qlmatmul_infer(ops_ctx_t *c);
flagos_status_t ops_la_qlmatmul_lower(ops_ctx_t *c);

/* linalg.c: numpy matmul shapes of inputs ia, ib (1-D operands promoted and
 * their unit dim dropped from the result). */
flagos_status_t ops_la_matmul_shape(ops_ctx_t *c, int ia, int ib, int *rank, int64_t *dims);
double ops_la_matmul_flops(const ops_ctx_t *c);

/* Loads element (batch..., row, col) of a matmul operand bound to kernel buffer
 * `buf` (node input k), broadcasting its batch dims onto the nb output batch vars;
 * row/col may be NULL where the operand is 1-D (the only index is then the other). */
kir_expr_t *ops_la_load_operand(ops_ctx_t *c, kir_kernel_t *kk, int buf, int nb, kir_expr_t *const *bvars,
                                kir_expr_t *row, kir_expr_t *col);

/* Index of var v into a dim that may broadcast (size 1) against the iteration space. */
kir_expr_t *ops_la_bcast_index(fl_arena_t *a, kir_expr_t *dim, kir_expr_t *v);

#endif
