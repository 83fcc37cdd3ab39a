/* Internals of the subgraph inliner, shared by extra2_subgraph.c (values,
 * constants, index-remapping operators) and extra2_subgraph_pw.c (pointwise
 * operators). Internal to src/ops. */
#ifndef FLAGOS_OPS_EXTRA2_SUBGRAPH_INT_H
#define FLAGOS_OPS_EXTRA2_SUBGRAPH_INT_H

#include "ops/extra2_subgraph.h"

/* A subgraph value as a lazy tensor: dims are int64 expressions free of loop variables. */
typedef struct sg_val {
  const fir_value_t *v;
  flagos_dtype_t dt;
  int rank;
  kir_expr_t *dims[OPS_MAX_RANK];
} sg_val_t;

typedef struct sg_memo {
  const fir_value_t *v;
  kir_expr_t *idx[OPS_MAX_RANK];
  kir_expr_t *e;
} sg_memo_t;

typedef struct sg {
  ops_ctx_t *c;
  fl_arena_t *a;
  const fir_graph_t *g;
  const char *what;
  int n_in;
  const ops_sg_input_t *ins;
  sg_val_t *vals;
  int n_vals, cap_vals;
  sg_memo_t *memo;
  int n_memo, cap_memo;
  long budget;
} sg_t;

flagos_status_t ops_sg_err(sg_t *s, const fir_node_t *n, flagos_code_t code, const char *fmt, ...) FLAGOS_PRINTF(4, 5);
#define UNSUP(n, ...) ops_sg_err(s, n, FLAGOS_ERR_UNSUPPORTED, __VA_ARGS__)
#define BAD(n, ...) ops_sg_err(s, n, FLAGOS_ERR_SHAPE, __VA_ARGS__)

/* Describes value v (memoised; the pointer stays valid). */
flagos_status_t ops_sg_val_info(sg_t *s, const fir_value_t *v, const sg_val_t **out);
/* Element idx (v's rank entries) of value v (memoised on the index expressions). */
flagos_status_t ops_sg_val_elem(sg_t *s, const fir_value_t *v, kir_expr_t *const *idx, kir_expr_t **out);
/* Index of operand `in` broadcast (numpy rules) into an index space of `rank`. */
kir_expr_t **ops_sg_bcast_idx(sg_t *s, const sg_val_t *in, int rank, kir_expr_t *const *idx);
/* o's dims broadcast with dims[0..rank). */
flagos_status_t ops_sg_bcast_dims(sg_t *s, const fir_node_t *n, sg_val_t *o, int rank, const kir_expr_t *const *dims);

/* Pointwise operators (extra2_subgraph_pw.c). */
bool ops_sg_is_pointwise(const char *op);
flagos_status_t ops_sg_pointwise_info(sg_t *s, const fir_node_t *n, sg_val_t *o);
flagos_status_t ops_sg_pointwise_elem(sg_t *s, const fir_node_t *n, const sg_val_t *o, kir_expr_t *const *idx,
                                      kir_expr_t **out);

#endif
