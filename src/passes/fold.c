/* Constant folding: one walk over the graph infers each node and, when every
 * input it has is a constant, runs the node's own lowering through the kernel IR
 * interpreter and turns its outputs into initializers, so the nodes after it see
 * constant values in the same walk (shape computations such as Shape -> Gather ->
 * Concat -> Reshape settle at compile time). The interpreter has the C emitter's
 * exact semantics, so a folded value is the value the compiled kernel would have
 * produced. A node that cannot be folded (no lowering, a kernel the interpreter
 * refuses, too large) is left as it is: folding never makes compilation fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kir_interp.h"
#include "ops/ops.h"
#include "passes/passes.h"

/* Folded outputs become weights in the bundle: keep them small. */
#define FOLD_MAX_OUT_ELEMS (1 << 20)
#define FOLD_MAX_TEMP_BYTES ((int64_t)256 << 20)

static const char *const k_random_ops[] = {"RandomUniform", "RandomUniformLike", "RandomNormal",
                                           "RandomNormalLike", "Bernoulli", "Multinomial"};

/* Why a node stayed (FLAGOS_FOLD_TRACE=1 prints it: folding is silent otherwise). */
static void trace(const fir_node_t *n, const char *why, flagos_status_t st) {
  const char *env = getenv("FLAGOS_FOLD_TRACE");
  if (env && *env && *env != '0')
    fprintf(stderr, "fold: kept %s node '%s': %s%s%s\n", n->op_type, n->name, why, st ? ": " : "",
            st ? flagos_status_message(st) : "");
  flagos_status_free(st);
}

static void make_constant(fir_model_t *m, fir_value_t *v, fir_tensor_t *t) {
  t->name = v->name;
  v->init = t;
  v->producer = NULL;
  v->type = fir_type_tensor(m, t->dtype, t->rank, t->dims);
}

/* Shape and Size need only the input's static shape, not its data. */
static bool fold_shape_size(fir_model_t *m, fir_node_t *n) {
  if (n->domain[0] || n->n_inputs != 1 || !n->inputs[0] || n->n_outputs != 1 || !n->outputs[0]) return false;
  bool is_shape = strcmp(n->op_type, "Shape") == 0, is_size = strcmp(n->op_type, "Size") == 0;
  if (!is_shape && !is_size) return false;
  const fir_type_t *t = n->inputs[0]->type;
  if (!fir_type_is_static(t)) return false;
  fir_tensor_t *c;
  if (is_size) {
    c = fir_tensor_create(m, FLAGOS_INT64, 0, NULL);
    ((int64_t *)c->data)[0] = fir_type_numel(t);
  } else {
    int64_t r = t->rank, start = n->opset >= 15 ? fir_attr_int(n, "start", 0) : 0;
    int64_t end = n->opset >= 15 ? fir_attr_int(n, "end", r) : r;
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    int64_t len = end > start ? end - start : 0;
    c = fir_tensor_create(m, FLAGOS_INT64, 1, &len);
    for (int64_t j = 0; j < len; j++) ((int64_t *)c->data)[j] = t->dims[start + j].value;
  }
  make_constant(m, n->outputs[0], c);
  return true;
}

/* CastLike(x, like) is Cast(x, to = like's element type) once that type is
 * known: `like` lends its type only. As a Cast the node folds where x is a
 * constant (PyTorch's dynamo exporter computes attention's scale as
 * CastLike(constant, q) followed by Sqrt and Div, three kernels a layer
 * otherwise) and fuses with its neighbours (a CastLike stays out of fused
 * groups, whose loads would read `like`). saturate and round_mode carry over:
 * Cast takes them in every opset CastLike does. */
static void castlike_to_cast(fir_node_t *n) {
  if (n->domain[0] || strcmp(n->op_type, "CastLike") != 0 || n->n_inputs != 2 || !n->inputs[0] || !n->inputs[1])
    return;
  const fir_type_t *t = n->inputs[1]->type;
  if (t->kind != FIR_TYPE_TENSOR || t->dtype == FLAGOS_UNDEFINED || fir_node_attr(n, "to")) return;
  n->op_type = "Cast";
  n->n_inputs = 1;
  fir_node_add_attr(n, "to", FIR_ATTR_INT)->i = t->dtype;
}

static bool numeric(flagos_dtype_t dt) {
  return dt != FLAGOS_UNDEFINED && dt != FLAGOS_STRING && dt != FLAGOS_COMPLEX64 && dt != FLAGOS_COMPLEX128 &&
         dt < FLAGOS_DTYPE_COUNT;
}

static bool is_constant(const fir_value_t *v, const bool *graph_input) {
  return v->init && v->init->data && !graph_input[v->id] && numeric(v->init->dtype);
}

