#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/bundle.h"
#include "compiler/compiler.h"
#include "frontend/onnx/onnx_import.h"
#include "ops/ops.h"
#include "ops/ops_string.h"
#include "passes/passes.h"

flagos_status_t compiler_parse_targets(const char *spec, const char **targets, int max, int *n) {
  *n = 0;
  if (!spec || !*spec) spec = "cpu";
  char buf[256];
  snprintf(buf, sizeof buf, "%s", spec);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    const compiler_target_t *found = compiler_find_target(t);
    if (!found) return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "unknown target '%s' (this build supports: %s)", t, compiler_target_names());
    bool dup = false;
    for (int i = 0; i < *n; i++) dup = dup || strcmp(targets[i], found->name) == 0;
    if (!dup && *n < max) targets[(*n)++] = found->name;
  }
  return NULL;
}

/* Everything lowered for one node, kept until the manifest is written. */
typedef struct lowered {
  const fir_node_t *node;
  ops_ctx_t *ctx;
} lowered_t;

static flagos_status_t lower_node(fl_arena_t *a, const fir_node_t *n, const char *prefix, int index, lowered_t *out) {
  const ops_def_t *d = ops_find(n->op_type, n->domain);
  if (!d)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "unsupported operator %s (domain '%s', opset %d) at node '%s'", n->op_type,
                  n->domain[0] ? n->domain : "ai.onnx", n->opset, n->name);
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *o = fl_arena_alloc(a, sizeof(*o) * (size_t)(n->n_outputs + 1));
  for (int k = 0; k < n->n_inputs; k++) ops_info_from_value(&in[k], n->inputs[k]);
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  ops_ctx_init(c, a, n, in, o, false);
  FL_TRY(ops_ctx_infer(c, d));
  /* The lowering sees the types inference settled on (declared dims filled in). */
  for (int k = 0; k < n->n_outputs; k++) {
    const fir_value_t *v = n->outputs[k];
    if (!v || !o[k].present || v->type->kind != FIR_TYPE_TENSOR || o[k].kind != FIR_TYPE_TENSOR) continue;
    for (int i = 0; i < o[k].rank && i < v->type->rank; i++)
      if (o[k].dims[i] < 0 && v->type->dims[i].value >= 0) o[k].dims[i] = v->type->dims[i].value;
  }
  c->kernel_prefix = fl_arena_printf(a, "%sn%d_%s", prefix, index, n->op_type);
  if (!d->lower) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "operator has no lowering");
  FL_TRY(d->lower(c));
  out->node = n;
  out->ctx = c;
  return NULL;
}

static char *expr_text(const kir_expr_t *e) {
  fl_buf_t b = {0};
  kir_print_expr(&b, e);
  return fl_buf_take(&b);
}

static void add_expr(cJSON *obj, const char *key, const kir_expr_t *e) {
  char *s = expr_text(e);
  cJSON_AddStringToObject(obj, key, s);
  free(s);
}

static const char *bind_kind_name(ops_bind_kind_t k) {
  return k == OPS_BIND_INPUT ? "in" : k == OPS_BIND_OUTPUT ? "out" : "temp";
}

