/* Sessions: a bundle bound to one device, and the executor that runs its plan.
 *
 * Each run walks the nodes in order. A node whose shapes were all static at
 * compile time runs its kernels as they are; any other node first runs its
 * operator's shape rule on the concrete shapes (and, where the operator asks,
 * on input values) to get output shapes and the kernels' integer symbols.
 * Intermediate tensors are freed after their last use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/runtime.h"

typedef struct rt_val {
  bool present;
  flagos_dtype_t dtype;
  int rank;
  int64_t dims[OPS_MAX_RANK];
  flagos_devptr_t ptr;
  size_t nbytes;
  bool owned;     /* allocated by this run on the device */
  int uses_left;  /* consumers still to run; freed at 0 unless pinned */
  bool pinned;    /* graph outputs, inputs, weights */
} rt_val_t;

struct flagos_session_s {
  flagos_bundle_t *b;
  rt_backend_t *be;
  int device;
  flagos_bmodule_t module;
  flagos_bkernel_t **kernels; /* [node][step] */
  int *uses;                  /* consumers per value id (main graph) */
  bool *is_output;
  double last_ms;
  bool trace; /* FLAGOS_TRACE set: print each node as it runs */
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static flagos_status_t parse_device(const char *spec, char *name, size_t n, int *index) {
  *index = 0;
  if (!spec || !*spec) spec = "cpu";
  const char *colon = strchr(spec, ':');
  size_t l = colon ? (size_t)(colon - spec) : strlen(spec);
  if (l == 0 || l >= n) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bad device '%s' (expected NAME or NAME:INDEX)", spec);
  memcpy(name, spec, l);
  name[l] = 0;
  if (colon) {
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || v < 0)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bad device index in '%s'", spec);
    *index = (int)v;
  }
  return NULL;
}

flagos_status_t flagos_session_create(flagos_bundle_t *b, const flagos_session_options_t *opts, flagos_session_t **out) {
  char name[64];
  int dev;
  FL_TRY(parse_device(opts ? opts->device : NULL, name, sizeof name, &dev));
  if (strcmp(name, "cpu") != 0)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "device '%s': this bundle carries kernels for: cpu", name);
  rt_backend_t *be;
  FL_TRY(rt_backend_get(name, &be));
  int nd = be->api->device_count(be->state);
  if (dev >= nd) return FL_ERR(FLAGOS_ERR_NOT_FOUND, "device %s:%d does not exist (%d device(s))", name, dev, nd);
  if (!b->code_cpu && b->n_nodes > 0) return FL_ERR(FLAGOS_ERR_CORRUPT, "bundle has no 'kernels.cpu' section");

  flagos_session_t *s = calloc(1, sizeof(*s));
  if (!s) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  s->b = b;
  s->be = be;
  s->trace = getenv("FLAGOS_TRACE") != NULL;
  s->device = dev;
  flagos_status_t st = NULL;
  if (b->n_nodes > 0) st = be->api->module_load(be->state, dev, b->code_cpu, b->code_cpu_len, &s->module);
  fir_graph_t *g = b->model->graph;
  s->kernels = calloc((size_t)b->n_nodes + 1, sizeof(*s->kernels));
  s->uses = calloc((size_t)g->n_values + 1, sizeof(int));
  s->is_output = calloc((size_t)g->n_values + 1, sizeof(bool));
  if (!s->kernels || !s->uses || !s->is_output) st = st ? st : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; !st && i < b->n_nodes; i++) {
    rt_node_t *rn = &b->nodes[i];
    s->kernels[i] = calloc((size_t)rn->n_steps + 1, sizeof(flagos_bkernel_t));
    if (!s->kernels[i]) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; !st && k < rn->n_steps; k++)
      st = be->api->kernel_get(be->state, s->module, rn->steps[k].kernel, &s->kernels[i][k]);
    for (int k = 0; k < rn->node->n_inputs; k++)
      if (rn->node->inputs[k] && rn->node->inputs[k]->graph == g) s->uses[rn->node->inputs[k]->id]++;
  }
  for (int i = 0; i < g->n_outputs; i++) s->is_output[g->outputs[i]->id] = true;
  if (st) {
    flagos_session_destroy(s);
    return st;
  }
  *out = s;
  return NULL;
}