/* Operators that only move or convert data: their work is their output's
 * size, so folding a large one costs the interpreter no more than a copy. */
static const char *const k_moving_ops[] = {"Transpose", "Cast",  "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                                           "Identity",  "Slice", "Gather",  "Concat",  "Split",   "Expand"};

/* What the walk knows of the graph: its inputs (by value id), and the readers
 * of the values that existed when the pass began (n_counted of them; a node
 * keeps its output values when it folds, so their counts hold for the nodes
 * after it; a value made since, an inlined If's, counts as read elsewhere). */
typedef struct fold_walk {
  const bool *graph_input;
  const int *readers;
  int n_counted;
} fold_walk_t;

/* Whether n's outputs (static numeric tensors) may pass FOLD_MAX_OUT_ELEMS:
 * n only moves or converts data (its work is its output's size) and is the one
 * reader of constants its outputs replace, taking no more bytes than they do
 * (the bundle does not grow) nor FOLD_MAX_TEMP_BYTES. PyTorch's dynamo
 * exporter of torch 2.5 transposes each linear layer's matrix at run time:
 * 24 kernels a run in BERT-base. */
static bool replaces_inputs(const fold_walk_t *w, const fir_node_t *n) {
  bool moving = false;
  for (size_t i = 0; i < FL_ARRAY_LEN(k_moving_ops); i++) moving |= strcmp(n->op_type, k_moving_ops[i]) == 0;
  if (!moving || n->domain[0]) return false;
  int64_t freed = 0, bytes = 0;
  for (int k = 0; k < n->n_inputs; k++) {
    const fir_value_t *v = n->inputs[k];
    bool again = false;
    for (int j = 0; j < k && !again; j++) again = n->inputs[j] == v;
    if (v && !again && v->id < w->n_counted && w->readers[v->id] == 1 && is_constant(v, w->graph_input))
      freed += (int64_t)v->init->nbytes;
  }
  for (int k = 0; k < n->n_outputs; k++)
    if (n->outputs[k])
      bytes += fir_type_numel(n->outputs[k]->type) * (int64_t)flagos_dtype_size(n->outputs[k]->type->dtype);
  return bytes <= freed && bytes <= FOLD_MAX_TEMP_BYTES;
}

/* Whether the node may be folded at all, before anything is lowered; *max_out
 * receives the most output elements its folding may make. */
static const char *unfoldable(const fold_walk_t *w, const fir_node_t *n, int64_t *max_out) {
  const bool *graph_input = w->graph_input;
  *max_out = FOLD_MAX_OUT_ELEMS;
  for (size_t i = 0; i < FL_ARRAY_LEN(k_random_ops); i++)
    if (strcmp(n->op_type, k_random_ops[i]) == 0) return "random";
  for (int a = 0; a < n->n_attrs; a++)
    if (n->attrs[a].kind == FIR_ATTR_GRAPH || n->attrs[a].kind == FIR_ATTR_GRAPHS) return "has a subgraph";
  for (int k = 0; k < n->n_inputs; k++)
    if (n->inputs[k] && !is_constant(n->inputs[k], graph_input)) return NULL; /* not all constant: not worth a trace */
  /* Training-mode Dropout draws a random mask, unless its ratio is 0 (the default is 0.5). */
  if (strcmp(n->op_type, "Dropout") == 0 && !n->domain[0] && n->n_inputs > 2 && n->inputs[2] &&
      n->inputs[2]->init->numel > 0 &&
      fl_load_as_int64(n->inputs[2]->init->dtype, n->inputs[2]->init->data, 0) != 0 &&
      !(n->inputs[1] && n->inputs[1]->init->numel > 0 &&
        fl_load_as_double(n->inputs[1]->init->dtype, n->inputs[1]->init->data, 0) == 0.0))
    return "training-mode Dropout";
  int64_t total = 0;
  int present = 0;
  for (int k = 0; k < n->n_outputs; k++) {
    const fir_value_t *v = n->outputs[k];
    if (!v) continue;
    present++;
    if (v->type->kind != FIR_TYPE_TENSOR || !fir_type_is_static(v->type) || !numeric(v->type->dtype))
      return "an output is not a static numeric tensor";
    total += fir_type_numel(v->type);
  }
  if (total > FOLD_MAX_OUT_ELEMS) {
    if (!replaces_inputs(w, n)) return "outputs too large";
    *max_out = total;
  }
  return present ? "" : "no outputs";
}

typedef struct fold_mem {
  void **out, **temp;
  int64_t *out_n, *temp_n;
} fold_mem_t;

/* The memory and element count a kernel buffer is bound to, or false if the binding is unusable. */
static bool bind_mem(const ops_ctx_t *c, const fold_mem_t *mem, const kir_kernel_t *kk, const ops_bind_t *bd, int b,
                     void **p, int64_t *n, flagos_dtype_t *dt) {
  switch (bd->kind) {
  case OPS_BIND_INPUT:
    if (bd->index < 0 || bd->index >= c->n_in || !c->in[bd->index].present || kk->bufs[b].written) return false;
    *p = (void *)c->in[bd->index].value;
    *n = c->in[bd->index].numel;
    *dt = c->in[bd->index].dtype;
    return *p != NULL;
  case OPS_BIND_OUTPUT:
    if (bd->index < 0 || bd->index >= c->n_out || !mem->out[bd->index]) return false;
    *p = mem->out[bd->index];
    *n = mem->out_n[bd->index];
    *dt = c->out[bd->index].dtype;
    return true;
  case OPS_BIND_TEMP:
    if (bd->index < 0 || bd->index >= c->n_temps || !mem->temp[bd->index]) return false;
    *p = mem->temp[bd->index];
    *n = mem->temp_n[bd->index];
    *dt = c->temps[bd->index].dtype;
    return true;
  }
  return false;
}

/* Runs the lowered steps; false (with a reason) when anything is refused. */
static bool run_steps(const ops_ctx_t *c, const fold_mem_t *mem, const int64_t *syms, const char **why,
                      flagos_status_t *st) {
  for (int s = 0; s < c->n_steps; s++) {
    const ops_step_t *step = &c->steps[s];
    const kir_kernel_t *kk = step->kernel;
    void **bufs = calloc((size_t)kk->n_bufs + 1, sizeof(void *));
    if (!bufs) return *why = "out of memory", false;
    bool ok = true;
    for (int b = 0; b < kk->n_bufs && ok; b++) {
      int64_t n, need = 1, d;
      flagos_dtype_t dt;
      ok = step->binds && bind_mem(c, mem, kk, &step->binds[b], b, &bufs[b], &n, &dt) && dt == kk->bufs[b].dtype;
      /* The interpreter trusts buffer sizes: check the kernel's view fits the memory. */
      for (int i = 0; ok && i < kk->bufs[b].rank; i++) {
        ok = kir_eval_int(kk->bufs[b].dims[i], syms, c->n_syms, &d) && d >= 0;
        need = (ok && d > 0 && need > INT64_MAX / d) ? INT64_MAX : need * d;
      }
      ok = ok && need <= n;
    }
    if (!ok) {
      free(bufs);
      return *why = "a kernel buffer's binding does not match", false;
    }
    *st = kir_interp_run(kk, bufs, syms, c->n_syms);
    free(bufs);
    if (*st) return *why = "the interpreter refused a kernel", false;
  }
  return true;
}

/* Lowers node n exactly as the compiler does (compile.c's lower_node) and runs
 * it; on success its outputs become initializers. */
static bool fold_eval(fir_model_t *m, fir_node_t *n, int64_t max_out) {
  const ops_def_t *d = ops_find(n->op_type, n->domain);
  if (!d || !d->lower) return trace(n, "no lowering", NULL), false;
  fl_arena_t *a = fl_arena_create();
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *o = fl_arena_alloc(a, sizeof(*o) * (size_t)(n->n_outputs + 1));
  for (int k = 0; k < n->n_inputs; k++) ops_info_from_value(&in[k], n->inputs[k]);
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  ops_ctx_init(c, a, n, in, o, false);
  const char *why = NULL;
  flagos_status_t st = ops_ctx_infer(c, d);
  fold_mem_t mem = {0};
  bool ok = false;
  if (st) {
    why = "inference failed";
    goto done;
  }
  for (int k = 0; k < n->n_outputs; k++) {
    const fir_value_t *v = n->outputs[k];
    if (!v || !o[k].present || v->type->kind != FIR_TYPE_TENSOR || o[k].kind != FIR_TYPE_TENSOR) continue;
    for (int i = 0; i < o[k].rank && i < v->type->rank; i++)
      if (o[k].dims[i] < 0 && v->type->dims[i].value >= 0) o[k].dims[i] = v->type->dims[i].value;
  }
  if (!c->is_static) {
    why = "not static after inference";
    goto done;
  }
  c->kernel_prefix = fl_arena_printf(a, "fold%d_%s", n->id, n->op_type);
  if ((st = d->lower(c))) {
    why = "lowering failed";
    goto done;
  }
  int64_t *syms = fl_arena_alloc(a, sizeof(int64_t) * (size_t)(c->n_syms + 1));
  ops_ctx_fill_syms(c, syms);
  mem.out = fl_arena_alloc(a, sizeof(void *) * (size_t)(c->n_out + 1));
  mem.out_n = fl_arena_alloc(a, sizeof(int64_t) * (size_t)(c->n_out + 1));
  mem.temp = fl_arena_alloc(a, sizeof(void *) * (size_t)(c->n_temps + 1));
  mem.temp_n = fl_arena_alloc(a, sizeof(int64_t) * (size_t)(c->n_temps + 1));
  for (int k = 0; k < c->n_out; k++) {
    const ops_tensor_info_t *t = &o[k];
    if (!t->present || t->kind != FIR_TYPE_TENSOR) continue;
    int64_t ne = 1;
    for (int i = 0; i < t->rank; i++) ne *= t->dims[i];
    const fir_value_t *v = n->outputs[k];
    if (!numeric(t->dtype) || ne > max_out ||
        (v && (v->type->dtype != t->dtype || fir_type_numel(v->type) != ne))) {
      why = "an output's inferred type differs from the graph's";
      goto done;
    }
    /* Outputs the node leaves out still get scratch memory: the lowering may write them. */
    mem.out[k] = calloc((size_t)(ne ? ne : 1), flagos_dtype_size(t->dtype));
    mem.out_n[k] = ne;
    if (!mem.out[k]) {
      why = "out of memory";
      goto done;
    }
  }
  int64_t temp_bytes = 0;
  for (int t = 0; t < c->n_temps; t++) {
    int64_t ne;
    size_t es = flagos_dtype_size(c->temps[t].dtype);
    if (!numeric(c->temps[t].dtype) || !kir_eval_int(c->temps[t].numel, syms, c->n_syms, &ne) || ne < 0 ||
        ne > FOLD_MAX_TEMP_BYTES || (temp_bytes += ne * (int64_t)es) > FOLD_MAX_TEMP_BYTES) {
      why = "temporary buffers too large or of unknown size";
      goto done;
    }
    mem.temp[t] = calloc((size_t)(ne ? ne : 1), es);
    mem.temp_n[t] = ne;
    if (!mem.temp[t]) {
      why = "out of memory";
      goto done;
    }
  }
  if (!run_steps(c, &mem, syms, &why, &st)) goto done;
  for (int k = 0; k < n->n_outputs; k++) {
    fir_value_t *v = n->outputs[k];
    if (!v) continue;
    fir_tensor_t *t = fir_tensor_create(m, o[k].dtype, o[k].rank, o[k].dims);
    if (t->nbytes) memcpy(t->data, mem.out[k], t->nbytes);
    make_constant(m, v, t);
  }
  ok = true;
done:
  if (!ok) trace(n, why ? why : "?", st);
  for (int k = 0; mem.out && k < c->n_out; k++) free(mem.out[k]);
  for (int t = 0; mem.temp && t < c->n_temps; t++) free(mem.temp[t]);
  fl_arena_destroy(a);
  return ok;
}

flagos_status_t pass_fold_constants(fir_model_t *m, bool *changed) {
  fir_graph_t *g = m->graph;
  bool *graph_input = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_values + 1));
  pass_mark_graph_inputs(g, graph_input);
  int *readers = fl_arena_alloc(m->arena, sizeof(int) * (size_t)(g->n_values + 1));
  pass_count_readers(g, readers);
  const fold_walk_t w = {graph_input, readers, g->n_values};
  /* Folded nodes are remembered by pointer: inlining an If renumbers the nodes. */
  int n_dead = 0, cap_dead = 16;
  fir_node_t **dead = fl_arena_alloc(m->arena, sizeof(*dead) * (size_t)cap_dead);
  *changed = false;
  for (int i = 0; i < g->n_nodes; i++) {
    fir_node_t *n = g->nodes[i];
    /* An If whose condition just became a constant is replaced by its branch here,
     * before anything downstream needs the shapes the branch computes. */
    if (pass_is_constant_if(n)) {
      bool inlined;
      FL_TRY(pass_inline_if_at(g, i, &inlined));
      if (inlined) {
        *changed = true;
        i--;
        continue;
      }
    }
    castlike_to_cast(n);
    FL_TRY(pass_infer_node(m, n));
    bool folded = fold_shape_size(m, n);
    if (!folded) {
      int64_t max_out;
      const char *why = unfoldable(&w, n, &max_out);
      if (why && *why) trace(n, why, NULL);
      else if (why) folded = fold_eval(m, n, max_out);
    }
    if (folded) {
      if (n_dead == cap_dead) {
        fir_node_t **nd = fl_arena_alloc(m->arena, sizeof(*nd) * (size_t)(cap_dead *= 2));
        memcpy(nd, dead, sizeof(*nd) * (size_t)n_dead);
        dead = nd;
      }
      dead[n_dead++] = n;
      *changed = true;
    }
  }
  if (n_dead) {
    bool *mark = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_nodes + 1));
    for (int i = 0; i < n_dead; i++) mark[dead[i]->id] = true;
    fir_graph_remove_nodes(g, mark);
  }
  return NULL;
}