static cJSON *node_json(const lowered_t *l, int index) {
  const ops_ctx_t *c = l->ctx;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddNumberToObject(j, "index", index);
  cJSON_AddStringToObject(j, "op", l->node->op_type);
  cJSON_AddStringToObject(j, "name", l->node->name);
  cJSON_AddBoolToObject(j, "static", c->is_static);
  cJSON_AddStringToObject(j, "group", c->kernel_prefix);
  cJSON_AddNumberToObject(j, "n_syms", c->n_syms);
  cJSON_AddNumberToObject(j, "param_base", c->param_base);
  cJSON_AddNumberToObject(j, "n_params", c->n_params);
  /* Useful FLOPs (docs/eaf.md) when compile time knows every dim; otherwise the
   * runtime's profiler computes them on the concrete shapes after inference. */
  double flops = ops_node_flops(ops_find(l->node->op_type, l->node->domain), c);
  if (flops >= 0) cJSON_AddNumberToObject(j, "flops", flops);
  cJSON *temps = cJSON_AddArrayToObject(j, "temps");
  for (int t = 0; t < c->n_temps; t++) {
    cJSON *tj = cJSON_CreateObject();
    cJSON_AddStringToObject(tj, "dtype", flagos_dtype_name(c->temps[t].dtype));
    add_expr(tj, "numel", c->temps[t].numel);
    cJSON_AddItemToArray(temps, tj);
  }
  cJSON *steps = cJSON_AddArrayToObject(j, "steps");
  for (int s = 0; s < c->n_steps; s++) {
    const ops_step_t *st = &c->steps[s];
    const kir_kernel_t *k = st->kernel;
    cJSON *sj = cJSON_CreateObject();
    cJSON_AddStringToObject(sj, "kernel", k->name);
    cJSON *binds = cJSON_AddArrayToObject(sj, "binds");
    for (int b = 0; b < k->n_bufs; b++) {
      cJSON *bj = cJSON_CreateArray();
      cJSON_AddItemToArray(bj, cJSON_CreateString(bind_kind_name(st->binds[b].kind)));
      cJSON_AddItemToArray(bj, cJSON_CreateNumber(st->binds[b].index));
      cJSON_AddItemToArray(binds, bj);
    }
    kir_expr_t *work = kir_i64(c->arena, 1);
    for (int r = 0; r < k->rank; r++) work = kir_mul(c->arena, work, k->extents[r]);
    add_expr(sj, "work", work);
    if (k->libcall) {
      const kir_libcall_t *lc = k->libcall;
      cJSON *lj = cJSON_AddObjectToObject(sj, "libcall");
      cJSON_AddStringToObject(lj, "name", lc->name);
      cJSON *lb = cJSON_AddArrayToObject(lj, "bufs");
      for (int i = 0; i < lc->n_bufs; i++) cJSON_AddItemToArray(lb, cJSON_CreateNumber(lc->bufs[i]));
      cJSON *li = cJSON_AddArrayToObject(lj, "ints");
      for (int i = 0; i < lc->n_ints; i++) {
        char *s = expr_text(lc->ints[i]);
        cJSON_AddItemToArray(li, cJSON_CreateString(s));
        free(s);
      }
      cJSON *lf = cJSON_AddArrayToObject(lj, "floats");
      for (int i = 0; i < lc->n_floats; i++) cJSON_AddItemToArray(lf, cJSON_CreateNumber(lc->floats[i]));
      if (lc->ends_node) cJSON_AddBoolToObject(lj, "ends_node", true);
      if (lc->skip && !lc->ends_node) cJSON_AddNumberToObject(lj, "skip", lc->skip);
    }
    cJSON_AddItemToArray(steps, sj);
  }
  return j;
}

/* Numeric initializers go to the weights section (referenced from the FlagIR text
 * as @w<N>); string initializers stay inline in the text. */
static void collect_weights(fir_graph_t *g, fl_buf_t *weights, cJSON *arr, int64_t *next_ref) {
  for (int i = 0; i < g->n_nodes; i++)
    for (int at = 0; at < g->nodes[i]->n_attrs; at++)
      if (g->nodes[i]->attrs[at].kind == FIR_ATTR_GRAPH && g->nodes[i]->attrs[at].g)
        collect_weights(g->nodes[i]->attrs[at].g, weights, arr, next_ref);
  for (int i = 0; i < g->n_values; i++) {
    fir_tensor_t *t = g->values[i]->init;
    if (!t || !t->data || t->dtype == FLAGOS_STRING) continue;
    fl_buf_align(weights, 64);
    cJSON *w = cJSON_CreateObject();
    cJSON_AddNumberToObject(w, "ref", (double)*next_ref);
    cJSON_AddStringToObject(w, "value", g->values[i]->name);
    cJSON_AddNumberToObject(w, "offset", (double)weights->len);
    cJSON_AddNumberToObject(w, "nbytes", (double)t->nbytes);
    cJSON_AddItemToArray(arr, w);
    fl_buf_append(weights, t->data, t->nbytes);
    t->ref = (*next_ref)++;
  }
}

