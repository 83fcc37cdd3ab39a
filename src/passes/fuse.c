/* Elementwise fusion: groups of connected pointwise nodes of the main graph
 * become one FusedElementwise node (src/ops/fused.c), one kernel instead of one
 * per node, so a chain such as BERT's exported GELU (Div, Erf, Add, Mul, Mul)
 * reads and writes the tensor once and pays one launch.
 *
 * A node may join a group when its operator's lowering answers capture mode
 * (ops_ew_lower_map's operators and Cast; ops_fused_can_fuse), every value it touches is a static tensor of f16, bf16,
 * f32, f64, an integer type or bool, and its output has the shape of the
 * group's nodes (the fused kernel rounds each f16/bf16 result as the separate
 * node's store did; float8 types stay out). Greedy, in topological order: a node
 * joins the group of one of its producers unless that would make a cycle (the
 * group reaching, through other nodes or groups, a value the node reads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/fused.h"
#include "passes/passes.h"

typedef struct fuse {
  fir_model_t *m;
  fir_graph_t *g;
  fl_arena_t *a;
  int n;             /* nodes of g when the pass started */
  bool *ok;          /* node may join a group */
  int *grp;          /* node -> group, -1 none */
  int **members;     /* group -> node indices, in topological order */
  int *n_members, *cap_members;
  int n_groups;
  int **reads;       /* node -> producer node indices of every value it reads (subgraphs included) */
  int *n_reads;
  int *stamp, cur;   /* visit marks of the reachability walk */
  int *stack;
} fuse_t;

static bool dtype_ok(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT16: case FLAGOS_BFLOAT16: case FLAGOS_FLOAT32: case FLAGOS_FLOAT64: case FLAGOS_INT8: case FLAGOS_INT16: case FLAGOS_INT32:
  case FLAGOS_INT64: case FLAGOS_UINT8: case FLAGOS_UINT16: case FLAGOS_UINT32: case FLAGOS_UINT64:
  case FLAGOS_BOOL:
    return true;
  default:
    return false;
  }
}

bool pass_fusable_value(const fir_value_t *v) {
  return !v || (v->type->kind == FIR_TYPE_TENSOR && fir_type_is_static(v->type) && dtype_ok(v->type->dtype));
}

static bool node_ok(fuse_t *f, const fir_node_t *n) {
  if (n->n_outputs != 1 || !n->outputs[0] || !pass_fusable_value(n->outputs[0])) return false;
  for (int k = 0; k < n->n_inputs; k++)
    if (!pass_fusable_value(n->inputs[k])) return false;
  return ops_fused_can_fuse(f->a, n);
}

static bool same_shape(const fir_node_t *x, const fir_node_t *y) {
  const fir_type_t *a = x->outputs[0]->type, *b = y->outputs[0]->type;
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i].value != b->dims[i].value) return false;
  return true;
}

static void add_read(fuse_t *f, int node, const fir_value_t *v) {
  if (!v || v->graph != f->g || !v->producer || v->producer->graph != f->g) return;
  int p = v->producer->id;
  for (int i = 0; i < f->n_reads[node]; i++)
    if (f->reads[node][i] == p) return;
  f->reads[node][f->n_reads[node]++] = p;
}

static void count_read(fir_value_t *v, void *ctx) {
  (void)v;
  ++*(int *)ctx;
}

/* Outer values a subgraph reads are inputs of the node that owns it. */
typedef struct {
  fuse_t *f;
  int node;
} read_ctx_t;

static void note_read(fir_value_t *v, void *ctx) {
  read_ctx_t *r = ctx;
  add_read(r->f, r->node, v);
}

static void collect_reads(fuse_t *f, int i) {
  const fir_node_t *n = f->g->nodes[i];
  int cap = n->n_inputs;
  fir_node_subgraph_reads(n, count_read, &cap);
  f->reads[i] = fl_arena_alloc(f->a, sizeof(int) * (size_t)(cap + 1));
  for (int k = 0; k < n->n_inputs; k++) add_read(f, i, n->inputs[k]);
  read_ctx_t rc = {f, i};
  fir_node_subgraph_reads(n, note_read, &rc);
}

/* True when group G reaches node q in the graph where every group is one node:
 * a walk back from q that, on meeting a member of a group, goes on from all of
 * that group's members. */
static bool group_reaches(fuse_t *f, int G, int q) {
  f->cur++;
  int sp = 0;
  f->stack[sp++] = q;
  f->stamp[q] = f->cur;
  while (sp > 0) {
    int x = f->stack[--sp];
    if (f->grp[x] == G) return true;
    int h = f->grp[x];
    for (int i = 0; h >= 0 && i < f->n_members[h]; i++) {
      int y = f->members[h][i];
      if (f->stamp[y] != f->cur) {
        f->stamp[y] = f->cur;
        f->stack[sp++] = y;
      }
    }
    for (int i = 0; i < f->n_reads[x]; i++) {
      int y = f->reads[x][i];
      if (f->stamp[y] != f->cur) {
        f->stamp[y] = f->cur;
        f->stack[sp++] = y;
      }
    }
  }
  return false;
}

