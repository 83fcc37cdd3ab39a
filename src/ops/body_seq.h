/* A fused node whose `body` graph holds whole nodes run one after the other,
 * each by its own lowering (FusedAttention, src/ops/attention_fused.c;
 * ProductActivation, src/ops/product_act.c): the body's nodes inferred from
 * the node's inputs, the values they hand on placed in temporaries, their
 * kernels appended to the node's steps with their buffers bound to where the
 * body's values live. Static shapes only. */
#ifndef FLAGOS_OPS_BODY_SEQ_H
#define FLAGOS_OPS_BODY_SEQ_H

#include "ops/fused.h"

/* sub[i] is body node i's context; where[v] (by body value id) says where value
 * v lives in the node: an input (OPS_BIND_INPUT), an output (OUTPUT: body
 * output k is the node's output k) or a temporary (TEMP). A view (Reshape,
 * Flatten, Squeeze, Unsqueeze, Identity) whose output is not the body's is an
 * alias: its output lives where its
 * input does, and it has no kernels (alias[i]). */
typedef struct ops_seq {
  int n;
  ops_ctx_t **sub;
  const ops_def_t **def;
  ops_bind_t *where;
  bool *alias;
} ops_seq_t;

/* A fused node's lowering that also says why its first kernel carries no call
 * (*why_not NULL: it does). */
typedef flagos_status_t (*ops_seq_lower_fn)(ops_ctx_t *c, const char **why_not);
/* A trial of node n (not yet in a graph, its values typed and static): inferred
 * by its operator's rule, then lowered by `lower`; NULL when its first kernel
 * carries the call, else why not (an error's message included). a holds the
 * trial's allocations and the answer. */
const char *ops_seq_trial(fl_arena_t *a, const fir_node_t *n, ops_seq_lower_fn lower);
/* All of b's nodes inferred, placed and lowered in order: first[i] is node i's
 * first step, first[b->n_nodes] the steps' end (first has n_nodes + 1 slots). */
flagos_status_t ops_seq_lower_all(ops_ctx_t *c, const fir_graph_t *b, ops_seq_t *s, int *first);
/* Whether a fused node's call is on: its switch `env` (FLAGOS_ATTENTION_CALL,
 * FLAGOS_ACTIVATION_CALL) set to 0 leaves it out, the body's kernels alone (for
 * measurements). */
bool ops_seq_call_on(const char *env);
/* The step just added (a fused node's kernel of no points carrying its call)
 * made the node's first, marked ends_node; with product_call (the call on a
 * product's first kernel, its kernels first[0]..end) that call, where it ended
 * the node, now skips only the product's later kernels. */
void ops_seq_call_first(ops_ctx_t *c, kir_libcall_t *product_call, int at, int end);
/* A fused node's flops (ops_def_t.flops): the sum of its body's nodes', or -1
 * where unknown or the node has no body. */
double ops_seq_flops(const ops_ctx_t *c);
/* Infers b's nodes and sets the node's outputs from the body's (body output k
 * is the node's output k): a fused node's infer, once its body is checked. */
flagos_status_t ops_seq_infer_outputs(ops_ctx_t *c, const fir_graph_t *b);
/* What a body value is in node n whose body b holds it: n's input for a body
 * input, else itself. */
const fir_value_t *ops_seq_outer(const fir_graph_t *b, const fir_node_t *n, const fir_value_t *v);

#endif
