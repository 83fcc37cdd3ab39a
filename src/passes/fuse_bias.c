/* MatMul + bias fusion: a MatMul whose only reader is an Add of a constant
 * vector of N values (N the product's last dim) becomes one MatMulBias node
 * (domain ai.flagos, src/ops/linalg.c), whose bias rides on the gemm library
 * call as an epilogue where the backend has one (cuBLASLt), so that the bias
 * costs no kernel of its own. Runs before elementwise fusion, which would
 * otherwise take the Add into a pointwise group. docs/fusion.md describes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/linalg_bias.h"
#include "passes/passes.h"

typedef struct {
  const fir_graph_t *g;
  int *uses;
} count_t;

/* A value read inside a subgraph counts as read twice: never absorbable. */
static void count_captured(fir_value_t *v, void *ctx) {
  count_t *c = ctx;
  if (v->graph == c->g) c->uses[v->id] += 2;
}

static bool float_ok(flagos_dtype_t dt) {
  return dt == FLAGOS_FLOAT32 || dt == FLAGOS_FLOAT16 || dt == FLAGOS_BFLOAT16 || dt == FLAGOS_FLOAT64;
}


/* True when bias (an initializer) is a vector of the product p's last dim: [N]
 * or [1, ..., 1, N], of p's dtype and rank at most p's, so that the Add's
 * output is the product's shape. */
static bool bias_fits(const fir_value_t *bias, const fir_type_t *p) {
  const fir_type_t *t = bias->type;
  if (!bias->init || t->kind != FIR_TYPE_TENSOR || !fir_type_is_static(t) || t->dtype != p->dtype) return false;
  if (t->rank < 1 || t->rank > p->rank) return false;
  int64_t n = p->dims[p->rank - 1].value;
  if (n < 0 || t->dims[t->rank - 1].value != n) return false;
  for (int j = 0; j + 1 < t->rank; j++)
    if (t->dims[j].value != 1) return false;
  return true;
}

/* The MatMul that x's Add can absorb, or NULL: its output is x, read once (by
 * the Add alone: no other node, subgraph or graph output), with a 2-D B and an
 * A of rank >= 2, of a float type. */
static fir_node_t *absorbable(const fir_graph_t *g, const fir_value_t *x, const int *uses) {
  if (!x || x->graph != g || !x->producer || x->producer->graph != g || uses[x->id] != 1) return NULL;
  fir_node_t *mm = x->producer;
  if (!fir_node_is(mm, "", "MatMul") || mm->n_inputs != 2 || mm->n_outputs != 1 || !mm->inputs[0] || !mm->inputs[1])
    return NULL;
  const fir_type_t *ta = mm->inputs[0]->type, *tb = mm->inputs[1]->type, *tx = x->type;
  if (ta->kind != FIR_TYPE_TENSOR || tb->kind != FIR_TYPE_TENSOR || tx->kind != FIR_TYPE_TENSOR) return NULL;
  if (ta->rank < 2 || tb->rank != 2 || tx->rank < 2 || !float_ok(tx->dtype)) return NULL;
  return mm;
}

flagos_status_t pass_fuse_matmul_bias(fir_model_t *m, int *n_fused) {
  if (n_fused) *n_fused = 0;
  if (pass_fusion_off(m, NULL)) return NULL;
  fir_graph_t *g = m->graph;
  int n = g->n_nodes;
  int *uses = calloc((size_t)g->n_values + 1, sizeof(int));
  bool *dead = calloc((size_t)n * 2 + 1, sizeof(bool));
  if (!uses || !dead) {
    free(uses);
    free(dead);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "matmul bias fusion: out of memory");
  }
  for (int i = 0; i < n; i++) g->nodes[i]->id = i;
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] && g->outputs[i]->graph == g) uses[g->outputs[i]->id] += 2;
  for (int i = 0; i < n; i++) {
    const fir_node_t *x = g->nodes[i];
    for (int k = 0; k < x->n_inputs; k++)
      if (x->inputs[k] && x->inputs[k]->graph == g) uses[x->inputs[k]->id]++;
    count_t cc = {g, uses};
    fir_node_subgraph_reads(x, count_captured, &cc);
  }
  int fused = 0;
  for (int i = 0; i < n; i++) {
    fir_node_t *add = g->nodes[i];
    if (!fir_node_is(add, "", "Add") || add->n_inputs != 2 || add->n_outputs != 1 || !add->outputs[0]) continue;
    for (int s = 0; s < 2; s++) {
      fir_value_t *x = add->inputs[s], *bias = add->inputs[1 - s];
      fir_node_t *mm = absorbable(g, x, uses);
      /* A bias that fits leaves the Add's output the product's shape (its
       * declared type may name a dim the product's leaves unknown). */
      if (!mm || !bias || !bias_fits(bias, x->type) || add->outputs[0]->type->kind != FIR_TYPE_TENSOR ||
          add->outputs[0]->type->rank != x->type->rank)
        continue;
      if (fir_model_opset(m, OPS_LA_MATMUL_BIAS_DOMAIN) < 0) fir_model_set_opset(m, OPS_LA_MATMUL_BIAS_DOMAIN, 1);
      fir_value_t *in[3] = {mm->inputs[0], mm->inputs[1], bias};
      const char *name = add->name[0] ? add->name : mm->name;
      fir_node_create(g, OPS_LA_MATMUL_BIAS, OPS_LA_MATMUL_BIAS_DOMAIN, name, 3, in, 1, add->outputs);
      dead[mm->id] = dead[add->id] = true;
      if (getenv("FLAGOS_FUSE_TRACE"))
        fprintf(stderr, "flagos fuse: '%s' = MatMul Add (bias %s)\n", name, bias->name);
      fused++;
      break;
    }
  }
  free(uses);
  if (fused) fir_graph_remove_nodes(g, dead);
  free(dead);
  if (!fused) return NULL;
  FL_TRY(pass_fusion_settle(m, OPS_LA_MATMUL_BIAS, OPS_LA_MATMUL_BIAS_DOMAIN, "matmul bias fusion"));
  if (n_fused) *n_fused = fused;
  return NULL;
}