static bool can_join(fuse_t *f, int G, int i) {
  for (int k = 0; k < f->n_reads[i]; k++) {
    int q = f->reads[i][k];
    if (f->grp[q] != G && group_reaches(f, G, q)) return false;
  }
  return true;
}

static void join(fuse_t *f, int G, int i) {
  if (f->n_members[G] == f->cap_members[G]) {
    int nc = f->cap_members[G] ? f->cap_members[G] * 2 : 4;
    int *nm = fl_arena_alloc(f->a, sizeof(int) * (size_t)nc);
    if (f->n_members[G]) memcpy(nm, f->members[G], sizeof(int) * (size_t)f->n_members[G]);
    f->members[G] = nm;
    f->cap_members[G] = nc;
  }
  f->members[G][f->n_members[G]++] = i;
  f->grp[i] = G;
}

/* Groups G and H may become one when neither reaches the other through a node
 * or group outside both (a direct edge between them is fine). */
static bool can_merge(fuse_t *f, int G, int H) {
  for (int pass = 0; pass < 2; pass++) {
    int from = pass ? H : G, to = pass ? G : H;
    for (int i = 0; i < f->n_members[to]; i++) {
      int x = f->members[to][i];
      for (int k = 0; k < f->n_reads[x]; k++) {
        int q = f->reads[x][k];
        if (f->grp[q] != G && f->grp[q] != H && group_reaches(f, from, q)) return false;
      }
    }
  }
  return true;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static void merge(fuse_t *f, int G, int H) {
  for (int i = 0; i < f->n_members[H]; i++) join(f, G, f->members[H][i]);
  f->n_members[H] = 0;
  /* Members stay in the graph's (topological) order: the body's node order. */
  qsort(f->members[G], (size_t)f->n_members[G], sizeof(int), cmp_int);
}

/* The group of node i's producer through input k when i could join it, else -1. */
static int candidate(fuse_t *f, int i, int k) {
  const fir_node_t *n = f->g->nodes[i];
  const fir_value_t *v = n->inputs[k];
  if (!v || v->graph != f->g || !v->producer || v->producer->graph != f->g) return -1;
  int p = v->producer->id;
  if (!f->ok[p] || f->grp[p] < 0 || !same_shape(f->g->nodes[p], n)) return -1;
  return f->grp[p];
}

static void form_groups(fuse_t *f) {
  for (int i = 0; i < f->n; i++) {
    if (!f->ok[i]) continue;
    const fir_node_t *n = f->g->nodes[i];
    int G = -1;
    for (int k = 0; k < n->n_inputs && G < 0; k++) {
      int c = candidate(f, i, k);
      if (c >= 0 && can_join(f, c, i)) G = c;
    }
    if (G < 0) {
      join(f, f->n_groups++, i);
      continue;
    }
    join(f, G, i);
    /* A node that reads two groups (the end of a GELU, a residual Add) joins them. */
    for (int k = 0; k < n->n_inputs; k++) {
      int H = candidate(f, i, k);
      if (H >= 0 && H != G && can_merge(f, G, H)) merge(f, G, H);
    }
  }
}

static const char *body_value_name(fir_model_t *m, const char *orig) {
  return fir_fresh_name(m, strlen(orig) < 200 ? orig : "fused_value");
}

/* Replaces group G's members by one FusedElementwise node appended to g. */
static void build_fused(fuse_t *f, int G, bool *used_outside, fir_value_t **bmap, bool *dead) {
  fir_model_t *m = f->m;
  fir_graph_t *g = f->g;
  int nm = f->n_members[G];
  const fir_node_t *first = g->nodes[f->members[G][0]];
  const char *name = first->name[0] ? fl_arena_printf(m->arena, "%s_fused%d", first->name, nm)
                                    : fl_arena_printf(m->arena, "fused%d_%s", nm, first->op_type);
  fir_graph_t *body = fir_graph_create(m, g, name);
  int cap = 0;
  for (int i = 0; i < nm; i++) cap += g->nodes[f->members[G][i]]->n_inputs + 1;
  fir_value_t **ext_in = fl_arena_alloc(f->a, sizeof(*ext_in) * (size_t)cap);
  fir_value_t **ext_out = fl_arena_alloc(f->a, sizeof(*ext_out) * (size_t)cap);
  int n_in = 0, n_out = 0;
  for (int i = 0; i < nm; i++) {
    const fir_node_t *n = g->nodes[f->members[G][i]];
    fir_value_t **bin = fl_arena_alloc(f->a, sizeof(*bin) * (size_t)(n->n_inputs + 1));
    for (int k = 0; k < n->n_inputs; k++) {
      fir_value_t *v = n->inputs[k];
      if (!v) continue;
      if (!bmap[v->id]) { /* not made by an earlier member: an input of the group */
        bmap[v->id] = fir_value_create(body, body_value_name(m, v->name), fir_type_clone(m, v->type));
        fir_graph_add_input(body, bmap[v->id]);
        ext_in[n_in++] = v;
      }
      bin[k] = bmap[v->id];
    }
    fir_value_t *o = n->outputs[0];
    bmap[o->id] = fir_value_create(body, body_value_name(m, o->name), fir_type_clone(m, o->type));
    fir_node_t *bn = fir_node_create(body, n->op_type, n->domain, n->name, n->n_inputs, bin, 1, &bmap[o->id]);
    bn->n_attrs = n->n_attrs;
    bn->attrs = n->attrs;
    if (used_outside[o->id]) {
      fir_graph_add_output(body, bmap[o->id]);
      ext_out[n_out++] = o;
    }
    dead[n->id] = true;
  }
  for (int i = 0; i < nm; i++) {
    const fir_node_t *n = g->nodes[f->members[G][i]];
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k]) bmap[n->inputs[k]->id] = NULL;
    bmap[n->outputs[0]->id] = NULL;
  }
  fir_node_t *fn = fir_node_create(g, OPS_FUSED_OP, OPS_FUSED_DOMAIN, name, n_in, ext_in, n_out, ext_out);
  fir_node_add_attr(fn, OPS_FUSED_BODY, FIR_ATTR_GRAPH)->g = body;
  if (getenv("FLAGOS_FUSE_TRACE")) {
    fprintf(stderr, "flagos fuse: '%s' =", name);
    for (int i = 0; i < nm; i++) fprintf(stderr, " %s", g->nodes[f->members[G][i]]->op_type);
    fprintf(stderr, " (%d inputs, %d outputs)\n", n_in, n_out);
  }
}

