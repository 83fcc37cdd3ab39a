/* Runtime internals: loaded bundles, plugins, sessions. Never parses ONNX. */
#ifndef FLAGOS_RUNTIME_H
#define FLAGOS_RUNTIME_H

#include "bundle/bundle.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "ir/ir.h"
#include "kernel/kir.h"
#include "ops/ops.h"

typedef struct rt_step {
  const char *kernel;
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
} rt_node_t;

struct flagos_bundle_s {
  bundle_file_t *file;
  fir_model_t *model;
  fl_arena_t *arena;
  int n_nodes;
  rt_node_t *nodes;
  const void *code_cpu;
  size_t code_cpu_len;
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
