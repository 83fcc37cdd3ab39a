/* Sibling products as one (docs/fusion.md, "Sibling products"): MatMul nodes,
 * MatMulBias nodes or Gemm nodes that multiply the same value A by constant
 * matrices of one shape [K, N] become one product of A by the matrices side by
 * side, [K, n*N] (one under the other, [n*N, K], for Gemm's transB; with
 * biases, the biases end to end, [n*N]), followed by a Split of its last axis
 * into the n original outputs. BERT's query, key and
 * value projections are three 768x768 products of one hidden state: merged
 * they are one 768x2304 gemm call and one Split kernel, not three gemm calls,
 * and on the GPU one product that fills the device better than three.
 *
 * A matrix joins only if its one reader is the product (the merged copy
 * replaces it; a matrix read elsewhere would be stored twice); a bias may be
 * shared (its N values are copied). Both must be initializers and not graph
 * inputs (whose defaults a caller may override), and the products' outputs
 * static. The old constants leave the graph with their last reader, so the
 * bundle holds the weights once. Runs after MatMul + bias fusion
 * and before elementwise fusion; FLAGOS_FUSE=0 or FLAGOS_FUSE_MERGE=0 turns it
 * off, FLAGOS_FUSE_TRACE=1 prints each merge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagos/flagos.h"
#include "ops/linalg_bias.h"
#include "passes/passes.h"

/* Products merged into one at most (the Split's outputs). */
#define MERGE_MAX 8

typedef struct merge {
  fir_model_t *m;
  fir_graph_t *g;
  int *readers;     /* pass_count_readers */
  bool *is_input;   /* by value id: a graph input */
  bool *dead_node;  /* by node id */
  bool *dead_value; /* by value id */
} merge_t;

static bool float_type(flagos_dtype_t dt) {
  return dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT16 || dt == FLAGOS_BFLOAT16 || dt == FLAGOS_FLOAT64;
}

/* A constant of g, not a graph input, of dtype dt and static shape, read by
 * one node alone unless shared (a bias: PyTorch's exporter stores BERT's
 * all-zero biases once, read by every projection). */
static bool constant_of(const merge_t *s, const fir_value_t *v, flagos_dtype_t dt, bool shared) {
  return v && v->graph == s->g && v->init && v->init->data && !s->is_input[v->id] &&
         (shared || s->readers[v->id] == 1) && v->type->kind == FIR_TYPE_TENSOR && fir_type_is_static(v->type) &&
         v->type->dtype == dt;
}

static bool is_gemm(const fir_node_t *n) { return strcmp(n->op_type, "Gemm") == 0 && n->domain[0] == 0; }

/* Whether n can join a merge: MatMul(A, W), MatMulBias(A, W, b) or Gemm(A, W
 * [, b]) (transA 0; W transposed where transB says) of a float type, W an own
 * constant [K, N] ([N, K] transposed), b a constant of N values ([N] or
 * [1, ..., 1, N]), A and the output static of rank >= 2 (2 for Gemm). */
static bool candidate(const merge_t *s, const fir_node_t *n) {
  bool gemm = is_gemm(n);
  bool mmb = strcmp(n->op_type, OPS_LA_MATMUL_BIAS) == 0 && strcmp(n->domain, OPS_LA_MATMUL_BIAS_DOMAIN) == 0;
  bool plain = strcmp(n->op_type, "MatMul") == 0 && n->domain[0] == 0;
  bool bias = mmb || (gemm && n->n_inputs == 3 && n->inputs[2]);
  if (!gemm && !mmb && !plain) return false;
  if ((gemm ? (n->n_inputs < 2 || n->n_inputs > 3) : n->n_inputs != (mmb ? 3 : 2)) || n->n_outputs != 1 ||
      !n->outputs[0])
    return false;
  if (gemm && fir_attr_int(n, "transA", 0) != 0) return false;
  bool tb = gemm && fir_attr_int(n, "transB", 0) != 0;
  const fir_value_t *a = n->inputs[0], *w = n->inputs[1], *y = n->outputs[0];
  if (!a || !w || a->type->kind != FIR_TYPE_TENSOR || y->type->kind != FIR_TYPE_TENSOR) return false;
  const fir_type_t *ta = a->type, *tw = w->type, *ty = y->type;
  flagos_dtype_t dt = ta->dtype;
  if (!float_type(dt) || !fir_type_is_static(ta) || !fir_type_is_static(ty) || ta->rank < 2 || ty->rank != ta->rank ||
      ty->rank > FLAGOS_MAX_RANK || (gemm && ta->rank != 2))
    return false;
  if (!constant_of(s, w, dt, false) || tw->rank != 2 || tw->dims[tb ? 1 : 0].value != ta->dims[ta->rank - 1].value)
    return false;
  int64_t nn = tw->dims[tb ? 0 : 1].value;
  if (ty->dims[ty->rank - 1].value != nn || ty->dtype != dt) return false;
  if (!bias) return true;
  const fir_value_t *b = n->inputs[2];
  if (!constant_of(s, b, dt, true) || b->type->rank < 1 || b->type->dims[b->type->rank - 1].value != nn) return false;
  for (int j = 0; j + 1 < b->type->rank; j++)
    if (b->type->dims[j].value != 1) return false;
  return true;
}

