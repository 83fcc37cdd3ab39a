/* The executor: runs a plan's nodes in order inside a frame (one frame per graph
 * execution; subgraph frames see their parents' values). A node whose shapes
 * were all static at compile time runs its kernels as they are; any other node
 * first runs its operator's shape rule on the concrete shapes (and, where the
 * operator asks, on input values) to get output shapes and the kernels' integer
 * symbols. Values are freed after their last use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/exec.h"

int64_t rt_numel(int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  return n;
}

rt_val_t *rt_lookup(rt_frame_t *f, const fir_value_t *v) {
  while (f && f->plan->graph != v->graph) f = f->parent;
  if (!f) return NULL;
  if (f->home && f->home[v->id] != f->cur) return &f->mirror[f->cur][v->id];
  return &f->vals[v->id];
}

/* String tensors are host arrays of malloc'ed strings on every backend (kernels
 * never see them): they are allocated, copied and freed here, not by the plugin. */
static bool is_strings(const rt_val_t *v) { return v->kind == FLAGOS_VALUE_TENSOR && v->dtype == FLAGOS_STRING; }

static char *dup_str(const char *s) {
  if (!s) s = "";
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

void rt_val_release(rt_exec_t *x, rt_val_t *v) {
  if (v->owned && v->ptr && is_strings(v)) {
    char **s = v->ptr;
    for (size_t i = 0; i < v->nbytes / sizeof(char *); i++) free(s[i]);
    free(s);
  } else if (v->owned && v->ptr) {
    rt_dev_free(x, v->ptr);
  }
  for (int i = 0; i < v->n_items; i++) rt_val_release(x, &v->items[i]);
  free(v->items);
  memset(v, 0, sizeof(*v));
}

flagos_status_t rt_val_alloc_tensor(rt_exec_t *x, rt_val_t *v, flagos_dtype_t dt, int rank, const int64_t *dims) {
  memset(v, 0, sizeof(*v));
  v->present = true;
  v->kind = FLAGOS_VALUE_TENSOR;
  v->dtype = dt;
  v->rank = rank;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0) return FL_ERR(FLAGOS_ERR_INTERNAL, "tensor with negative dimension %lld", (long long)dims[i]);
    v->dims[i] = dims[i];
  }
  size_t n = (size_t)rt_numel(rank, dims) * flagos_dtype_size(dt);
  v->nbytes = n;
  if (dt == FLAGOS_STRING) {
    v->ptr = calloc(n ? n : 1, 1); /* NULL entries until the operator fills them */
    if (!v->ptr) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate a string tensor of %zu bytes", n);
  } else {
    FL_TRY(rt_dev_alloc(x, n ? n : 1, &v->ptr));
  }
  v->owned = true;
  return NULL;
}

flagos_status_t rt_str_set(rt_val_t *v, int64_t i, const char *s, size_t len) {
  char **a = v->ptr;
  char *d = malloc(len + 1);
  if (!d) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate a string of %zu bytes", len);
  if (len) memcpy(d, s, len);
  d[len] = 0;
  free(a[i]);
  a[i] = d;
  return NULL;
}

const char *rt_str_get(const rt_val_t *v, int64_t i) {
  const char *s = ((char *const *)v->ptr)[i];
  return s ? s : "";
}

flagos_status_t rt_val_copy(rt_exec_t *x, const rt_val_t *src, rt_val_t *dst) {
  memset(dst, 0, sizeof(*dst));
  if (!src->present) return NULL;
  if (src->kind == FLAGOS_VALUE_TENSOR) {
    FL_TRY(rt_val_alloc_tensor(x, dst, src->dtype, src->rank, src->dims));
    if (src->dtype == FLAGOS_STRING)
      return rt_copy_chunks(x, FLAGOS_STRING, dst->ptr, 0, dst->nbytes, src->ptr, 0, dst->nbytes, dst->nbytes, 1);
    if (dst->nbytes) FL_TRY(x->api->copy_d2d(x->bst, NULL, dst->ptr, 0, src->ptr, 0, dst->nbytes));
    return NULL;
  }
  *dst = *src;
  dst->ptr = NULL;
  dst->owned = false;
  dst->uses_left = 0;
  dst->pinned = false;
  dst->items = src->n_items ? calloc((size_t)src->n_items, sizeof(rt_val_t)) : NULL;
  dst->n_items = 0;
  for (int i = 0; i < src->n_items; i++) {
    FL_TRY(rt_val_copy(x, &src->items[i], &dst->items[i]));
    dst->n_items++;
  }
  return NULL;
}

