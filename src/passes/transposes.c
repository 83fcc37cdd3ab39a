/* Transpose chains: a Transpose whose output goes, one reader at a time,
 * through more Transposes and Reshapes that only insert or drop dims of size
 * 1, becomes one Transpose of the chain's input where the chain ends at that
 * input's rank. PyTorch's exporter writes attention's key this way
 * (Transpose [b,s,h,d] -> [b,h,s,d], Reshape to [h,s,d], Transpose to [h,d,s],
 * Reshape to [b,h,d,s]); one Transpose, [b,s,h,d] -> [b,h,d,s], is one launch
 * instead of two, and the inline fusion pass then reads it through the
 * product's strides (docs/fusion.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

#define CHAIN_MAX_RANK 8

/* The dims of a static tensor value, or false. */
static bool static_dims(const fir_value_t *v, int *rank, int64_t *dims) {
  const fir_type_t *t = v ? v->type : NULL;
  if (!t || t->kind != FIR_TYPE_TENSOR || t->rank < 0 || t->rank > CHAIN_MAX_RANK) return false;
  *rank = t->rank;
  for (int i = 0; i < t->rank; i++)
    if ((dims[i] = t->dims[i].value) < 0) return false;
  return true;
}

/* A link of a chain: a Transpose, or a Reshape whose dims other than 1 are its
 * input's, in order. map[k] is the chain input's dim that dim k of the value
 * holds (-1: a dim of size 1); the link rewrites it for its output. */
static bool link(const fir_node_t *n, int *rank, int *map) {
  if (n->domain[0] || n->n_outputs != 1 || n->n_inputs < 1) return false;
  int ri, ro;
  int64_t di[CHAIN_MAX_RANK], dout[CHAIN_MAX_RANK];
  if (!static_dims(n->inputs[0], &ri, di) || !static_dims(n->outputs[0], &ro, dout) || ri != *rank) return false;
  int next[CHAIN_MAX_RANK];
  if (strcmp(n->op_type, "Transpose") == 0) {
    const int64_t *perm = NULL;
    int np = fir_attr_ints(n, "perm", &perm);
    if (ro != ri || (perm && np != ri)) return false;
    for (int k = 0; k < ro; k++) {
      int64_t p = perm ? perm[k] : ri - 1 - k;
      if (p < 0 || p >= ri) return false;
      next[k] = map[p];
    }
  } else if (strcmp(n->op_type, "Reshape") == 0) {
    int j = 0;
    for (int k = 0; k < ro; k++) {
      if (dout[k] == 1) {
        next[k] = -1;
        continue;
      }
      while (j < ri && di[j] == 1) j++;
      if (j == ri || di[j] != dout[k]) return false;
      next[k] = map[j++];
    }
    while (j < ri && di[j] == 1) j++;
    if (j != ri) return false;
  } else {
    return false;
  }
  *rank = ro;
  memcpy(map, next, sizeof(int) * (size_t)ro);
  return true;
}

flagos_status_t pass_fold_transpose_chains(fir_model_t *m, int *n_folded) {
  if (n_folded) *n_folded = 0;
  if (pass_fusion_off(m, NULL)) return NULL;
  fir_graph_t *g = m->graph;
  fl_arena_t *a = fl_arena_create();
  int n = g->n_nodes;
  int *readers = fl_arena_alloc(a, sizeof(int) * (size_t)(g->n_values + 1));
  const fir_node_t **reader = fl_arena_alloc(a, sizeof(*reader) * (size_t)(g->n_values + 1));
  bool *dead = fl_arena_alloc(a, sizeof(bool) * (size_t)(2 * n + 1));
  pass_count_readers(g, readers);
  for (int i = 0; i < n; i++) {
    g->nodes[i]->id = i;
    for (int k = 0; k < g->nodes[i]->n_inputs; k++)
      if (g->nodes[i]->inputs[k] && g->nodes[i]->inputs[k]->graph == g) reader[g->nodes[i]->inputs[k]->id] = g->nodes[i];
  }
  int folded = 0;
  for (int i = 0; i < n; i++) {
    const fir_node_t *t = g->nodes[i];
    int rank, xr, map[CHAIN_MAX_RANK];
    int64_t xd[CHAIN_MAX_RANK];
    if (dead[i] || t->domain[0] || strcmp(t->op_type, "Transpose") != 0 || !static_dims(t->inputs[0], &xr, xd))
      continue;
    rank = xr;
    for (int k = 0; k < xr; k++) map[k] = k;
    if (!link(t, &rank, map)) continue;
    /* follow the chain while one node alone reads each value */
    const fir_node_t *end = t;
    int len = 1, ends_map[CHAIN_MAX_RANK], ends_len = 1;
    const fir_node_t *ends_at = t;
    memcpy(ends_map, map, sizeof map);
    for (;;) {
      const fir_value_t *v = end->outputs[0];
      const fir_node_t *nx = readers[v->id] == 1 ? reader[v->id] : NULL;
      if (!nx || nx->inputs[0] != v || dead[nx->id] || !link(nx, &rank, map)) break;
      end = nx;
      len++;
      if (rank == xr) { /* a place the chain may end: its input's rank again */
        ends_at = end;
        ends_len = len;
        memcpy(ends_map, map, sizeof map);
      }
    }
    if (ends_len < 2) continue;
    /* the input's dims of size 1 go where the chain put dims of size 1 */
    bool used[CHAIN_MAX_RANK] = {false}, ok = true;
    for (int k = 0; k < xr; k++)
      if (ends_map[k] >= 0) used[ends_map[k]] = true;
    for (int k = 0, j = 0; k < xr && ok; k++) {
      if (ends_map[k] >= 0) continue;
      while (j < xr && used[j]) j++;
      ok = j < xr && xd[j] == 1;
      if (ok) used[j] = true, ends_map[k] = j;
    }
    for (int k = 0; k < xr && ok; k++) ok = used[k];
    if (!ok) continue;
    fir_value_t *in[1] = {t->inputs[0]}, *out[1] = {ends_at->outputs[0]};
    fir_node_t *fn = fir_node_create(g, "Transpose", "", ends_at->name, 1, in, 1, out);
    fir_attr_t *pa = fir_node_add_attr(fn, "perm", FIR_ATTR_INTS);
    pa->n = xr;
    pa->ints = fl_arena_alloc(m->arena, sizeof(int64_t) * (size_t)(xr + 1));
    for (int k = 0; k < xr; k++) pa->ints[k] = ends_map[k];
    for (const fir_node_t *c = t;; c = reader[c->outputs[0]->id]) {
      dead[c->id] = true;
      if (c == ends_at) break;
    }
    if (getenv("FLAGOS_FUSE_TRACE")) fprintf(stderr, "flagos fuse: '%s' = %d Transposes and Reshapes as one Transpose\n",
                                             ends_at->name, ends_len);
    folded++;
  }
  if (folded) fir_graph_remove_nodes(g, dead);
  fl_arena_destroy(a);
  if (!folded) return NULL;
  FL_TRY(pass_fusion_settle(m, "Transpose", "", "Transpose chains"));
  if (n_folded) *n_folded = folded;
  return NULL;
}
