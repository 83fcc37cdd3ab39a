/* Inlining a small subgraph into a kernel IR expression (extra2_subgraph.c).
 *
 * Operators such as FlexAttention take subgraphs (score_mod, prob_mod) that map a
 * tensor to a tensor of the same shape, element by element, possibly using the
 * element's position (Shape -> Range -> Reshape builds index grids for masks and
 * relative positions). Such a subgraph has no kernel of its own: it is turned
 * into the scalar expression of one output element at a given index, built from
 * the caller's expressions for the inputs' elements, and the caller puts that
 * expression inside its own kernels. Every value of the subgraph is a lazy
 * tensor: a dtype, a rank, dims as int64 expressions free of loop variables, and
 * a rule giving its element at any index. Operators the translator cannot inline
 * give FLAGOS_ERR_UNSUPPORTED naming the node. Internal to src/ops. */
#ifndef FLAGOS_OPS_EXTRA2_SUBGRAPH_H
#define FLAGOS_OPS_EXTRA2_SUBGRAPH_H

#include "ops/ops.h"

/* Element `idx` (rank entries, int64) of subgraph input `input`. */
typedef kir_expr_t *(*ops_sg_elem_fn)(void *user, int input, kir_expr_t *const *idx);

typedef struct ops_sg_input {
  flagos_dtype_t dtype;
  int rank;
  kir_expr_t *dims[OPS_MAX_RANK]; /* int64, free of loop variables and loads */
  ops_sg_elem_fn elem;
  void *user;
} ops_sg_input_t;

/* The expression of output `out` of g at index idx (rank entries), the output
 * broadcast onto that index space (numpy rules) and cast to `want`. Expressions
 * are allocated in c->arena; the same element asked twice gives the same
 * pointer, so emitters compute it once. `what` names the subgraph in errors. */
flagos_status_t ops_sg_inline(ops_ctx_t *c, const fir_graph_t *g, const char *what, int n_in, const ops_sg_input_t *ins,
                              int out, int rank, kir_expr_t *const *idx, flagos_dtype_t want, kir_expr_t **res);

#endif