/* A value owns all its memory when its tensors were allocated by this run. */
static bool fully_owned(const rt_val_t *v) {
  if (v->kind == FLAGOS_VALUE_TENSOR) return v->owned;
  for (int i = 0; i < v->n_items; i++)
    if (!fully_owned(&v->items[i])) return false;
  return true;
}

flagos_status_t rt_val_take(rt_exec_t *x, rt_val_t *src, rt_val_t *dst) {
  if (src->present && fully_owned(src)) {
    *dst = *src;
    dst->uses_left = 0;
    dst->pinned = false;
    memset(src, 0, sizeof(*src));
    return NULL;
  }
  return rt_val_copy(x, src, dst);
}

flagos_status_t rt_read(rt_exec_t *x, const rt_val_t *v, void *dst, size_t bytes) {
  if (bytes > v->nbytes) return FL_ERR(FLAGOS_ERR_INTERNAL, "read of %zu bytes from a %zu-byte tensor", bytes, v->nbytes);
  if (is_strings(v)) return FL_ERR(FLAGOS_ERR_INTERNAL, "string tensors are read element by element (rt_str_get)");
  if (!bytes) return NULL;
  if (x->stream) return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "a device read while a graph is being captured");
  return x->api->copy_d2h(x->bst, NULL, dst, v->ptr, 0, bytes);
}

flagos_status_t rt_read_int(rt_exec_t *x, const rt_val_t *v, int64_t *out) {
  if (!v->present || v->kind != FLAGOS_VALUE_TENSOR || rt_numel(v->rank, v->dims) < 1)
    return FL_ERR(FLAGOS_ERR_SHAPE, "expected a tensor with at least one element");
  unsigned char buf[16];
  size_t es = flagos_dtype_size(v->dtype);
  if (es > sizeof buf || (!flagos_dtype_is_int(v->dtype) && v->dtype != FLAGOS_BOOL))
    return FL_ERR(FLAGOS_ERR_SHAPE, "expected an integer or bool tensor, got %s", flagos_dtype_name(v->dtype));
  FL_TRY(rt_read(x, v, buf, es));
  *out = fl_load_as_int64(v->dtype, buf, 0);
  return NULL;
}

flagos_status_t rt_val_from_host(rt_exec_t *x, rt_val_t *v, flagos_dtype_t dt, int rank, const int64_t *dims,
                                 const void *data) {
  FL_TRY(rt_val_alloc_tensor(x, v, dt, rank, dims));
  if (dt == FLAGOS_STRING)
    return rt_copy_chunks(x, FLAGOS_STRING, v->ptr, 0, v->nbytes, (flagos_devptr_t)data, 0, v->nbytes, v->nbytes, 1);
  if (v->nbytes) FL_TRY(x->api->copy_h2d(x->bst, NULL, v->ptr, 0, data, v->nbytes));
  return NULL;
}

flagos_status_t rt_copy_chunks(rt_exec_t *x, flagos_dtype_t dt, flagos_devptr_t dst, size_t dst_off, size_t dst_stride,
                               flagos_devptr_t src, size_t src_off, size_t src_stride, size_t chunk, int64_t count) {
  if (!chunk) return NULL;
  if (dt == FLAGOS_STRING) {
    /* Offsets count bytes of the pointer arrays; each string is duplicated. */
    char **d = dst;
    char *const *s = src;
    size_t es = sizeof(char *);
    for (int64_t i = 0; i < count; i++)
      for (size_t j = 0; j < chunk / es; j++) {
        size_t di = (dst_off + (size_t)i * dst_stride) / es + j, si = (src_off + (size_t)i * src_stride) / es + j;
        char *c = dup_str(s[si]);
        if (!c) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory copying strings");
        free(d[di]);
        d[di] = c;
      }
    return NULL;
  }
  if (dst_stride == chunk && src_stride == chunk)
    return x->api->copy_d2d(x->bst, NULL, dst, dst_off, src, src_off, chunk * (size_t)count);
  for (int64_t i = 0; i < count; i++)
    FL_TRY(x->api->copy_d2d(x->bst, NULL, dst, dst_off + (size_t)i * dst_stride, src, src_off + (size_t)i * src_stride, chunk));
  return NULL;
}

