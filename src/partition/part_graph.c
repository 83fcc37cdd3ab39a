/* The graph the solver places: one group per kernel group the compiler emits
 * (a node today), edges weighted by the bytes that would cross devices. */
#include <stdlib.h>
#include <string.h>

#include "partition/part_internal.h"
#include "partition/partition.h"

part_graph_t *part_graph_create(void) {
  part_graph_t *g = calloc(1, sizeof *g);
  if (g) g->arena = fl_arena_create();
  return g;
}

void part_graph_destroy(part_graph_t *g) {
  if (!g) return;
  free(g->groups);
  free(g->edges);
  fl_arena_destroy(g->arena);
  free(g);
}

int part_graph_add_group(part_graph_t *g, const part_group_t *grp) {
  if (g->n_groups == g->cap_groups) {
    g->cap_groups = g->cap_groups ? g->cap_groups * 2 : 64;
    g->groups = part_realloc(g->groups, sizeof(*g->groups) * (size_t)g->cap_groups);
  }
  g->groups[g->n_groups] = *grp;
  if (g->groups[g->n_groups].n_members < 1) g->groups[g->n_groups].n_members = 1;
  return g->n_groups++;
}

void part_graph_add_edge(part_graph_t *g, int src, int dst, double bytes) {
  /* Edges arrive grouped by consumer, so the duplicate, if any, is recent. */
  for (int i = g->n_edges - 1; i >= 0 && i >= g->n_edges - 64; i--)
    if (g->edges[i].src == src && g->edges[i].dst == dst) {
      g->edges[i].bytes += bytes;
      return;
    }
  if (g->n_edges == g->cap_edges) {
    g->cap_edges = g->cap_edges ? g->cap_edges * 2 : 64;
    g->edges = part_realloc(g->edges, sizeof(*g->edges) * (size_t)g->cap_edges);
  }
  g->edges[g->n_edges++] = (part_edge_t){src, dst, bytes};
}

/* Bytes of a tensor value; a dim unknown at compile time counts as 1. */
static double value_bytes(const fir_value_t *v) {
  if (!v || v->type->kind != FIR_TYPE_TENSOR) return 0;
  double n = 1;
  for (int i = 0; i < v->type->rank; i++)
    if (v->type->dims[i].value > 0) n *= (double)v->type->dims[i].value;
    else if (v->type->dims[i].value == 0) n = 0;
  size_t es = flagos_dtype_size(v->type->dtype);
  return n * (double)(es ? es : 1);
}

static int node_index(const fir_graph_t *fg, const fir_node_t *n) {
  if (n->id >= 0 && n->id < fg->n_nodes && fg->nodes[n->id] == n) return n->id;
  for (int i = 0; i < fg->n_nodes; i++)
    if (fg->nodes[i] == n) return i;
  return -1;
}