void flagos_session_destroy(flagos_session_t *s) {
  if (!s) return;
  if (s->kernels)
    for (int i = 0; i < s->b->n_nodes; i++) free(s->kernels[i]);
  free(s->kernels);
  if (s->module) s->be->api->module_unload(s->be->state, s->module);
  free(s->uses);
  free(s->is_output);
  free(s);
}

double flagos_session_last_run_ms(const flagos_session_t *s) { return s->last_ms; }

static int64_t numel_of(int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  return n;
}

static void dims_str(char *buf, size_t n, int rank, const int64_t *dims, const fir_type_t *t) {
  size_t o = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && o < n; i++) {
    if (t && t->dims[i].value < 0)
      o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? "," : "", t->dims[i].sym ? t->dims[i].sym : "?");
    else
      o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)dims[i]);
  }
  if (o < n) snprintf(buf + o, n - o, "]");
}

/* Checks a caller's input against the graph input's type. */
static flagos_status_t check_input(const fir_value_t *v, const flagos_value_t *in) {
  const fir_type_t *t = v->type;
  if (t->kind != FIR_TYPE_TENSOR)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "input '%s': sequence and optional inputs are not supported yet", v->name);
  if (in->kind != FLAGOS_VALUE_TENSOR)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': expected a tensor", v->name);
  const flagos_tensor_t *x = &in->tensor;
  if (x->dtype != t->dtype)
    return FL_ERR(FLAGOS_ERR_SHAPE, "input '%s': expected dtype %s, got %s", v->name, flagos_dtype_name(t->dtype),
                  flagos_dtype_name(x->dtype));
  bool ok = x->rank == t->rank;
  for (int i = 0; ok && i < t->rank; i++)
    if (t->dims[i].value >= 0 && t->dims[i].value != x->dims[i]) ok = false;
  for (int i = 0; i < x->rank; i++)
    if (x->dims[i] < 0) ok = false;
  if (!ok) {
    char e[256], gv[256];
    int64_t ed[OPS_MAX_RANK] = {0};
    dims_str(e, sizeof e, t->rank, ed, t);
    for (int i = 0; i < t->rank; i++)
      if (t->dims[i].value >= 0) {
        int64_t tmp[OPS_MAX_RANK];
        for (int j = 0; j < t->rank; j++) tmp[j] = t->dims[j].value;
        dims_str(e, sizeof e, t->rank, tmp, t);
        break;
      }
    dims_str(gv, sizeof gv, x->rank, x->dims, NULL);
    return FL_ERR(FLAGOS_ERR_SHAPE, "input '%s': expected shape %s, got %s", v->name, e, gv);
  }
  if (x->nbytes < (size_t)numel_of(x->rank, x->dims) * flagos_dtype_size(x->dtype))
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': buffer of %zu bytes is smaller than its shape needs", v->name,
                  x->nbytes);
  return NULL;
}

typedef struct run_state {
  flagos_session_t *s;
  rt_val_t *vals;
  const flagos_backend_t *api;
  void *bst;
} run_state_t;

static flagos_status_t alloc_val(run_state_t *r, rt_val_t *v) {
  size_t n = (size_t)numel_of(v->rank, v->dims) * flagos_dtype_size(v->dtype);
  v->nbytes = n;
  FL_TRY(r->api->mem_alloc(r->bst, r->s->device, n ? n : 1, &v->ptr));
  if (n) memset(v->ptr, 0, 0); /* host-visible memory is not cleared: kernels write every element */
  v->owned = true;
  return NULL;
}

