/* Graph passes over FlagIR. Each returns a status naming the node it failed on. */
#ifndef FLAGOS_PASSES_H
#define FLAGOS_PASSES_H

#include "ir/ir.h"

/* Turns Constant nodes into initializers. */
flagos_status_t pass_constants_to_initializers(fir_model_t *m);
/* Fixes symbolic input dims from a "name=1x3x224x224;other=..." spec ("N=4" also
 * binds every dim named N). Errors name the input or symbol that does not exist. */
flagos_status_t pass_apply_shapes(fir_model_t *m, const char *spec);
/* Infers every value's type with the operators' shape rules. Fails on unsupported
 * operators with op type, domain, opset and node name. */
flagos_status_t pass_infer_types(fir_model_t *m);
/* Inference and constant folding in one walk (fold.c): infers each node, then
 * replaces it by initializers when its value is known at compile time: Shape/Size
 * of a static tensor, or any operator with a lowering whose inputs are all
 * constants (evaluated by the kernel IR interpreter with the compiled kernels'
 * exact semantics; random operators, subgraphs and outputs over 1M elements are
 * left alone, unless the outputs replace constants the node alone reads and
 * take no more bytes than they do). A CastLike whose second input's type is
 * known becomes a Cast first. Nodes inside subgraphs are not folded. Fails
 * only where inference fails. */
flagos_status_t pass_fold_constants(fir_model_t *m, bool *changed);
/* Removes nodes none of whose outputs is used by a node or a graph output,
 * then the initializers no remaining node reads (graph inputs' defaults stay). */
flagos_status_t pass_dce(fir_model_t *m);
/* Infers one node (used by passes that change a node and by tests). */
flagos_status_t pass_infer_node(fir_model_t *m, fir_node_t *n);
/* Infers the nodes of n's subgraphs (If branches, Loop/Scan bodies), whose outer
 * values are already typed; called by pass_infer_node before n itself. */
flagos_status_t pass_infer_subgraphs(fir_model_t *m, fir_node_t *n);
/* True for an If node whose condition is a constant. */
bool pass_is_constant_if(const fir_node_t *n);
/* Replaces the If at g->nodes[idx] by its chosen branch's nodes (node ids renumbered). */
flagos_status_t pass_inline_if_at(fir_graph_t *g, int idx, bool *inlined);
/* Elementwise fusion (fuse.c): groups of connected pointwise nodes of the main
 * graph whose outputs share one static shape become one FusedElementwise node
 * (domain ai.flagos, src/ops/fused.c), lowered to one kernel. Run after
 * inference and folding. FLAGOS_FUSE=0 turns it off; FLAGOS_FUSE_TRACE=1
 * prints each group. *n_fused (may be NULL) receives the number of fused nodes. */
flagos_status_t pass_fuse_elementwise(fir_model_t *m, int *n_fused);
/* True for a value fusion may touch: absent, or a static tensor of f16, bf16,
 * f32, f64, an integer type or bool. */
bool pass_fusable_value(const fir_value_t *v);
/* Inline fusion (fuse_inline.c): a node whose output only one consumer reads
 * (a pointwise node, FusedElementwise, Softmax, LogSoftmax, LayerNormalization
 * or RMSNormalization) and that lowers to one plain store becomes, with that
 * consumer, one InlinedProducer node (domain ai.flagos, src/ops/inlined.c)
 * whose kernels are the consumer's with each load of the tensor replaced by
 * the producer's element. Run after elementwise fusion; FLAGOS_FUSE=0 turns
 * it off, FLAGOS_FUSE_TRACE=1 prints each pair. */
flagos_status_t pass_fuse_inline(fir_model_t *m, int *n_fused);
/* Attention fusion (fuse_attention.c): a scores product read only by a
 * softmax over its last axis (its mask added inside, perhaps PyTorch's NaN
 * guard after it) read only by a product becomes one FusedAttention node
 * (domain ai.flagos, src/ops/attention_fused.c) whose first kernel carries
 * the "attention" library call, where a trial lowering finds the body
 * computing what the call computes. Run after inline fusion; FLAGOS_FUSE=0 or
 * FLAGOS_FUSE_ATTENTION=0 turns it off, FLAGOS_FUSE_TRACE=1 prints each node. */
flagos_status_t pass_fuse_attention(fir_model_t *m, int *n_fused);
/* True when every input and output of n is a value fusion may touch
 * (pass_fusable_value) and every output is present. */
bool pass_node_fusable(const fir_node_t *n);
/* The inputs a node fusing nodes[0..n_nodes) takes: theirs but the values
 * one of them produces, each once, in order; returns their number. */
int pass_fused_inputs(const fir_node_t *const *nodes, int n_nodes, fir_value_t **ins);
/* Activation fusion (fuse_activation.c): a product (MatMul, MatMulBias, Gemm,
 * Conv) read only by an activation of its output (GELU, erf or tanh form, or
 * ReLU, found by evaluating the node) becomes one ProductActivation node
 * (domain ai.flagos, src/ops/product_act.c) whose first kernel carries the
 * product's library call with the activation. Run after attention fusion;
 * FLAGOS_FUSE=0 or FLAGOS_FUSE_ACTIVATION=0 turns it off, FLAGOS_FUSE_TRACE=1
 * prints each node. */
flagos_status_t pass_fuse_activation(fir_model_t *m, int *n_fused);
/* Norm fusion (fuse_norm.c): a product (MatMul, MatMulBias, Gemm) whose
 * output, directly or through one view, only the inlined pair of a residual
 * Add and its LayerNormalization reads becomes one ProductNorm node (domain
 * ai.flagos, src/ops/product_norm.c) whose first kernel carries the gemm_norm
 * call. Run after activation fusion; FLAGOS_FUSE=0 or FLAGOS_FUSE_NORM=0 turns
 * it off, FLAGOS_FUSE_TRACE=1 prints each node. */