typedef struct graph_compile {
  fl_arena_t *a;
  kir_kernel_t **kernels;
  int n_kernels, cap_kernels;
} graph_compile_t;

/* A node runs in the runtime when its operator says so, when it passes
 * sequences/optionals through (Identity), or when it touches a string tensor
 * (kernel IR cannot hold strings). */
static bool is_host_node(const fir_node_t *n, const ops_def_t *d) {
  if (d && d->host) return true;
  if (ops_str_node_has_strings(n)) return true;
  for (int k = 0; k < n->n_inputs; k++)
    if (n->inputs[k] && n->inputs[k]->type->kind != FIR_TYPE_TENSOR) return true;
  for (int k = 0; k < n->n_outputs; k++)
    if (n->outputs[k] && n->outputs[k]->type->kind != FIR_TYPE_TENSOR) return true;
  return false;
}

/* Compiles the nodes of g (and, recursively, of their subgraphs) into manifest
 * entries appended to `out`; kernels are collected in gc. Kernel names carry the
 * path of subgraphs so every kernel of the bundle has its own name. */
static flagos_status_t compile_graph(graph_compile_t *gc, fir_graph_t *g, const char *prefix, cJSON *out) {
  for (int i = 0; i < g->n_nodes; i++) {
    fir_node_t *n = g->nodes[i];
    const ops_def_t *d = ops_find(n->op_type, n->domain);
    if (is_host_node(n, d)) {
      if (!d || (!d->host && strcmp(n->op_type, "Identity") != 0 && !ops_str_runtime_runs(n))) {
        if (ops_str_node_has_strings(n))
          return FL_ERR(FLAGOS_ERR_UNSUPPORTED,
                        "%s node '%s': string tensors are not supported by this operator (the runtime runs strings through "
                        "the string operators, Equal, Cast, CastLike, LabelEncoder and the sequence operators)",
                        n->op_type, n->name);
        return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s node '%s': sequences and optionals are not supported as its inputs or outputs",
                      n->op_type, n->name);
      }
      cJSON *j = cJSON_CreateObject();
      cJSON_AddNumberToObject(j, "index", i);
      cJSON_AddStringToObject(j, "op", n->op_type);
      cJSON_AddStringToObject(j, "name", n->name);
      cJSON_AddBoolToObject(j, "host", true);
      cJSON *subs = cJSON_AddArrayToObject(j, "subgraphs");
      cJSON_AddItemToArray(out, j);
      for (int at = 0; at < n->n_attrs; at++) {
        if (n->attrs[at].kind != FIR_ATTR_GRAPH || !n->attrs[at].g) continue;
        cJSON *sj = cJSON_CreateObject();
        cJSON_AddStringToObject(sj, "attr", n->attrs[at].name);
        cJSON *sn = cJSON_AddArrayToObject(sj, "nodes");
        cJSON_AddItemToArray(subs, sj);
        char *sp = fl_arena_printf(gc->a, "%sn%dg%d_", prefix, i, at);
        FL_TRY(flagos_status_wrap(compile_graph(gc, n->attrs[at].g, sp, sn), "in subgraph '%s' of %s node '%s'",
                                  n->attrs[at].name, n->op_type, n->name));
      }
      continue;
    }
    lowered_t lw = {0};
    FL_TRY(lower_node(gc->a, n, prefix, i, &lw));
    cJSON_AddItemToArray(out, node_json(&lw, i));
    for (int s = 0; s < lw.ctx->n_steps; s++) {
      if (gc->n_kernels == gc->cap_kernels) {
        int nc = gc->cap_kernels ? gc->cap_kernels * 2 : 64;
        kir_kernel_t **nk = fl_arena_alloc(gc->a, sizeof(*nk) * (size_t)nc);
        if (gc->n_kernels) memcpy(nk, gc->kernels, sizeof(*nk) * (size_t)gc->n_kernels);
        gc->kernels = nk;
        gc->cap_kernels = nc;
      }
      gc->kernels[gc->n_kernels++] = lw.ctx->steps[s].kernel;
    }
  }
  return NULL;
}