static void release_val(run_state_t *r, rt_val_t *v) {
  if (v->owned && v->ptr) r->api->mem_free(r->bst, r->s->device, v->ptr);
  v->ptr = NULL;
  v->owned = false;
  v->present = false;
}

static flagos_status_t run_node(run_state_t *r, int ni) {
  flagos_session_t *s = r->s;
  rt_node_t *rn = &s->b->nodes[ni];
  fir_node_t *n = rn->node;
  fir_graph_t *g = s->b->model->graph;
  fl_arena_t *a = fl_arena_create();
  flagos_status_t st = NULL;
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * (size_t)(n->n_outputs + 1));
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  for (int k = 0; k < n->n_inputs; k++) {
    fir_value_t *v = n->inputs[k];
    memset(&in[k], 0, sizeof(in[k]));
    if (!v) continue;
    rt_val_t *rv = &r->vals[v->id];
    if (!rv->present) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "%s node '%s': input '%s' has no value", n->op_type, n->name, v->name);
      goto done;
    }
    in[k].present = true;
    in[k].kind = FIR_TYPE_TENSOR;
    in[k].dtype = rv->dtype;
    in[k].rank = rv->rank;
    memcpy(in[k].dims, rv->dims, sizeof(int64_t) * (size_t)rv->rank);
    in[k].numel = numel_of(rv->rank, rv->dims);
    /* The cpu backend is host-visible; other backends will copy value inputs down here. */
    in[k].value = rv->ptr;
  }
  ops_ctx_init(c, a, n, in, out, true);
  if (rn->is_static) {
    for (int k = 0; k < n->n_outputs; k++) {
      fir_value_t *v = n->outputs[k];
      if (!v) continue;
      out[k].present = true;
      out[k].kind = FIR_TYPE_TENSOR;
      out[k].dtype = v->type->dtype;
      out[k].rank = v->type->rank;
      for (int i = 0; i < v->type->rank; i++) out[k].dims[i] = v->type->dims[i].value;
    }
    /* Static kernels fold every dim; the symbol array is still laid out for
     * library-call and temp expressions, which may name symbols. */
    st = ops_ctx_infer(c, rn->def);
    if (st) goto done;
  } else {
    st = ops_ctx_infer(c, rn->def);
    if (st) goto done;
    if (c->n_syms != rn->n_syms || c->n_params != rn->n_params) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "%s node '%s': symbol layout changed between compile and run (%d/%d vs %d/%d)",
                  n->op_type, n->name, c->n_syms, c->n_params, rn->n_syms, rn->n_params);
      goto done;
    }
  }
  int64_t *syms = fl_arena_alloc(a, sizeof(int64_t) * (size_t)(c->n_syms + 1));
  ops_ctx_fill_syms(c, syms);
  if (s->trace) {
    fprintf(stderr, "flagos trace: node %d %s '%s'%s, syms [", ni, n->op_type, n->name, rn->is_static ? " static" : "");
    for (int i = 0; i < c->n_syms; i++) fprintf(stderr, "%s%lld", i ? " " : "", (long long)syms[i]);
    fprintf(stderr, "]\n");
  }
  /* outputs */
  for (int k = 0; k < n->n_outputs; k++) {
    fir_value_t *v = n->outputs[k];
    if (!v) continue;
    rt_val_t *rv = &r->vals[v->id];
    if (rv->present) release_val(r, rv);
    rv->present = true;
    rv->dtype = out[k].dtype;
    rv->rank = out[k].rank;
    memcpy(rv->dims, out[k].dims, sizeof(int64_t) * (size_t)out[k].rank);
    for (int i = 0; i < rv->rank; i++)
      if (rv->dims[i] < 0) {
        st = FL_ERR(FLAGOS_ERR_INTERNAL, "%s node '%s': output '%s' has no concrete shape", n->op_type, n->name, v->name);
        goto done;
      }
    rv->uses_left = s->uses[v->id];
    rv->pinned = s->is_output[v->id];
    st = alloc_val(r, rv);
    if (st) goto done;
  }
  /* temps */
  flagos_devptr_t *temps = fl_arena_alloc(a, sizeof(*temps) * (size_t)(rn->n_temps + 1));
  for (int t = 0; t < rn->n_temps && !st; t++) {
    int64_t ne;
    if (!kir_eval_int(rn->temp_numel[t], syms, c->n_syms, &ne) || ne < 0) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "%s node '%s': cannot size temp %d", n->op_type, n->name, t);
      break;
    }
    size_t nb = (size_t)ne * flagos_dtype_size(rn->temp_dtype[t]);
    st = r->api->mem_alloc(r->bst, s->device, nb ? nb : 1, &temps[t]);
  }
  for (int k = 0; k < rn->n_steps && !st; k++) {
    rt_step_t *sp = &rn->steps[k];
    flagos_devptr_t *bufs = fl_arena_alloc(a, sizeof(*bufs) * (size_t)(sp->n_binds + 1));
    int32_t *dts = fl_arena_alloc(a, sizeof(int32_t) * (size_t)(sp->n_binds + 1));
    for (int i = 0; i < sp->n_binds; i++) {
      ops_bind_t bd = sp->binds[i];
      if (bd.kind == OPS_BIND_TEMP) {
        bufs[i] = temps[bd.index];
        dts[i] = rn->temp_dtype[bd.index];
      } else {
        fir_value_t *v = bd.kind == OPS_BIND_INPUT ? n->inputs[bd.index] : n->outputs[bd.index];
        rt_val_t *rv = v ? &r->vals[v->id] : NULL;
        if (!rv || !rv->present) {
          st = FL_ERR(FLAGOS_ERR_INTERNAL, "%s node '%s': kernel buffer %d is unbound", n->op_type, n->name, i);
          break;
        }
        bufs[i] = rv->ptr;
        dts[i] = rv->dtype;
      }
    }
    if (st) break;
    bool done_by_lib = false;
    if (sp->lc_name && r->api->library_call) {
      int64_t *ints = fl_arena_alloc(a, sizeof(int64_t) * (size_t)(sp->lc_n_ints + 1));
      bool ok = true;
      for (int i = 0; i < sp->lc_n_ints; i++) ok = ok && kir_eval_int(sp->lc_ints[i], syms, c->n_syms, &ints[i]);
      flagos_devptr_t *lb = fl_arena_alloc(a, sizeof(*lb) * (size_t)(sp->lc_n_bufs + 1));
      int32_t *ld = fl_arena_alloc(a, sizeof(int32_t) * (size_t)(sp->lc_n_bufs + 1));
      for (int i = 0; i < sp->lc_n_bufs; i++) {
        lb[i] = bufs[sp->lc_bufs[i]];
        ld[i] = dts[sp->lc_bufs[i]];
      }
      if (ok) {
        flagos_libcall_t call = {sp->lc_name, lb, ld, sp->lc_n_bufs, ints, sp->lc_n_ints, sp->lc_floats, sp->lc_n_floats};
        flagos_status_t ls = r->api->library_call(r->bst, NULL, &call);
        if (!ls) done_by_lib = true;
        else if (flagos_status_code(ls) == FLAGOS_ERR_UNSUPPORTED) flagos_status_free(ls);
        else st = ls;
      }
    }
    if (st || done_by_lib) continue;
    int64_t work = 0;
    kir_eval_int(sp->work, syms, c->n_syms, &work);
    flagos_launch_t la = {bufs, sp->n_binds, syms, c->n_syms, work};
    st = r->api->launch(r->bst, NULL, s->kernels[ni][k], &la);
  }
  for (int t = 0; t < rn->n_temps; t++)
    if (temps[t]) r->api->mem_free(r->bst, s->device, temps[t]);
  /* Inputs whose last consumer this was are freed now. */
  for (int k = 0; k < n->n_inputs; k++) {
    fir_value_t *v = n->inputs[k];
    if (!v || v->graph != g) continue;
    rt_val_t *rv = &r->vals[v->id];
    if (--rv->uses_left <= 0 && !rv->pinned) release_val(r, rv);
  }