flagos_status_t pass_fuse_norm(fir_model_t *m, int *n_fused);
/* Moves a copy of node n into graph body: its inputs mapped by bmap (value id
 * -> body value), its outputs new body values recorded there; a subgraph of n
 * now nests in body. */
fir_node_t *pass_move_node(fir_model_t *m, fir_graph_t *body, const fir_node_t *n, fir_value_t **bmap,
                           fl_arena_t *a);
/* A fused node's body graph (nested in m's graph), an input for each of ins
 * recorded in bmap (value id -> body value). */
fir_graph_t *pass_new_body(fir_model_t *m, const char *name, fir_value_t *const *ins, int n_ins, fir_value_t **bmap);
/* A trial lowering of a fused node not yet in a graph: NULL where it takes
 * the node, else why not (ops_attention_why_not, ops_product_act_why_not...). */
typedef const char *(*pass_why_not_fn)(fl_arena_t *a, const fir_node_t *n);
/* The fused node `op` (domain ai.flagos) named `name` over nodes[0..n_nodes)
 * of m's graph, copied in order into its body (the body's outputs the last
 * node's; the node's inputs theirs but the values one of them produces, its
 * outputs the last node's), added to the graph where why_not takes it, with
 * the domain's opset; else NULL with *why set, the nodes' subgraphs nesting in
 * the graph again. The nodes themselves stay: the caller removes them. */
fir_node_t *pass_fuse_nodes(fir_model_t *m, const char *op, const char *name, fir_node_t *const *nodes, int n_nodes,
                            pass_why_not_fn why_not, fl_arena_t *a, const char **why);
/* Makes the subgraphs of n's attributes nest in parent. */
void pass_nest_subgraphs(const fir_node_t *n, fir_graph_t *parent);
/* MatMul + bias fusion (fuse_bias.c): a MatMul read only by an Add of a
 * constant vector over its last dim becomes one MatMulBias node (domain
 * ai.flagos, src/ops/linalg.c) whose bias is the gemm call's epilogue where the
 * backend has one. Run before elementwise fusion; FLAGOS_FUSE=0 turns it off. */
flagos_status_t pass_fuse_matmul_bias(fir_model_t *m, int *n_fused);
/* Common subexpressions of views (cse.c): a Reshape, Flatten, Squeeze,
 * Unsqueeze or Identity of the main graph repeating an earlier one (same
 * inputs or equal small constants, same attributes) is dropped, its readers
 * reading the earlier node's output. FLAGOS_CSE=0 turns it off. *n_dropped
 * may be NULL. */
flagos_status_t pass_cse(fir_model_t *m, int *n_dropped);
/* Sibling products (merge_products.c): MatMul, MatMulBias or Gemm nodes that
 * multiply one value by constant matrices of one shape become one product by
 * the matrices side by side (one under the other for Gemm's transB) and a
 * Split of its last axis (BERT's query, key
 * and value projections: one gemm call). Run after MatMul + bias fusion;
 * FLAGOS_FUSE=0 or FLAGOS_FUSE_MERGE=0 turns it off, FLAGOS_FUSE_TRACE=1
 * prints each merge. *n_merged (may be NULL) receives the number of merges. */
flagos_status_t pass_merge_products(fir_model_t *m, int *n_merged);
/* True when a fusion pass leaves m's graph as written: FLAGOS_FUSE=0, the
 * pass's own switch `env` set to 0 (NULL: none), fewer than two nodes, or a
 * Gradient node (it differentiates the nodes as written). */
bool pass_fusion_off(const fir_model_t *m, const char *env);
/* Readers of each value of g (count[value id], zeroed by the caller): a node
 * reading it (once however many of its inputs), a subgraph reading it or the
 * graph's output counts two, so that 1 means one node alone reads it. */
void pass_count_readers(const fir_graph_t *g, int *count);
/* What a fusion round starts from: g's nodes numbered by position (id), and
 * the readers of each value (pass_count_readers) in an array of a. */
int *pass_round_readers(fir_graph_t *g, fl_arena_t *a);
/* Marks g's inputs in is_input[value id] (zeroed by the caller): an
 * initializer that is also a graph input is a default a caller may override,
 * never a constant. */
void pass_mark_graph_inputs(const fir_graph_t *g, bool *is_input);
/* Transpose chains (transposes.c): a Transpose followed by Transposes and
 * Reshapes that only insert or drop dims of size 1, each read by the next
 * alone, becomes one Transpose where the chain ends at its input's rank (as
 * PyTorch's exporter writes attention's key: Transpose, Reshape to rank 3,
 * Transpose, Reshape back). Run before the fusion passes; FLAGOS_FUSE=0 turns
 * it off, FLAGOS_FUSE_TRACE=1 prints each chain. */
flagos_status_t pass_fold_transpose_chains(fir_model_t *m, int *n_folded);
/* After a fusion pass appended nodes of operator op (domain) and removed the
 * ones they replace: verifies the model (which sorts the nodes) and infers the
 * new nodes. Errors say "after <pass>". */
flagos_status_t pass_fusion_settle(fir_model_t *m, const char *op, const char *domain, const char *pass);
/* The standard pipeline: --shape overrides, Constant nodes, inference with
 * constant folding (pass_fold_constants), DCE, common subexpressions,
 * Transpose chains, MatMul + bias fusion, sibling products, elementwise
 * fusion, inline fusion, attention fusion, activation fusion. */
flagos_status_t pass_run_default(fir_model_t *m, const char *shape_spec);

#endif
