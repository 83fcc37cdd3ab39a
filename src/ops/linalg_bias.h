/* MatMulBias (domain ai.flagos): MatMul(A, B) + bias, the bias broadcasting
 * onto the product without growing it (src/ops/linalg.c). The MatMul + bias
 * fusion pass (src/passes/fuse_bias.c) builds these nodes; this header is what
 * it needs from src/ops. */
#ifndef FLAGOS_OPS_LINALG_BIAS_H
#define FLAGOS_OPS_LINALG_BIAS_H

#define OPS_LA_MATMUL_BIAS "MatMulBias"
#define OPS_LA_MATMUL_BIAS_DOMAIN "ai.flagos"

#endif
