/* Runtime internals: loaded bundles, plugins, sessions. Never parses ONNX. */
#ifndef FLAGOS_RUNTIME_H
#define FLAGOS_RUNTIME_H

#include "bundle/bundle.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "ir/ir.h"
#include "kernel/kir.h"
#include "ops/ops.h"

typedef struct rt_plan rt_plan_t;

typedef struct rt_step {
  const char *kernel;
  int kid; /* index into the bundle's kernel list (the session resolves each once) */
  int n_binds;
  ops_bind_t *binds;
  kir_expr_t *work;
  const char *lc_name; /* NULL: no library call */
  int lc_n_bufs;
  int *lc_bufs;
  int lc_n_ints;
  kir_expr_t **lc_ints;
  int lc_n_floats;
  double *lc_floats;
  bool lc_ends_node; /* the call computes the node's outputs: taken, the later steps are skipped */
  int lc_skip;       /* taken, the next lc_skip steps are skipped (kir_libcall_t.skip) */
} rt_step_t;

typedef struct rt_node {
  fir_node_t *node;
  const ops_def_t *def;
  bool is_static;
  int n_syms, param_base, n_params;
  int n_temps;
  flagos_dtype_t *temp_dtype;
  kir_expr_t **temp_numel;
  int n_steps;
  rt_step_t *steps;
  bool host;              /* executed by the runtime (src/runtime/host_ops.c) */
  int n_sub;              /* subgraph plans, by attribute name */
  const char **sub_attr;
  rt_plan_t **sub;
  int n_captures;         /* values of this node's graph read inside its subgraphs */
  fir_value_t **captures;
  /* profiling (src/runtime/profile.c) */
  const char *group;      /* the kernel group this node runs as (manifest "group"), for traces */
  double flops;           /* useful FLOPs per execution from the manifest; < 0: computed at run time */
} rt_node_t;

/* The nodes of one graph (the main graph or a subgraph), with use counts. */
struct rt_plan {
  fir_graph_t *graph;
  int n_nodes;
  rt_node_t *nodes;
  int *uses;       /* per value id of graph: consumers (inputs and captures) */
  bool *is_output; /* per value id: a graph output, kept to the end */
};

/* The plan of subgraph attribute `attr` of node rn, or NULL. */
const rt_plan_t *rt_node_subplan(const rt_node_t *rn, const char *attr);

struct flagos_bundle_s {
  bundle_file_t *file;
  fir_model_t *model;
  fl_arena_t *arena;
  rt_plan_t main;
  int n_kernels, cap_kernels;
  const char **kernel_names;
  int n_code;        /* compiled kernels, one blob per target (manifest "kernels") */
  struct {
    const char *target, *format;
    const void *data;
    size_t size;
  } code[8];
};

/* Takes ownership of f (closed on failure too). */
flagos_status_t rt_bundle_from_file(bundle_file_t *f, flagos_bundle_t **out);

/* ---- plugins ---- */
typedef struct rt_backend {
  const flagos_backend_t *api;
  void *state;
  const char *name;
} rt_backend_t;
/* Loads (once per process) and returns the backend plugin `name`. */
flagos_status_t rt_backend_get(const char *name, rt_backend_t **out);
/* Lists the plugins found on the search path (names into out, up to max). */
int rt_backend_list(const char **out, int max);

#endif