done:
  if (st) st = flagos_status_wrap(st, "while running node %d (%s '%s')", ni, n->op_type, n->name);
  fl_arena_destroy(a);
  return st;
}

static flagos_status_t export_value(run_state_t *r, const rt_val_t *rv, flagos_value_t *out) {
  memset(out, 0, sizeof(*out));
  out->kind = FLAGOS_VALUE_TENSOR;
  flagos_tensor_t *t = &out->tensor;
  t->dtype = rv->dtype;
  t->rank = rv->rank;
  memcpy(t->dims, rv->dims, sizeof(int64_t) * (size_t)rv->rank);
  size_t n = (size_t)numel_of(rv->rank, rv->dims) * flagos_dtype_size(rv->dtype);
  t->data = malloc(n ? n : 1);
  if (!t->data) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for an output", n);
  t->nbytes = n;
  if (n) FL_TRY(r->api->copy_d2h(r->bst, NULL, t->data, rv->ptr, 0, n));
  return NULL;
}

flagos_status_t flagos_session_run(flagos_session_t *s, const flagos_value_t *inputs, int n_inputs,
                                   flagos_value_t *outputs, int n_outputs) {
  double t0 = now_ms();
  fir_graph_t *g = s->b->model->graph;
  if (n_inputs != g->n_inputs)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the model takes %d input(s), %d given", g->n_inputs, n_inputs);
  if (n_outputs != g->n_outputs)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the model has %d output(s), room for %d given", g->n_outputs, n_outputs);
  for (int i = 0; i < n_inputs; i++) FL_TRY(check_input(g->inputs[i], &inputs[i]));
  run_state_t r = {s, calloc((size_t)g->n_values + 1, sizeof(rt_val_t)), s->be->api, s->be->state};
  if (!r.vals) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  flagos_status_t st = NULL;
  /* Weights and inputs live where they are: the cpu backend reads host memory. */
  for (int i = 0; i < g->n_values; i++) {
    fir_value_t *v = g->values[i];
    if (!v->init) continue;
    rt_val_t *rv = &r.vals[i];
    rv->present = true;
    rv->pinned = true;
    rv->dtype = v->init->dtype;
    rv->rank = v->init->rank;
    memcpy(rv->dims, v->init->dims, sizeof(int64_t) * (size_t)v->init->rank);
    rv->ptr = v->init->data;
    rv->nbytes = v->init->nbytes;
  }
  for (int i = 0; i < n_inputs; i++) {
    rt_val_t *rv = &r.vals[g->inputs[i]->id];
    const flagos_tensor_t *t = &inputs[i].tensor;
    rv->present = true;
    rv->pinned = true;
    rv->dtype = t->dtype;
    rv->rank = t->rank;
    memcpy(rv->dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
    rv->ptr = t->data;
    rv->nbytes = t->nbytes;
  }
  for (int i = 0; i < s->b->n_nodes && !st; i++) st = run_node(&r, i);
  int exported = 0;
  for (int i = 0; i < n_outputs && !st; i++) {
    const rt_val_t *rv = &r.vals[g->outputs[i]->id];
    if (!rv->present) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "output '%s' was not computed", g->outputs[i]->name);
      break;
    }
    st = export_value(&r, rv, &outputs[i]);
    if (!st) exported++;
  }
  if (st)
    for (int i = 0; i < exported; i++) flagos_value_clear(&outputs[i]);
  for (int i = 0; i < g->n_values; i++) release_val(&r, &r.vals[i]);
  free(r.vals);
  s->last_ms = now_ms() - t0;
  return st;
}