/* The model's useful FLOPs per run: the sum over the main graph's nodes. It is
 * complete only when every node's count was known at compile time and no node
 * runs subgraphs (a Loop's trip count is data); the profiler counts exactly. */
static void model_flops(cJSON *root, const cJSON *nodes) {
  double total = 0;
  bool complete = true;
  const cJSON *n;
  cJSON_ArrayForEach(n, nodes) {
    const cJSON *f = cJSON_GetObjectItem(n, "flops");
    if (cJSON_IsNumber(f)) total += f->valuedouble;
    else if (!cJSON_IsTrue(cJSON_GetObjectItem(n, "host"))) complete = false;
    if (cJSON_GetArraySize(cJSON_GetObjectItem(n, "subgraphs")) > 0) complete = false;
  }
  cJSON_AddNumberToObject(root, "flops", total);
  cJSON_AddBoolToObject(root, "flops_complete", complete);
}

flagos_status_t compiler_build_bundle(fir_model_t *m, const flagos_compile_options_t *opts, void **image, size_t *size) {
  return compiler_build_bundle_ex(m, opts, NULL, image, size);
}

flagos_status_t compiler_build_bundle_ex(fir_model_t *m, const flagos_compile_options_t *opts,
                                         const compiler_plan_options_t *plan, void **image, size_t *size) {
  flagos_compile_options_t dflt = {0};
  if (!opts) opts = &dflt;
  const char *targets[8];
  int n_targets;
  FL_TRY(compiler_parse_targets(opts->targets, targets, 8, &n_targets));
  FL_TRY(pass_run_default(m, opts->shapes));
  FL_TRY(fir_verify(m));

  fir_graph_t *g = m->graph;
  for (int i = 0; i < g->n_inputs; i++)
    if (g->inputs[i]->type->kind == FIR_TYPE_TENSOR && g->inputs[i]->type->rank < 0)
      return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "input '%s' has unknown rank; FlagOS needs ranks at compile time",
                    g->inputs[i]->name);

  fl_arena_t *a = fl_arena_create();
  graph_compile_t gc = {a, NULL, 0, 0};
  cJSON *nj = cJSON_CreateArray();
  flagos_status_t st = compile_graph(&gc, g, "", nj);
  kir_kernel_t **kernels = gc.kernels;
  int n_kernels = gc.n_kernels;
  fl_buf_t src[8] = {{0}}, weights = {0}, irtext = {0};
  void *code[8] = {0};
  size_t code_len[8] = {0};
  char *manifest = NULL, *plan_json = NULL, *sla_json = NULL;
  if (!st && plan && plan->sla_path) st = compiler_plan(g, nj, targets, n_targets, plan, &plan_json, &sla_json);
  for (int t = 0; t < n_targets && !st; t++) {
    st = compiler_find_target(targets[t])->build(kernels, n_kernels, opts, &src[t], &code[t], &code_len[t]);
    if (st) st = flagos_status_wrap(st, "target %s", targets[t]);
  }
  if (!st) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "format", FLAGOS_MANIFEST_FORMAT);
    cJSON_AddStringToObject(root, "flagos_version", FLAGOS_VERSION_STRING);
    cJSON *tj = cJSON_AddArrayToObject(root, "targets");
    for (int i = 0; i < n_targets; i++) cJSON_AddItemToArray(tj, cJSON_CreateString(targets[i]));
    cJSON *kj = cJSON_AddObjectToObject(root, "kernels");
    for (int i = 0; i < n_targets; i++) {
      cJSON *tk = cJSON_AddObjectToObject(kj, targets[i]);
      char sec[64];
      snprintf(sec, sizeof sec, "kernels.%s", targets[i]);
      cJSON_AddStringToObject(tk, "section", sec);
      cJSON_AddStringToObject(tk, "format", compiler_find_target(targets[i])->code_format);
    }
    cJSON *wj = cJSON_AddArrayToObject(root, "weights");
    int64_t next_ref = 0;
    collect_weights(g, &weights, wj, &next_ref);
    model_flops(root, nj);
    if (plan_json) {
      cJSON *pj = cJSON_AddObjectToObject(root, "plan");
      cJSON_AddStringToObject(pj, "section", "plan");
      cJSON_AddStringToObject(pj, "sla", "sla");
    }
    cJSON_AddItemToObject(root, "nodes", nj);
    nj = NULL;
    manifest = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    fir_print(&irtext, m, false);
  }
  if (!st) {
    bundle_writer_t *w = bundle_writer_create();
    st = bundle_writer_add(w, "manifest", manifest, strlen(manifest));
    if (!st) st = bundle_writer_add(w, "flagir", irtext.data, irtext.len);
    if (!st) st = bundle_writer_add(w, "weights", weights.data, weights.len);
    if (!st && plan_json) st = bundle_writer_add(w, "plan", plan_json, strlen(plan_json));
    if (!st && sla_json) st = bundle_writer_add(w, "sla", sla_json, strlen(sla_json));
    for (int t = 0; t < n_targets && !st; t++) {
      char sec[64];
      snprintf(sec, sizeof sec, "kernels.%s", targets[t]);
      st = bundle_writer_add(w, sec, code[t], code_len[t]);
      snprintf(sec, sizeof sec, "source.%s", targets[t]);
      if (!st && src[t].len) st = bundle_writer_add(w, sec, src[t].data, src[t].len);
    }
    if (!st) st = bundle_writer_to_memory(w, image, size);
    bundle_writer_destroy(w);
  }
  cJSON_Delete(nj);
  free(manifest);
  free(plan_json);
  free(sla_json);
  for (int t = 0; t < 8; t++) {
    free(code[t]);
    fl_buf_free(&src[t]);
  }
  fl_buf_free(&weights);
  fl_buf_free(&irtext);
  fl_arena_destroy(a);
  return st;
}

flagos_status_t flagos_compile_file(const char *onnx_path, const char *out_path, const flagos_compile_options_t *opts) {
  fir_model_t *m;
  FL_TRY(onnx_import_file(onnx_path, &m));
  void *img = NULL;
  size_t n = 0;
  flagos_status_t st = compiler_build_bundle(m, opts, &img, &n);
  fir_model_destroy(m);
  if (!st) {
    st = fl_write_file(out_path, img, n);
  }
  free(img);
  return st;
}

/* In-memory compile for `flagos run model.onnx`: the bundle never touches disk. */
#include "runtime/runtime.h"
flagos_status_t flagos_compile_to_bundle(const char *onnx_path, const flagos_compile_options_t *opts, flagos_bundle_t **out) {
  fir_model_t *m;
  FL_TRY(onnx_import_file(onnx_path, &m));
  void *img = NULL;
  size_t n = 0;
  flagos_status_t st = compiler_build_bundle(m, opts, &img, &n);
  fir_model_destroy(m);
  if (st) return st;
  bundle_file_t *f;
  st = bundle_file_from_memory(img, n, true, &f);
  if (st) {
    free(img);
    return st;
  }
  return rt_bundle_from_file(f, out);
}