/* Whether candidates x and y (x first) merge: one operator with the same
 * attributes (Gemm's alpha, beta, transB), one A, matrices of one shape, both
 * with a bias or neither. */
static bool siblings(const fir_node_t *x, const fir_node_t *y) {
  if (strcmp(x->op_type, y->op_type) != 0 || x->inputs[0] != y->inputs[0] ||
      !fir_type_equal(x->inputs[1]->type, y->inputs[1]->type) || x->n_inputs != y->n_inputs)
    return false;
  if (!is_gemm(x)) return true;
  return fir_attr_float(x, "alpha", 1) == fir_attr_float(y, "alpha", 1) &&
         fir_attr_float(x, "beta", 1) == fir_attr_float(y, "beta", 1) &&
         fir_attr_int(x, "transB", 0) == fir_attr_int(y, "transB", 0) && (x->n_inputs < 3) == (y->n_inputs < 3) &&
         (x->n_inputs < 3 || (x->inputs[2] == NULL) == (y->inputs[2] == NULL));
}

/* A constant value of g named after base, holding t. */
static fir_value_t *constant(merge_t *s, const char *base, fir_tensor_t *t) {
  char name[256];
  snprintf(name, sizeof name, "%s_merged", strlen(base) < 200 ? base : "merged"); /* room for fresh names' suffix */
  fir_value_t *v = fir_value_create(s->g, fir_fresh_name(s->m, name), fir_type_tensor(s->m, t->dtype, t->rank, t->dims));
  t->name = v->name;
  v->init = t;
  return v;
}

/* Replaces the products grp[0 .. n) by one product and a Split (made[0], made[1]). */
static void merge(merge_t *s, fir_node_t *const *grp, int n, fir_node_t **made) {
  const fir_node_t *x = grp[0];
  bool bias = x->n_inputs == 3 && x->inputs[2];
  bool tb = is_gemm(x) && fir_attr_int(x, "transB", 0) != 0;
  const fir_type_t *tw = x->inputs[1]->type, *ty = x->outputs[0]->type;
  flagos_dtype_t dt = tw->dtype;
  size_t es = flagos_dtype_size(dt);
  int64_t K = tw->dims[tb ? 1 : 0].value, N = tw->dims[tb ? 0 : 1].value;
  int64_t wd[2] = {tb ? N * n : K, tb ? K : N * n}, bd = N * n;
  fir_tensor_t *w = fir_tensor_create(s->m, dt, 2, wd);
  for (int i = 0; i < n; i++) {
    const char *src = grp[i]->inputs[1]->init->data;
    if (tb) /* [N, K] each: the matrices one under the other */
      memcpy((char *)w->data + (size_t)(i * N * K) * es, src, (size_t)(N * K) * es);
    else /* [K, N] each: side by side */
      for (int64_t k = 0; k < K; k++)
        memcpy((char *)w->data + ((size_t)k * (size_t)(N * n) + (size_t)(i * N)) * es, src + (size_t)(k * N) * es,
               (size_t)N * es);
    s->dead_value[grp[i]->inputs[1]->id] = true;
  }
  fir_value_t *in[3] = {x->inputs[0], constant(s, x->inputs[1]->name, w), NULL};
  if (bias) {
    fir_tensor_t *b = fir_tensor_create(s->m, dt, 1, &bd);
    for (int i = 0; i < n; i++) {
      const fir_value_t *old = grp[i]->inputs[2];
      memcpy((char *)b->data + (size_t)(i * N) * es, old->init->data, (size_t)N * es);
      /* a bias the group shares leaves with its last reader */
      if (--s->readers[old->id] == 0) s->dead_value[old->id] = true;
    }
    in[2] = constant(s, x->inputs[2]->name, b);
  }
  int64_t pd[FLAGOS_MAX_RANK];
  for (int j = 0; j < ty->rank; j++) pd[j] = ty->dims[j].value;
  pd[ty->rank - 1] = N * n;
  char name[256];
  const char *base = x->name[0] && strlen(x->name) < 200 ? x->name : "product";
  snprintf(name, sizeof name, "%s_merged", base);
  fir_value_t *p = fir_value_create(s->g, fir_fresh_name(s->m, name), fir_type_tensor(s->m, dt, ty->rank, pd));
  made[0] = fir_node_create(s->g, x->op_type, x->domain, name, bias ? 3 : 2, in, 1, &p);
  made[0]->n_attrs = x->n_attrs; /* Gemm's alpha, beta, transB */
  made[0]->attrs = x->attrs;
  fir_value_t *outs[MERGE_MAX];
  for (int i = 0; i < n; i++) {
    outs[i] = grp[i]->outputs[0];
    s->dead_node[grp[i]->id] = true;
  }
  snprintf(name, sizeof name, "%s_split", base);
  fir_node_t *sp = fir_node_create(s->g, "Split", "", name, 1, &p, n, outs);
  fir_node_add_attr(sp, "axis", FIR_ATTR_INT)->i = ty->rank - 1;
  if (sp->opset >= 18) fir_node_add_attr(sp, "num_outputs", FIR_ATTR_INT)->i = n;
  made[1] = sp;
  if (getenv("FLAGOS_FUSE_TRACE")) {
    fprintf(stderr, "flagos fuse: '%s' = %d %s nodes of one input side by side (", p->name, n, x->op_type);
    for (int i = 0; i < n; i++) fprintf(stderr, "%s'%s'", i ? ", " : "", grp[i]->name);
    fprintf(stderr, "), then a Split\n");
  }
}