flagos_status_t pass_fuse_elementwise(fir_model_t *m, int *n_fused) {
  if (n_fused) *n_fused = 0;
  if (pass_fusion_off(m, NULL)) return NULL;
  fir_graph_t *g = m->graph;
  fuse_t f = {.m = m, .g = g, .a = fl_arena_create(), .n = g->n_nodes};
  int n = f.n;
  f.ok = fl_arena_alloc(f.a, sizeof(bool) * (size_t)n);
  f.grp = fl_arena_alloc(f.a, sizeof(int) * (size_t)n);
  f.members = fl_arena_alloc(f.a, sizeof(int *) * (size_t)n);
  f.n_members = fl_arena_alloc(f.a, sizeof(int) * (size_t)n);
  f.cap_members = fl_arena_alloc(f.a, sizeof(int) * (size_t)n);
  f.reads = fl_arena_alloc(f.a, sizeof(int *) * (size_t)n);
  f.n_reads = fl_arena_alloc(f.a, sizeof(int) * (size_t)n);
  f.stamp = fl_arena_alloc(f.a, sizeof(int) * (size_t)n);
  f.stack = fl_arena_alloc(f.a, sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) g->nodes[i]->id = i;
  for (int i = 0; i < n; i++) {
    f.grp[i] = -1;
    collect_reads(&f, i);
    f.ok[i] = node_ok(&f, g->nodes[i]);
  }
  form_groups(&f);

  /* A member's output leaves the group when a graph output or a node outside it reads it. */
  bool *used_outside = fl_arena_alloc(f.a, sizeof(bool) * (size_t)(g->n_values + 1));
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] && g->outputs[i]->graph == g) used_outside[g->outputs[i]->id] = true;
  for (int i = 0; i < n; i++) {
    const fir_node_t *x = g->nodes[i];
    for (int k = 0; k < x->n_inputs; k++) {
      const fir_value_t *v = x->inputs[k];
      if (!v || v->graph != g || !v->producer || v->producer->graph != g) continue;
      if (f.grp[v->producer->id] != f.grp[i] || f.grp[i] < 0) used_outside[v->id] = true;
    }
    /* A subgraph's reads count as the owner's (never a member). */
    for (int k = 0; k < f.n_reads[i]; k++) {
      const fir_node_t *p = g->nodes[f.reads[i][k]];
      if (f.grp[i] < 0)
        for (int o = 0; o < p->n_outputs; o++)
          if (p->outputs[o]) used_outside[p->outputs[o]->id] = true;
    }
  }
  fir_value_t **bmap = fl_arena_alloc(f.a, sizeof(*bmap) * (size_t)(g->n_values + 1));
  bool *dead = fl_arena_alloc(f.a, sizeof(bool) * (size_t)(n + f.n_groups + 1));
  int fused = 0;
  for (int G = 0; G < f.n_groups; G++) {
    bool read = false; /* DCE ran first, so this only guards against a node with no outputs */
    for (int i = 0; i < f.n_members[G]; i++) read = read || used_outside[g->nodes[f.members[G][i]]->outputs[0]->id];
    if (f.n_members[G] < 2 || !read) continue;
    if (fir_model_opset(m, OPS_FUSED_DOMAIN) < 0) fir_model_set_opset(m, OPS_FUSED_DOMAIN, 1);
    build_fused(&f, G, used_outside, bmap, dead);
    fused++;
  }
  if (fused) fir_graph_remove_nodes(g, dead);
  fl_arena_destroy(f.a);
  if (!fused) return NULL;
  FL_TRY(pass_fusion_settle(m, OPS_FUSED_OP, OPS_FUSED_DOMAIN, "elementwise fusion"));
  if (n_fused) *n_fused = fused;
  return NULL;
}
