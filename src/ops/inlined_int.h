/* What src/ops/inlined.c shares with src/ops/inlined_epilogue.c: the pair of
 * nodes being lowered as one, and the expression and kernel helpers of the
 * rewrite. Internal to those two files, and to src/ops/body_seq.c,
 * which scans a fused body's kernels for symbols with ops_inl_scan_kernel. */
#ifndef FLAGOS_OPS_INLINED_INT_H
#define FLAGOS_OPS_INLINED_INT_H

#include "ops/fused.h"

typedef struct pair {
  ops_ctx_t *p, *q; /* the producer's and the consumer's contexts */
  const ops_def_t *dp, *dq;
  int *pin, *qin;   /* their inputs -> the node's input (-1: the producer's output) */
} pair_t;

/* Expression -> rewritten expression, by address (open addressing). */
typedef struct memo {
  const kir_expr_t **from;
  kir_expr_t **to;
  size_t cap, n;
} memo_t;

kir_expr_t *ops_inl_memo_get(const memo_t *m, const kir_expr_t *e);
void ops_inl_memo_put(fl_arena_t *a, memo_t *m, const kir_expr_t *e, kir_expr_t *r);

/* What an expression or a kernel holds: symbols, reductions, loads of buffer
 * buf, nodes. */
typedef struct scan {
  int syms, reduces, loads_of, nodes;
  int buf; /* counted in loads_of */
} scan_t;

void ops_inl_scan_expr(const kir_expr_t *e, scan_t *s);
void ops_inl_scan_kernel(const kir_kernel_t *k, scan_t *s);

/* Whether buffer x has rank `rank` and these (constant) dims. */
bool ops_inl_same_dims(const kir_buf_t *x, int rank, kir_expr_t *const *dims);
/* A copy of node e, its operands still to fill. */
kir_expr_t *ops_inl_copy_node(fl_arena_t *a, const kir_expr_t *e);
/* A new kernel of c with k's name and loop nest, its buffers and stores to come. */
kir_kernel_t *ops_inl_kernel_like(ops_ctx_t *c, const kir_kernel_t *k);

/* The pair lowered as the producer's kernels storing the consumer's value
 * where they stored the producer's (inlined_epilogue.c): for a consumer that
 * is one pointwise kernel over the producer's output and a producer that is
 * not one plain store (Softmax, LayerNormalization, a reduction). An error
 * (the caller frees it) where they cannot. */
flagos_status_t ops_inl_pointwise_stores(ops_ctx_t *c, const pair_t *pr);

#endif
