/* Pieces the conv family's files share: the operators defined outside conv.c
 * (which holds the family table) and the generic convolution sum. Private to
 * src/ops/conv*.c. */
#ifndef FLAGOS_OPS_CONV_INTERNAL_H
#define FLAGOS_OPS_CONV_INTERNAL_H

#include "ops/ops.h"

/* conv.c */
/* Shape rule of a forward convolution with X at input ix and W at iw: output
 * [N, M, spatial...] of out_dt; params[0..nd) = start pads. */
flagos_status_t ops_cv_infer_common(ops_ctx_t *c, int ix, int iw, flagos_dtype_t out_dt);
/* sum over (channel in group, kernel position) of (x - xzp) * (w - wzp) in acc
 * for output point v = (n, m, spatial...); zero points may be NULL. */
kir_expr_t *ops_cv_sum(ops_ctx_t *c, kir_kernel_t *kk, kir_expr_t *const *v, int ix, int iw, kir_expr_t *xzp,
                       kir_expr_t *wzp, flagos_dtype_t acc);
kir_expr_t *ops_cv_load_param(ops_ctx_t *c, kir_kernel_t *kk, int k, kir_expr_t *i);
flagos_status_t ops_cv_check_bias(ops_ctx_t *c, int k, int iw);
double ops_cv_flops(const ops_ctx_t *c);
/* Conv as im2col + GEMM (conv_gemm.c); *used is false when the generic lowering must serve. */
flagos_status_t ops_cv_lower_gemm(ops_ctx_t *c, bool *used);
/* Attaches the "conv" library call (docs/kernel-ir.md), marked ends_node, to
 * kk, the first kernel of a Conv node's lowering, where the call can express
 * the node (1-D or 2-D, a float dtype, a per-channel bias); binds X, W, B and Y
 * to kk where they are not bound yet. */
void ops_cv_attach_conv(ops_ctx_t *c, kir_kernel_t *kk);

/* conv_transpose.c */
flagos_status_t ops_cv_transpose_infer(ops_ctx_t *c);
flagos_status_t ops_cv_transpose_lower(ops_ctx_t *c);
double ops_cv_transpose_flops(const ops_ctx_t *c);
flagos_status_t ops_cv_col2im_infer(ops_ctx_t *c);
flagos_status_t ops_cv_col2im_lower(ops_ctx_t *c);

/* conv_deform.c */
flagos_status_t ops_cv_deform_infer(ops_ctx_t *c);
flagos_status_t ops_cv_deform_lower(ops_ctx_t *c);

#endif