flagos_status_t pass_merge_products(fir_model_t *m, int *n_merged) {
  if (n_merged) *n_merged = 0;
  if (pass_fusion_off(m, "FLAGOS_FUSE_MERGE")) return NULL;
  fir_graph_t *g = m->graph;
  merge_t s = {.m = m, .g = g};
  size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
  s.readers = calloc(nv, sizeof(int));
  s.is_input = calloc(nv, sizeof(bool));
  s.dead_value = calloc(nv, sizeof(bool));
  s.dead_node = calloc(3 * nn, sizeof(bool)); /* the new nodes too: up to 2 a merge of 2 or more */
  bool *taken = calloc(nn, sizeof(bool));
  fir_node_t **made = calloc(nn, sizeof(*made));
  if (!s.readers || !s.is_input || !s.dead_value || !s.dead_node || !taken || !made) {
    free(s.readers), free(s.is_input), free(s.dead_value), free(s.dead_node), free(taken), free(made);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "product merging: out of memory");
  }
  for (int i = 0; i < g->n_values; i++) g->values[i]->id = i;
  for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->id = i;
  pass_count_readers(g, s.readers);
  pass_mark_graph_inputs(g, s.is_input);
  int merged = 0, n0 = g->n_nodes;
  for (int i = 0; i < n0; i++) {
    fir_node_t *x = g->nodes[i];
    if (taken[i] || !candidate(&s, x)) continue;
    fir_node_t *grp[MERGE_MAX] = {x};
    int n = 1;
    for (int j = i + 1; j < n0 && n < MERGE_MAX; j++)
      if (!taken[j] && candidate(&s, g->nodes[j]) && siblings(x, g->nodes[j])) {
        grp[n++] = g->nodes[j];
        taken[j] = true;
      }
    if (n < 2) continue;
    merge(&s, grp, n, &made[2 * merged]);
    merged++;
  }
  free(taken);
  free(s.readers);
  free(s.is_input);
  if (merged) {
    fir_graph_remove_nodes(g, s.dead_node);
    fir_graph_remove_values(g, s.dead_value, (int)nv - 1);
  }
  free(s.dead_node);
  free(s.dead_value);
  flagos_status_t st = merged ? fir_verify(m) : NULL;
  if (st) st = flagos_status_wrap(st, "after product merging");
  /* The new nodes in order: each product before its Split. */
  for (int i = 0; i < 2 * merged && !st; i++) st = pass_infer_node(m, made[i]);
  free(made);
  if (!st && n_merged) *n_merged = merged;
  return st;
}