flagos_status_t rt_frame_init(rt_exec_t *x, const rt_plan_t *p, rt_frame_t *parent, rt_frame_t *f) {
  fir_graph_t *g = p->graph;
  memset(f, 0, sizeof(*f)); /* a single-device frame: no homes, no mirrors */
  f->plan = p;
  f->parent = parent;
  f->vals = calloc((size_t)g->n_values + 1, sizeof(rt_val_t));
  if (!f->vals) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  /* On a device with its own memory the weights are uploaded once per session. */
  flagos_devptr_t const *placed = NULL;
  if (!x->host_visible && x->weights) FL_TRY(rt_weights_get(x->weights, p, NULL, &placed));
  for (int i = 0; i < g->n_values; i++) {
    fir_value_t *v = g->values[i];
    if (!v->init) continue;
    rt_val_t *rv = &f->vals[i];
    if (x->host_visible || v->init->dtype == FLAGOS_STRING || (placed && placed[i])) {
      /* strings are host arrays everywhere; placed weights are views of the session's copies */
      rv->present = true;
      rv->kind = FLAGOS_VALUE_TENSOR;
      rv->dtype = v->init->dtype;
      rv->rank = v->init->rank;
      memcpy(rv->dims, v->init->dims, sizeof(int64_t) * (size_t)v->init->rank);
      rv->ptr = placed && placed[i] ? placed[i] : v->init->data;
      rv->nbytes = v->init->dtype == FLAGOS_STRING ? (size_t)v->init->numel * sizeof(char *) : v->init->nbytes;
    } else {
      FL_TRY(rt_val_from_host(x, rv, v->init->dtype, v->init->rank, v->init->dims, v->init->data));
    }
    rv->pinned = true;
    if (v->init->dtype != FLAGOS_STRING) rv->host = v->init->data;
  }
  return NULL;
}

void rt_frame_free(rt_exec_t *x, rt_frame_t *f) {
  if (!f->vals) return;
  for (int i = 0; i < f->plan->graph->n_values; i++) rt_val_release(x, &f->vals[i]);
  free(f->vals);
  f->vals = NULL;
}

/* FLAGOS_VIEWS=0 makes view operators copy (for measurements and bisection). */
static bool views_on(void) {
  const char *e = getenv("FLAGOS_VIEWS");
  return !(e && strcmp(e, "0") == 0);
}

/* Operators whose output is their first input's bytes under another shape. */
static bool is_view_op(const fir_node_t *n) {
  return n->n_outputs == 1 && n->n_inputs >= 1 && n->inputs[0] && fir_node_is_view(n);
}

/* A view node whose input this node is the last to read hands the input's
 * buffer to its output instead of copying it: no launch, no allocation. Only
 * where ownership is plain — a device tensor this run allocated in this frame,
 * not pinned (graph inputs, outputs and weights are), on a single-device frame
 * (a multi-device frame keeps mirrors per slot) — otherwise the node's kernel
 * copies as usual. */
static bool take_view(rt_frame_t *f, const rt_node_t *rn, const ops_tensor_info_t *out) {
  const fir_node_t *n = rn->node;
  if (f->home || !is_view_op(n) || !n->outputs[0] || n->inputs[0]->graph != f->plan->graph || !views_on())
    return false;
  rt_val_t *src = &f->vals[n->inputs[0]->id];
  rt_val_t *dst = &f->vals[n->outputs[0]->id];
  for (int k = 1; k < n->n_inputs; k++)
    if (n->inputs[k] == n->inputs[0]) return false;
  if (!src->present || src->kind != FLAGOS_VALUE_TENSOR || src->dtype == FLAGOS_STRING || !src->owned ||
      src->pinned || src->host || src->uses_left != 1 || !src->ptr || out[0].dtype != src->dtype ||
      (size_t)rt_numel(out[0].rank, out[0].dims) * flagos_dtype_size(out[0].dtype) != src->nbytes)
    return false;
  memset(dst, 0, sizeof(*dst));
  dst->present = true;
  dst->kind = FLAGOS_VALUE_TENSOR;
  dst->dtype = out[0].dtype;
  dst->rank = out[0].rank;
  memcpy(dst->dims, out[0].dims, sizeof(int64_t) * (size_t)out[0].rank);
  dst->ptr = src->ptr;
  dst->nbytes = src->nbytes;
  dst->owned = true;
  dst->uses_left = f->plan->uses[n->outputs[0]->id];
  dst->pinned = f->plan->is_output[n->outputs[0]->id];
  src->owned = false; /* release_inputs then forgets it without freeing */
  return true;
}

