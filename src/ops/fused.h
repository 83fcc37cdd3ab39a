/* FusedElementwise (domain ai.flagos): a chain of pointwise nodes run as one
 * kernel. The elementwise fusion pass (src/passes/fuse.c) builds these nodes;
 * this header is what it needs from src/ops. */
#ifndef FLAGOS_OPS_FUSED_H
#define FLAGOS_OPS_FUSED_H

#include "ops/ops.h"

#define OPS_FUSED_DOMAIN "ai.flagos"
#define OPS_FUSED_OP "FusedElementwise"
#define OPS_FUSED_BODY "body"
/* InlinedProducer (src/ops/inlined.c): a producer run inside a consumer's
 * kernels, its output kept (stored by the consumer's kernel, the node's last
 * output) where other nodes read it too; the inline fusion pass
 * (src/passes/fuse_inline.c) builds it. */
#define OPS_INLINE_OP "InlinedProducer"
/* FusedAttention (src/ops/attention_fused.c): attention's scores product,
 * softmax and context product as one node, whose first kernel carries the
 * "attention" library call; the attention fusion pass
 * (src/passes/fuse_attention.c) builds it. */
#define OPS_ATTENTION_OP "FusedAttention"
/* ProductActivation (src/ops/product_act.c): a product (MatMul, MatMulBias,
 * Gemm, Conv) and the activation that alone reads its output as one node,
 * whose first kernel carries the product's library call with the activation;
 * the activation fusion pass (src/passes/fuse_activation.c) builds it. */
#define OPS_PRODUCT_ACT_OP "ProductActivation"
/* ProductNorm (src/ops/product_norm.c): a product (MatMul, MatMulBias, Gemm),
 * the residual Add that reads its output and that sum's LayerNormalization as
 * one node, whose first kernel carries the "gemm_norm" call; the norm fusion
 * pass (src/passes/fuse_norm.c) builds it. */
#define OPS_PRODUCT_NORM_OP "ProductNorm"

/* The activations a gemm or conv call applies (its last int, docs/kernel-ir.md). */
enum { OPS_ACT_NONE, OPS_ACT_GELU, OPS_ACT_GELU_TANH, OPS_ACT_RELU };

/* The `body` graph attribute of a fused node, or NULL. */
const fir_graph_t *ops_fused_body(const fir_node_t *n);

/* The value a store of e into a buffer of type dt writes, as an expression of
 * type dt: a narrow float (f16, bf16) is rounded through the compute type, as
 * a store rounds it (kernel IR carries f16 in f32 and rounds only at a cast). */
kir_expr_t *ops_stored_value(fl_arena_t *a, kir_expr_t *e, flagos_dtype_t dt);

/* True when node n (its values typed and static) can be a body node: its
 * operator's lowering goes through ops_ew_lower_map, so a trial lowering in
 * capture mode yields an expression and makes no kernel or temp. a holds the
 * trial's allocations. */
bool ops_fused_can_fuse(fl_arena_t *a, const fir_node_t *n);

/* True when producer pn can be inlined into consumer cn (their values typed and
 * static): a trial lowering of the pair, ins[0..n_ins) being the inputs the
 * fused node would have, succeeds; with keep, the pair also stores pn's
 * output. a holds the trial's allocations. */
bool ops_inline_can(fl_arena_t *a, const fir_node_t *pn, const fir_node_t *cn, const fir_value_t *const *ins,
                    int n_ins, bool keep);

/* NULL when n, a FusedAttention node not yet in a graph (its values typed and
 * static), lowers and its first kernel carries the attention call (its body
 * is attention as the call computes it), else why not. a holds the trial's
 * allocations and the answer. */
const char *ops_attention_why_not(fl_arena_t *a, const fir_node_t *n);

/* A value's constant tensor, or NULL (how a caller resolves a node's inputs). */
typedef const fir_tensor_t *(*ops_const_fn)(const fir_value_t *v, const void *ctx);

/* Which activation (OPS_ACT_*) node q computes of its input x, its other
 * inputs scalar constants (konst resolves them): q a pointwise node or a
 * FusedElementwise of them, evaluated in double at points from -12 to 12 and
 * compared with GELU (erf), GELU (tanh) and ReLU within the precision of dt.
 * OPS_ACT_NONE where none matches or q is not such a node. */
int ops_activation_of(const fir_node_t *q, const fir_value_t *x, ops_const_fn konst, const void *ctx,
                      flagos_dtype_t dt);

/* NULL when n, a ProductActivation node not yet in a graph (its values typed
 * and static), lowers with its first kernel carrying the product's call with
 * the activation, else why not. a holds the trial's allocations and the
 * answer. */
const char *ops_product_act_why_not(fl_arena_t *a, const fir_node_t *n);

/* NULL when n, a ProductNorm node not yet in a graph (its values typed and
 * static), lowers with its first kernel carrying the gemm_norm call, else why
 * not. a holds the trial's allocations and the answer. */
const char *ops_product_norm_why_not(fl_arena_t *a, const fir_node_t *n);

#endif