flagos_status_t part_graph_from_fir(const fir_graph_t *fg, const double *node_flops, const int *node_kernels,
                                    const char *const *node_groups, part_graph_t **out) {
  part_graph_t *g = part_graph_create();
  if (!g) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  int *gid = part_calloc(1, sizeof(int) * (size_t)(fg->n_nodes + 1));
  bool *is_out = part_calloc((size_t)fg->n_values + 1, sizeof(bool));
  for (int i = 0; i < fg->n_outputs; i++)
    if (fg->outputs[i] && fg->outputs[i]->graph == fg) is_out[fg->outputs[i]->id] = true;
  for (int i = 0; i < fg->n_nodes; i++) {
    const fir_node_t *n = fg->nodes[i];
    gid[i] = -1;
    if (node_kernels[i] <= 0) continue;
    part_group_t grp = {0};
    grp.name = fl_arena_strdup(g->arena, node_groups && node_groups[i] ? node_groups[i] : n->name);
    grp.node = i;
    grp.flops = node_flops && node_flops[i] > 0 ? node_flops[i] : 0;
    grp.n_kernels = node_kernels[i];
    int me = part_graph_add_group(g, &grp);
    gid[i] = me;
    part_group_t *G = &g->groups[me];
    for (int k = 0; k < n->n_inputs; k++) {
      const fir_value_t *v = n->inputs[k];
      if (!v) continue;
      bool seen = false;
      for (int j = 0; j < k; j++) seen = seen || n->inputs[j] == v;
      double b = value_bytes(v);
      G->bytes += b;
      if (seen) continue;
      if (v->init) {
        G->mem += b;
      } else if (!v->producer) {
        /* A graph input, or a value of an enclosing graph: it comes from the host. */
        G->in_bytes += b;
      } else if (v->graph == fg) {
        int p = node_index(fg, v->producer);
        if (p >= 0 && gid[p] >= 0 && gid[p] != me) part_graph_add_edge(g, gid[p], me, b);
      }
    }
    for (int k = 0; k < n->n_outputs; k++) {
      const fir_value_t *v = n->outputs[k];
      if (!v) continue;
      double b = value_bytes(v);
      G->bytes += b;
      G->mem += b;
      if (is_out[v->id]) G->out_bytes += b;
      if (v->type->kind == FIR_TYPE_TENSOR && (v->type->dtype == FLAGOS_FLOAT16 || v->type->dtype == FLAGOS_BFLOAT16))
        G->half = true;
    }
  }
  free(gid);
  free(is_out);
  *out = g;
  return NULL;
}

/* ---- coarsening ---- */

static int uf_find(int *par, int i) {
  while (par[i] != i) i = par[i] = par[par[i]];
  return i;
}

static int cmp_edge_desc(const void *a, const void *b) {
  double x = ((const part_edge_t *)a)->bytes, y = ((const part_edge_t *)b)->bytes;
  return x < y ? 1 : x > y ? -1 : 0;
}

int part_coarsen_map(const part_graph_t *g, int max_groups, int *map) {
  int n = g->n_groups, left = n;
  if (max_groups < 1) max_groups = 1;
  int *par = part_calloc(1, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) par[i] = i;
  if (n > max_groups) {
    /* Chains first: a producer whose only consumer reads only it; placing the
     * two apart would only add a copy in a sequential schedule. */
    int *outd = part_calloc((size_t)n + 1, sizeof(int)), *ind = part_calloc((size_t)n + 1, sizeof(int));
    for (int e = 0; e < g->n_edges; e++) {
      outd[g->edges[e].src]++;
      ind[g->edges[e].dst]++;
    }
    for (int e = 0; e < g->n_edges && left > max_groups; e++) {
      const part_edge_t *E = &g->edges[e];
      if (outd[E->src] != 1 || ind[E->dst] != 1) continue;
      int a = uf_find(par, E->src), b = uf_find(par, E->dst);
      if (a != b) {
        par[b] = a;
        left--;
      }
    }
    free(outd);
    free(ind);
  }
  if (left > max_groups && g->n_edges) {
    part_edge_t *es = part_calloc(1, sizeof(*es) * (size_t)g->n_edges);
    memcpy(es, g->edges, sizeof(*es) * (size_t)g->n_edges);
    qsort(es, (size_t)g->n_edges, sizeof *es, cmp_edge_desc);
    for (int e = 0; e < g->n_edges && left > max_groups; e++) {
      int a = uf_find(par, es[e].src), b = uf_find(par, es[e].dst);
      if (a != b) {
        par[b] = a;
        left--;
      }
    }
    free(es);
  }
  for (int i = 1; i < n && left > max_groups; i++) {
    int a = uf_find(par, i - 1), b = uf_find(par, i);
    if (a != b) {
      par[b] = a;
      left--;
    }
  }
  int *id = part_calloc(1, sizeof(int) * (size_t)(n + 1)), k = 0;
  for (int i = 0; i < n; i++) id[i] = -1;
  for (int i = 0; i < n; i++) {
    int r = uf_find(par, i);
    if (id[r] < 0) id[r] = k++;
    map[i] = id[r];
  }
  free(id);
  free(par);
  return k;
}