flagos_status_t rt_exec_kernels(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn, int ni) {
  double prof_t0 = x->prof ? rt_prof_now_us() : 0;
  fir_node_t *n = rn->node;
  fl_arena_t *a = fl_arena_create();
  flagos_status_t st = NULL;
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * (size_t)(n->n_outputs + 1));
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  flagos_devptr_t *temps = NULL;
  int64_t *syms = NULL;
  for (int k = 0; k < n->n_inputs; k++) {
    fir_value_t *v = n->inputs[k];
    memset(&in[k], 0, sizeof(in[k]));
    if (!v) continue;
    rt_val_t *rv = rt_lookup(f, v);
    if (!rv || !rv->present) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "input '%s' has no value", v->name);
      goto done;
    }
    if (rv->kind != FLAGOS_VALUE_TENSOR) {
      st = FL_ERR(FLAGOS_ERR_SHAPE, "input '%s' is not a tensor", v->name);
      goto done;
    }
    in[k].present = true;
    in[k].kind = FIR_TYPE_TENSOR;
    in[k].dtype = rv->dtype;
    in[k].rank = rv->rank;
    memcpy(in[k].dims, rv->dims, sizeof(int64_t) * (size_t)rv->rank);
    in[k].numel = rt_numel(rv->rank, rv->dims);
    if (x->host_visible) {
      in[k].value = rv->ptr;
    } else if (rv->host) { /* a weight: its bytes are in the bundle, no device read */
      in[k].value = rv->host;
    } else if (k < 64 && (rn->def->value_inputs >> k & 1)) {
      void *h = fl_arena_alloc(a, rv->nbytes ? rv->nbytes : 1);
      st = rt_read(x, rv, h, rv->nbytes);
      if (st) goto done;
      in[k].value = h;
    }
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
  }
  /* A static node's rule only lays out symbols here (its outputs are already known). */
  st = ops_ctx_infer(c, rn->def);
  if (st) goto done;
  if (c->n_syms != rn->n_syms || c->n_params != rn->n_params) {
    st = FL_ERR(FLAGOS_ERR_INTERNAL, "symbol layout changed between compile and run (%d/%d vs %d/%d)", c->n_syms,
                c->n_params, rn->n_syms, rn->n_params);
    goto done;
  }
  syms = fl_arena_alloc(a, sizeof(int64_t) * (size_t)(c->n_syms + 1));
  ops_ctx_fill_syms(c, syms);
  if (x->trace) {
    fprintf(stderr, "flagos trace: node %d %s '%s'%s, syms [", ni, n->op_type, n->name, rn->is_static ? " static" : "");
    for (int i = 0; i < c->n_syms; i++) fprintf(stderr, "%s%lld", i ? " " : "", (long long)syms[i]);
    fprintf(stderr, "]\n");
  }
  if (is_view_op(n) && n->outputs[0]) {
    rt_val_release(x, &f->vals[n->outputs[0]->id]);
    if (take_view(f, rn, out)) goto done;
  }
  for (int k = 0; k < n->n_outputs; k++) {
    fir_value_t *v = n->outputs[k];
    if (!v) continue;
    rt_val_t *rv = &f->vals[v->id];
    rt_val_release(x, rv);
    for (int i = 0; i < out[k].rank; i++)
      if (out[k].dims[i] < 0) {
        st = FL_ERR(FLAGOS_ERR_INTERNAL, "output '%s' has no concrete shape", v->name);
        goto done;
      }
    st = rt_val_alloc_tensor(x, rv, out[k].dtype, out[k].rank, out[k].dims);
    if (st) goto done;
    rv->uses_left = f->plan->uses[v->id];
    rv->pinned = f->plan->is_output[v->id];
  }
  temps = fl_arena_alloc(a, sizeof(*temps) * (size_t)(rn->n_temps + 1));
  for (int t = 0; t < rn->n_temps && !st; t++) {
    int64_t ne;
    if (!kir_eval_int(rn->temp_numel[t], syms, c->n_syms, &ne) || ne < 0) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "cannot size temp %d", t);
      break;
    }
    size_t nb = (size_t)ne * flagos_dtype_size(rn->temp_dtype[t]);
    st = rt_dev_alloc(x, nb ? nb : 1, &temps[t]);
  }
  if (x->prof && !st) st = rt_prof_node_begin(x->prof, rn, prof_t0);
  const char *library = NULL; /* for the profile: the library call that ran, if one did */
  for (int k = 0; k < rn->n_steps && !st; k++) {
    const rt_step_t *sp = &rn->steps[k];
    flagos_devptr_t *bufs = fl_arena_alloc(a, sizeof(*bufs) * (size_t)(sp->n_binds + 1));
    int32_t *dts = fl_arena_alloc(a, sizeof(int32_t) * (size_t)(sp->n_binds + 1));
    for (int i = 0; i < sp->n_binds && !st; i++) {
      ops_bind_t bd = sp->binds[i];
      if (bd.kind == OPS_BIND_TEMP) {
        bufs[i] = temps[bd.index];
        dts[i] = rn->temp_dtype[bd.index];
        continue;
      }
      fir_value_t *v = bd.kind == OPS_BIND_INPUT ? n->inputs[bd.index] : n->outputs[bd.index];
      rt_val_t *rv = v ? rt_lookup(f, v) : NULL;
      if (!rv || !rv->present) st = FL_ERR(FLAGOS_ERR_INTERNAL, "kernel buffer %d is unbound", i);
      else {
        bufs[i] = rv->ptr;
        dts[i] = rv->dtype;
      }
    }
    if (st) break;
    bool by_library = false;
    if (sp->lc_name && x->api->library_call) {
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
        flagos_status_t ls = x->api->library_call(x->bst, x->stream, &call);
        if (!ls) {
          by_library = true;
          library = sp->lc_name;
        } else if (flagos_status_code(ls) == FLAGOS_ERR_UNSUPPORTED) {
          flagos_status_free(ls);
        } else {
          st = ls;
        }
      }
    }
    if (st) continue;
    if (by_library) {
      if (sp->lc_ends_node) break;
      k += sp->lc_skip;
      continue;
    }
    int64_t work = 0;
    bool evaluated = kir_eval_int(sp->work, syms, c->n_syms, &work);
    /* no points, nothing to run (a kernel that only carries a library call the backend declined) */
    if (evaluated && work == 0) continue;
    flagos_launch_t la = {bufs, sp->n_binds, syms, c->n_syms, work};
    st = x->api->launch(x->bst, x->stream, x->kernels[sp->kid], &la);
  }
  if (x->prof && !st) st = rt_prof_node_end(x->prof, rn, c, library);
done:
  if (temps)
    for (int t = 0; t < rn->n_temps; t++)
      if (temps[t]) rt_dev_free(x, temps[t]);
  fl_arena_destroy(a);
  return st;
}

/* Frees the values of f's graph that node rn was the last to read. */
static void release_inputs(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_graph_t *g = f->plan->graph;
  const fir_node_t *n = rn->node;
  for (int k = 0; k < n->n_inputs + rn->n_captures; k++) {
    fir_value_t *v = k < n->n_inputs ? n->inputs[k] : rn->captures[k - n->n_inputs];
    if (!v || v->graph != g) continue;
    rt_val_t *rv = &f->vals[v->id];
    if (--rv->uses_left <= 0 && !rv->pinned) rt_val_release(x, rv);
  }
}

flagos_status_t rt_exec_graph(rt_exec_t *x, rt_frame_t *f) {
  const rt_plan_t *p = f->plan;
  for (int i = 0; i < p->n_nodes; i++) {
    const rt_node_t *rn = &p->nodes[i];
    flagos_status_t st;
    if (rn->host) {
      if (x->trace) fprintf(stderr, "flagos trace: node %d %s '%s' (runtime)\n", i, rn->node->op_type, rn->node->name);
      double prof_t0 = x->prof ? rt_prof_now_us() : 0;
      st = rt_host_op(x, f, rn);
      if (x->prof) rt_prof_host_span(x->prof, "host operator", rn, prof_t0);
      for (int k = 0; !st && k < rn->node->n_outputs; k++) {
        fir_value_t *v = rn->node->outputs[k];
        if (!v) continue;
        f->vals[v->id].uses_left = p->uses[v->id];
        f->vals[v->id].pinned = p->is_output[v->id];
      }
    } else {
      st = rt_exec_kernels(x, f, rn, i);
    }
    if (st)
      return flagos_status_wrap(st, "while running node %d (%s '%s')", i, rn->node->op_type, rn->node->name);
    release_inputs(x, f, rn);
  }
  return NULL;
}
