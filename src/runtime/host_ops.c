/* Operators the runtime executes itself, once for every backend: control flow
 * (If, Loop, Scan, SequenceMap run their subgraphs' plans), sequences and
 * optionals; nodes on string tensors go to host_strings.c. Tensor data only
 * moves through the plugin ABI's copies. */
#include <stdlib.h>
#include <string.h>

#include "ops/ops_string.h"
#include "runtime/exec.h"
#include "runtime/host_image.h"

#define ERR(...) FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, __VA_ARGS__)

static rt_val_t *in_val(rt_frame_t *f, const fir_node_t *n, int k) {
  if (k >= n->n_inputs || !n->inputs[k]) return NULL;
  rt_val_t *v = rt_lookup(f, n->inputs[k]);
  return v && v->present ? v : NULL;
}

/* Moves v into output k of the node (v is left empty). */
static void set_out(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n, int k, rt_val_t *v) {
  if (k >= n->n_outputs || !n->outputs[k]) {
    rt_val_release(x, v);
    return;
  }
  rt_val_t *o = &f->vals[n->outputs[k]->id];
  rt_val_release(x, o);
  *o = *v;
  memset(v, 0, sizeof(*v));
}

static flagos_status_t out_copy(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n, int k, const rt_val_t *src) {
  rt_val_t v;
  FL_TRY(rt_val_copy(x, src, &v));
  set_out(x, f, n, k, &v);
  return NULL;
}

static flagos_status_t need(const rt_val_t *v, flagos_value_kind_t kind, const char *what) {
  if (!v) return ERR("%s is missing", what);
  if (v->kind != kind)
    return FL_ERR(FLAGOS_ERR_SHAPE, "%s must be a %s", what,
                  kind == FLAGOS_VALUE_TENSOR ? "tensor" : kind == FLAGOS_VALUE_SEQUENCE ? "sequence" : "optional");
  return NULL;
}

static rt_val_t empty_seq(flagos_dtype_t dt) {
  rt_val_t v;
  memset(&v, 0, sizeof v);
  v.present = true;
  v.kind = FLAGOS_VALUE_SEQUENCE;
  v.dtype = dt;
  return v;
}

static flagos_status_t seq_append(rt_val_t *seq, rt_val_t *item) {
  rt_val_t *ni = realloc(seq->items, sizeof(rt_val_t) * (size_t)(seq->n_items + 1));
  if (!ni) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  seq->items = ni;
  seq->items[seq->n_items++] = *item;
  memset(item, 0, sizeof(*item));
  return NULL;
}

/* A non-owning view of v (sequence items viewed too), to bind as a subgraph input. */
static flagos_status_t view_of(const rt_val_t *v, rt_val_t *out) {
  *out = *v;
  out->owned = false;
  out->pinned = true;
  out->uses_left = 0;
  out->items = NULL;
  out->n_items = 0;
  if (v->n_items) {
    out->items = calloc((size_t)v->n_items, sizeof(rt_val_t));
    if (!out->items) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < v->n_items; i++) {
      FL_TRY(view_of(&v->items[i], &out->items[i]));
      out->n_items++;
    }
  }
  return NULL;
}

/* Runs subgraph plan p with its inputs bound to views of ins; fills outs (owned). */
static flagos_status_t run_sub(rt_exec_t *x, rt_frame_t *parent, const rt_plan_t *p, rt_val_t *const *ins, int n_in,
                               rt_val_t *outs) {
  fir_graph_t *g = p->graph;
  if (n_in != g->n_inputs) return ERR("subgraph '%s' takes %d inputs, %d given", g->name, g->n_inputs, n_in);
  rt_frame_t f = {0};
  flagos_status_t st = rt_frame_init(x, p, parent, &f);
  for (int i = 0; i < n_in && !st; i++) {
    rt_val_t *rv = &f.vals[g->inputs[i]->id];
    rt_val_release(x, rv);
    if (ins[i]) st = view_of(ins[i], rv);
  }
  if (!st) st = rt_exec_graph(x, &f);
  for (int k = 0; k < g->n_outputs && !st; k++) {
    rt_val_t *rv = rt_lookup(&f, g->outputs[k]);
    if (!rv || !rv->present) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "subgraph output '%s' was not computed", g->outputs[k]->name);
      break;
    }
    bool again = false; /* the same value listed twice is copied, not moved */
    for (int j = k + 1; j < g->n_outputs; j++) again = again || g->outputs[j] == g->outputs[k];
    bool outer = rv < f.vals || rv >= f.vals + g->n_values;
    st = again || outer ? rt_val_copy(x, rv, &outs[k]) : rt_val_take(x, rv, &outs[k]);
  }
  rt_frame_free(x, &f);
  return st;
}

static void release_all(rt_exec_t *x, rt_val_t *v, int n) {
  for (int i = 0; i < n; i++) rt_val_release(x, &v[i]);
}

/* outer/len/inner (bytes) of a tensor around `axis`. */
static void around_axis(const rt_val_t *v, int axis, int64_t *outer, int64_t *len, size_t *inner) {
  *outer = rt_numel(axis, v->dims);
  *len = v->dims[axis];
  *inner = (size_t)rt_numel(v->rank - axis - 1, v->dims + axis + 1) * flagos_dtype_size(v->dtype);
}

/* dst = slice `index` of src along axis (dst's rank is src's minus one). */
static flagos_status_t take_slice(rt_exec_t *x, const rt_val_t *src, int axis, int64_t index, rt_val_t *dst) {
  int64_t dims[OPS_MAX_RANK], outer, len;
  size_t inner;
  int r = 0;
  for (int i = 0; i < src->rank; i++)
    if (i != axis) dims[r++] = src->dims[i];
  FL_TRY(rt_val_alloc_tensor(x, dst, src->dtype, r, dims));
  around_axis(src, axis, &outer, &len, &inner);
  return rt_copy_chunks(x, src->dtype, dst->ptr, 0, inner, src->ptr, (size_t)index * inner, (size_t)len * inner, inner, outer);
}

/* Stacks `n` same-shaped tensors along a new axis `axis`; order[i] is where item i goes. */
static flagos_status_t stack(rt_exec_t *x, rt_val_t *items, int n, int axis, const int *order, flagos_dtype_t dt,
                             int item_rank, const int64_t *item_dims, rt_val_t *out) {
  int64_t dims[OPS_MAX_RANK];
  int r = 0;
  for (int i = 0; i <= item_rank; i++) {
    if (i == axis) dims[r++] = n;
    if (i < item_rank) dims[r++] = item_dims[i];
  }
  FL_TRY(rt_val_alloc_tensor(x, out, dt, item_rank + 1, dims));
  int64_t outer = rt_numel(axis, item_dims);
  size_t inner = (size_t)rt_numel(item_rank - axis, item_dims + axis) * flagos_dtype_size(dt);
  for (int i = 0; i < n; i++) {
    if (items[i].rank != item_rank || memcmp(items[i].dims, item_dims, sizeof(int64_t) * (size_t)item_rank) != 0 ||
        items[i].dtype != dt)
      return FL_ERR(FLAGOS_ERR_SHAPE, "cannot stack tensors of different shapes or dtypes");
    int p = order ? order[i] : i;
    FL_TRY(rt_copy_chunks(x, dt, out->ptr, (size_t)p * inner, (size_t)n * inner, items[i].ptr, 0, inner, inner, outer));
  }
  return NULL;
}

/* Shape of output k of a subgraph when nothing was produced (zero iterations). */
static void static_item_shape(const fir_graph_t *g, int k, flagos_dtype_t *dt, int *rank, int64_t *dims) {
  const fir_type_t *t = g->outputs[k]->type;
  *dt = t->kind == FIR_TYPE_TENSOR ? t->dtype : FLAGOS_FLOAT32;
  *rank = t->kind == FIR_TYPE_TENSOR && t->rank >= 0 ? t->rank : 0;
  for (int i = 0; i < *rank; i++) dims[i] = t->dims[i].value < 0 ? 0 : t->dims[i].value;
}

static flagos_status_t op_if(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  rt_val_t *c = in_val(f, n, 0);
  FL_TRY(need(c, FLAGOS_VALUE_TENSOR, "condition"));
  int64_t cond;
  FL_TRY(rt_read_int(x, c, &cond));
  const rt_plan_t *p = rt_node_subplan(rn, cond ? "then_branch" : "else_branch");
  if (!p) return FL_ERR(FLAGOS_ERR_CORRUPT, "If node has no compiled branch");
  int no = p->graph->n_outputs;
  rt_val_t *outs = calloc((size_t)no + 1, sizeof(rt_val_t));
  flagos_status_t st = run_sub(x, f, p, NULL, 0, outs);
  for (int k = 0; k < no && !st; k++) set_out(x, f, n, k, &outs[k]);
  release_all(x, outs, no);
  free(outs);
  return st;
}

static flagos_status_t op_loop(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  const rt_plan_t *p = rt_node_subplan(rn, "body");
  if (!p) return FL_ERR(FLAGOS_ERR_CORRUPT, "Loop node has no compiled body");
  const fir_graph_t *g = p->graph;
  int nc = n->n_inputs - 2, nk = n->n_outputs - nc;
  int64_t max_trip = -1, cond = 1;
  rt_val_t *mv = in_val(f, n, 0), *cv = in_val(f, n, 1);
  if (mv) FL_TRY(rt_read_int(x, mv, &max_trip));
  if (cv) FL_TRY(rt_read_int(x, cv, &cond));
  rt_val_t *carried = calloc((size_t)nc + 1, sizeof(rt_val_t)), *outs = calloc((size_t)g->n_outputs + 1, sizeof(rt_val_t));
  rt_val_t *scans = calloc((size_t)nk + 1, sizeof(rt_val_t));
  rt_val_t **ins = calloc((size_t)nc + 3, sizeof(rt_val_t *));
  flagos_status_t st = NULL;
  if (!carried || !outs || !scans || !ins) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int j = 0; j < nc && !st; j++) {
    rt_val_t *iv = in_val(f, n, j + 2);
    if (!iv) st = ERR("loop-carried input %d is missing", j);
    else st = rt_val_copy(x, iv, &carried[j]);
  }
  for (int j = 0; j < nk; j++) scans[j] = empty_seq(FLAGOS_UNDEFINED);
  for (int64_t it = 0; !st && (max_trip < 0 || it < max_trip) && cond; it++) {
    rt_val_t itv, condv;
    int64_t zero = 0;
    uint8_t one = 1;
    memset(&itv, 0, sizeof itv);
    memset(&condv, 0, sizeof condv);
    st = rt_val_from_host(x, &itv, FLAGOS_INT64, 0, &zero, &it);
    if (!st) st = rt_val_from_host(x, &condv, FLAGOS_BOOL, 0, &zero, &one);
    ins[0] = &itv;
    ins[1] = &condv;
    for (int j = 0; j < nc; j++) ins[j + 2] = &carried[j];
    if (!st) st = run_sub(x, f, p, ins, nc + 2, outs);
    if (!st) st = rt_read_int(x, &outs[0], &cond);
    for (int j = 0; j < nc && !st; j++) {
      rt_val_release(x, &carried[j]);
      carried[j] = outs[1 + j];
      memset(&outs[1 + j], 0, sizeof(rt_val_t));
    }
    for (int j = 0; j < nk && !st; j++) st = seq_append(&scans[j], &outs[1 + nc + j]);
    release_all(x, outs, g->n_outputs);
    rt_val_release(x, &itv);
    rt_val_release(x, &condv);
  }
  for (int j = 0; j < nc && !st; j++) set_out(x, f, n, j, &carried[j]);
  for (int j = 0; j < nk && !st; j++) {
    rt_val_t out;
    memset(&out, 0, sizeof out);
    flagos_dtype_t dt;
    int rank;
    int64_t dims[OPS_MAX_RANK];
    if (scans[j].n_items) {
      const rt_val_t *i0 = &scans[j].items[0];
      dt = i0->dtype;
      rank = i0->rank;
      memcpy(dims, i0->dims, sizeof(int64_t) * (size_t)rank);
    } else {
      static_item_shape(g, 1 + nc + j, &dt, &rank, dims);
    }
    st = stack(x, scans[j].items, scans[j].n_items, 0, NULL, dt, rank, dims, &out);
    if (!st) set_out(x, f, n, nc + j, &out);
    else rt_val_release(x, &out);
  }
  if (carried) release_all(x, carried, nc);
  if (scans) release_all(x, scans, nk);
  free(carried);
  free(outs);
  free(scans);
  free(ins);
  return st;
}

/* The scan loop shared by Scan 9+ and Scan 8: runs body plan p over T steps with
 * ns state values and m scan inputs sliced along axes[j] (reversed where in_rev[j]);
 * results receives the ns final states and the nk scan outputs stacked along
 * out_axes[j] (-1: 0; negative counted from the end) in reverse where out_rev[j]. */
static flagos_status_t scan_core(rt_exec_t *x, rt_frame_t *f, const rt_plan_t *p, rt_val_t *const *state_in, int ns,
                                 rt_val_t *const *scan_in, int m, const int *axes, const bool *in_rev, int nk,
                                 const int64_t *out_axes, const bool *out_rev, int64_t T, rt_val_t *results) {
  const fir_graph_t *g = p->graph;
  rt_val_t *state = calloc((size_t)ns + 1, sizeof(rt_val_t)), *outs = calloc((size_t)g->n_outputs + 1, sizeof(rt_val_t));
  rt_val_t *slices = calloc((size_t)m + 1, sizeof(rt_val_t)), *scans = calloc((size_t)nk + 1, sizeof(rt_val_t));
  rt_val_t **ins = calloc((size_t)(ns + m) + 1, sizeof(rt_val_t *));
  flagos_status_t st = NULL;
  if (!state || !outs || !slices || !scans || !ins) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int j = 0; j < ns && !st; j++) st = rt_val_copy(x, state_in[j], &state[j]);
  for (int j = 0; j < nk && scans; j++) scans[j] = empty_seq(FLAGOS_UNDEFINED);
  for (int64_t t = 0; t < T && !st; t++) {
    for (int j = 0; j < m && !st; j++) st = take_slice(x, scan_in[j], axes[j], in_rev[j] ? T - 1 - t : t, &slices[j]);
    for (int j = 0; j < ns; j++) ins[j] = &state[j];
    for (int j = 0; j < m; j++) ins[ns + j] = &slices[j];
    if (!st) st = run_sub(x, f, p, ins, ns + m, outs);
    for (int j = 0; j < ns && !st; j++) {
      rt_val_release(x, &state[j]);
      state[j] = outs[j];
      memset(&outs[j], 0, sizeof(rt_val_t));
    }
    for (int j = 0; j < nk && !st; j++) st = seq_append(&scans[j], &outs[ns + j]);
    release_all(x, outs, g->n_outputs);
    release_all(x, slices, m);
  }
  for (int j = 0; j < ns && !st; j++) {
    results[j] = state[j];
    memset(&state[j], 0, sizeof(rt_val_t));
  }
  for (int j = 0; j < nk && !st; j++) {
    flagos_dtype_t dt;
    int rank;
    int64_t dims[OPS_MAX_RANK];
    if (scans[j].n_items) {
      dt = scans[j].items[0].dtype;
      rank = scans[j].items[0].rank;
      memcpy(dims, scans[j].items[0].dims, sizeof(int64_t) * (size_t)rank);
    } else {
      static_item_shape(g, ns + j, &dt, &rank, dims);
    }
    int64_t a = out_axes[j];
    if (a < 0) a += rank + 1;
    if (a < 0 || a > rank) {
      st = ERR("scan output axis %lld is out of range", (long long)out_axes[j]);
      break;
    }
    int *order = calloc((size_t)scans[j].n_items + 1, sizeof(int));
    if (!order) {
      st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
      break;
    }
    for (int i = 0; i < scans[j].n_items; i++) order[i] = out_rev[j] ? scans[j].n_items - 1 - i : i;
    st = stack(x, scans[j].items, scans[j].n_items, (int)a, order, dt, rank, dims, &results[ns + j]);
    free(order);
  }
  if (state) release_all(x, state, ns);
  if (slices) release_all(x, slices, m);
  if (scans) release_all(x, scans, nk);
  free(state);
  free(outs);
  free(slices);
  free(scans);
  free(ins);
  return st;
}

/* Scan 9 and later: scan axes and directions per input and output, no batch axis. */
static flagos_status_t op_scan(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  const rt_plan_t *p = rt_node_subplan(rn, "body");
  if (!p) return FL_ERR(FLAGOS_ERR_CORRUPT, "Scan node has no compiled body");
  int m = (int)fir_attr_int(n, "num_scan_inputs", 0), ns = n->n_inputs - m, nk = n->n_outputs - ns;
  if (m < 1 || ns < 0 || nk < 0 || m > 64 || nk > 64 || ns > 64)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "Scan with %d scan inputs and %d outputs is not supported", m, nk);
  const int64_t *in_ax, *in_dir, *out_ax, *out_dir;
  int n_in_ax = fir_attr_ints(n, "scan_input_axes", &in_ax), n_in_dir = fir_attr_ints(n, "scan_input_directions", &in_dir);
  int n_out_ax = fir_attr_ints(n, "scan_output_axes", &out_ax),
      n_out_dir = fir_attr_ints(n, "scan_output_directions", &out_dir);
  int64_t T = -1, oax[64];
  int axes[64];
  bool irev[64], orev[64];
  rt_val_t *sin[64], *xin[64];
  for (int j = 0; j < ns; j++)
    if (!(sin[j] = in_val(f, n, j))) return ERR("state input %d is missing", j);
  for (int j = 0; j < m; j++) {
    rt_val_t *v = xin[j] = in_val(f, n, ns + j);
    FL_TRY(need(v, FLAGOS_VALUE_TENSOR, "scan input"));
    int64_t a = n_in_ax > j ? in_ax[j] : 0;
    if (a < 0) a += v->rank;
    if (a < 0 || a >= v->rank) return ERR("scan input axis %lld is out of range", (long long)a);
    axes[j] = (int)a;
    irev[j] = n_in_dir > j && in_dir[j];
    if (T >= 0 && v->dims[a] != T)
      return FL_ERR(FLAGOS_ERR_SHAPE, "scan inputs differ in length (%lld vs %lld)", (long long)T, (long long)v->dims[a]);
    T = v->dims[a];
  }
  for (int j = 0; j < nk; j++) {
    oax[j] = n_out_ax > j ? out_ax[j] : 0;
    orev[j] = n_out_dir > j && out_dir[j];
  }
  rt_val_t res[128];
  memset(res, 0, sizeof res);
  flagos_status_t st = scan_core(x, f, p, sin, ns, xin, m, axes, irev, nk, oax, orev, T, res);
  for (int j = 0; j < ns + nk; j++) {
    if (!st) set_out(x, f, n, j, &res[j]);
    else rt_val_release(x, &res[j]);
  }
  return st;
}

/* Scan 8: every input and output has a leading batch axis; scan inputs are scanned
 * along axis 1; the optional first input gives each batch element's length. Runs
 * the scan once per batch element and stacks the results along the batch axis. */
static flagos_status_t op_scan8(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  const rt_plan_t *p = rt_node_subplan(rn, "body");
  if (!p) return FL_ERR(FLAGOS_ERR_CORRUPT, "Scan node has no compiled body");
  int m = (int)fir_attr_int(n, "num_scan_inputs", 0), ns = n->n_inputs - 1 - m, nk = n->n_outputs - ns;
  if (m < 1 || ns < 0 || nk < 0 || m > 64 || nk > 64 || ns > 64)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "Scan with %d scan inputs and %d outputs is not supported", m, nk);
  const int64_t *dir;
  int n_dir = fir_attr_ints(n, "directions", &dir);
  rt_val_t *lens = in_val(f, n, 0), *sin[64], *xin[64];
  for (int j = 0; j < ns; j++)
    if (!(sin[j] = in_val(f, n, 1 + j))) return ERR("state input %d is missing", j);
  int64_t B = -1, T = -1;
  for (int j = 0; j < m; j++) {
    rt_val_t *v = xin[j] = in_val(f, n, 1 + ns + j);
    FL_TRY(need(v, FLAGOS_VALUE_TENSOR, "scan input"));
    if (v->rank < 2) return FL_ERR(FLAGOS_ERR_SHAPE, "Scan 8 inputs need a batch and a sequence axis");
    if ((B >= 0 && v->dims[0] != B) || (T >= 0 && v->dims[1] != T))
      return FL_ERR(FLAGOS_ERR_SHAPE, "scan inputs differ in batch or sequence length");
    B = v->dims[0];
    T = v->dims[1];
  }
  int64_t len[4096];
  if (B > 4096) return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "Scan 8 with a batch over 4096");
  for (int64_t b = 0; b < B; b++) len[b] = T;
  if (lens) {
    if (rt_numel(lens->rank, lens->dims) != B) return FL_ERR(FLAGOS_ERR_SHAPE, "sequence_lens must hold one length per batch element");
    int64_t raw[4096];
    FL_TRY(rt_read(x, lens, raw, (size_t)B * flagos_dtype_size(lens->dtype)));
    for (int64_t b = 0; b < B; b++) {
      len[b] = fl_load_as_int64(lens->dtype, raw, (size_t)b);
      if (len[b] != T)
        return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "Scan 8 with sequence_lens shorter than the sequence axis (padding)");
    }
  }
  int axes[64];
  bool irev[64], orev[64];
  int64_t oax[64];
  for (int j = 0; j < m; j++) {
    axes[j] = 0; /* the sequence axis once the batch axis is sliced away */
    irev[j] = n_dir > j && dir[j];
  }
  for (int j = 0; j < nk; j++) {
    oax[j] = 0;
    orev[j] = false;
  }
  rt_val_t (*per)[128] = calloc((size_t)(B > 0 ? B : 1), sizeof(*per));
  rt_val_t sb[64], xb[64];
  memset(sb, 0, sizeof sb);
  memset(xb, 0, sizeof xb);
  flagos_status_t st = per ? NULL : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t b = 0; b < B && !st; b++) {
    rt_val_t *sp[64], *xp[64];
    for (int j = 0; j < ns && !st; j++) {
      st = take_slice(x, sin[j], 0, b, &sb[j]);
      sp[j] = &sb[j];
    }
    for (int j = 0; j < m && !st; j++) {
      st = take_slice(x, xin[j], 0, b, &xb[j]);
      xp[j] = &xb[j];
    }
    if (!st) st = scan_core(x, f, p, sp, ns, xp, m, axes, irev, nk, oax, orev, len[b], per[b]);
    release_all(x, sb, ns);
    release_all(x, xb, m);
  }
  rt_val_t *items = st ? NULL : calloc((size_t)(B > 0 ? B : 1), sizeof(rt_val_t));
  if (!st && !items) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (!st && B < 1) st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "Scan 8 with an empty batch");
  for (int j = 0; j < ns + nk && !st; j++) {
    rt_val_t out;
    memset(&out, 0, sizeof out);
    for (int64_t b = 0; b < B; b++) items[b] = per[b][j]; /* views: per[] keeps ownership */
    st = stack(x, items, (int)B, 0, NULL, items[0].dtype, items[0].rank, items[0].dims, &out);
    if (!st) set_out(x, f, n, j, &out);
    else rt_val_release(x, &out);
  }
  free(items);
  for (int64_t b = 0; per && b < B; b++) release_all(x, per[b], ns + nk);
  free(per);
  return st;
}

static flagos_status_t op_sequence_map(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  const rt_plan_t *p = rt_node_subplan(rn, "body");
  if (!p) return FL_ERR(FLAGOS_ERR_CORRUPT, "SequenceMap node has no compiled body");
  rt_val_t *s0 = in_val(f, n, 0);
  FL_TRY(need(s0, FLAGOS_VALUE_SEQUENCE, "input_sequence"));
  int len = s0->n_items, no = n->n_outputs;
  rt_val_t **ins = calloc((size_t)n->n_inputs + 1, sizeof(rt_val_t *));
  rt_val_t *outs = calloc((size_t)no + 1, sizeof(rt_val_t)), *res = calloc((size_t)no + 1, sizeof(rt_val_t));
  flagos_status_t st = NULL;
  for (int k = 0; k < no; k++) res[k] = empty_seq(p->graph->outputs[k]->type->dtype);
  for (int i = 0; i < len && !st; i++) {
    for (int k = 0; k < n->n_inputs && !st; k++) {
      rt_val_t *v = in_val(f, n, k);
      if (!v) st = ERR("input %d is missing", k);
      else if (v->kind == FLAGOS_VALUE_SEQUENCE) {
        if (v->n_items != len) st = FL_ERR(FLAGOS_ERR_SHAPE, "sequences differ in length");
        else ins[k] = &v->items[i];
      } else {
        ins[k] = v;
      }
    }
    if (!st) st = run_sub(x, f, p, ins, n->n_inputs, outs);
    for (int k = 0; k < no && !st; k++) st = seq_append(&res[k], &outs[k]);
    release_all(x, outs, no);
  }
  for (int k = 0; k < no && !st; k++) set_out(x, f, n, k, &res[k]);
  release_all(x, res, no);
  free(ins);
  free(outs);
  free(res);
  return st;
}

/* Position input: default `dflt`; negative counts from the end; valid in [-len, len + extra - 1]. */
static flagos_status_t position(rt_exec_t *x, rt_val_t *pv, int len, int extra, int64_t dflt, int *out) {
  int64_t p = dflt;
  if (pv) FL_TRY(rt_read_int(x, pv, &p));
  if (p < -(int64_t)len || p > (int64_t)len + extra - 1)
    return ERR("position %lld is out of range for a sequence of %d", (long long)p, len);
  *out = (int)(p < 0 ? p + len : p);
  return NULL;
}

static flagos_status_t op_sequence(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  const char *op = n->op_type;
  rt_val_t *a = in_val(f, n, 0), out;
  memset(&out, 0, sizeof out);
  flagos_status_t st = NULL;
  if (strcmp(op, "SequenceEmpty") == 0) {
    out = empty_seq((flagos_dtype_t)fir_attr_int(n, "dtype", FLAGOS_FLOAT32));
  } else if (strcmp(op, "SequenceConstruct") == 0) {
    out = empty_seq(a ? a->dtype : FLAGOS_FLOAT32);
    for (int k = 0; k < n->n_inputs && !st; k++) {
      rt_val_t item;
      rt_val_t *v = in_val(f, n, k);
      st = need(v, FLAGOS_VALUE_TENSOR, "input");
      if (!st) st = rt_val_copy(x, v, &item);
      if (!st) st = seq_append(&out, &item);
    }
  } else if (strcmp(op, "SequenceInsert") == 0) {
    FL_TRY(need(a, FLAGOS_VALUE_SEQUENCE, "input_sequence"));
    rt_val_t *t = in_val(f, n, 1);
    FL_TRY(need(t, FLAGOS_VALUE_TENSOR, "tensor"));
    int pos;
    FL_TRY(position(x, in_val(f, n, 2), a->n_items, 1, a->n_items, &pos));
    st = rt_val_copy(x, a, &out);
    rt_val_t item;
    if (!st) st = rt_val_copy(x, t, &item);
    if (!st) st = seq_append(&out, &item);
    if (!st) {
      rt_val_t last = out.items[out.n_items - 1];
      memmove(&out.items[pos + 1], &out.items[pos], sizeof(rt_val_t) * (size_t)(out.n_items - 1 - pos));
      out.items[pos] = last;
    }
  } else if (strcmp(op, "SequenceErase") == 0) {
    FL_TRY(need(a, FLAGOS_VALUE_SEQUENCE, "input_sequence"));
    int pos;
    if (a->n_items == 0) return ERR("cannot erase from an empty sequence");
    FL_TRY(position(x, in_val(f, n, 1), a->n_items, 0, -1, &pos));
    st = rt_val_copy(x, a, &out);
    if (!st) {
      rt_val_release(x, &out.items[pos]);
      memmove(&out.items[pos], &out.items[pos + 1], sizeof(rt_val_t) * (size_t)(out.n_items - 1 - pos));
      out.n_items--;
    }
  } else if (strcmp(op, "SequenceAt") == 0) {
    FL_TRY(need(a, FLAGOS_VALUE_SEQUENCE, "input_sequence"));
    int pos;
    FL_TRY(position(x, in_val(f, n, 1), a->n_items, 0, 0, &pos));
    if (!in_val(f, n, 1)) return ERR("position is missing");
    st = rt_val_copy(x, &a->items[pos], &out);
  } else if (strcmp(op, "SequenceLength") == 0) {
    FL_TRY(need(a, FLAGOS_VALUE_SEQUENCE, "input_sequence"));
    int64_t len = a->n_items;
    st = rt_val_from_host(x, &out, FLAGOS_INT64, 0, NULL, &len);
  } else if (strcmp(op, "ConcatFromSequence") == 0) {
    FL_TRY(need(a, FLAGOS_VALUE_SEQUENCE, "input_sequence"));
    if (a->n_items == 0) return ERR("cannot concatenate an empty sequence");
    bool new_axis = fir_attr_int(n, "new_axis", 0) != 0;
    int r = a->items[0].rank;
    int64_t ax = fir_attr_int(n, "axis", 0);
    if (ax < 0) ax += r + (new_axis ? 1 : 0);
    if (ax < 0 || ax > r - (new_axis ? 0 : 1)) return ERR("axis %lld is out of range", (long long)fir_attr_int(n, "axis", 0));
    if (new_axis) {
      st = stack(x, a->items, a->n_items, (int)ax, NULL, a->items[0].dtype, r, a->items[0].dims, &out);
    } else {
      int64_t dims[OPS_MAX_RANK], total = 0;
      memcpy(dims, a->items[0].dims, sizeof(int64_t) * (size_t)r);
      for (int i = 0; i < a->n_items; i++) {
        const rt_val_t *it = &a->items[i];
        bool ok = it->rank == r && it->dtype == a->items[0].dtype;
        for (int d = 0; ok && d < r; d++) ok = d == ax || it->dims[d] == dims[d];
        if (!ok) return FL_ERR(FLAGOS_ERR_SHAPE, "sequence item %d cannot be concatenated on axis %lld", i, (long long)ax);
        total += it->dims[ax];
      }
      dims[ax] = total;
      st = rt_val_alloc_tensor(x, &out, a->items[0].dtype, r, dims);
      int64_t outer = rt_numel((int)ax, dims), at = 0;
      size_t row = (size_t)rt_numel(r - (int)ax - 1, dims + ax + 1) * flagos_dtype_size(out.dtype);
      for (int i = 0; i < a->n_items && !st; i++) {
        size_t chunk = (size_t)a->items[i].dims[ax] * row;
        st = rt_copy_chunks(x, out.dtype, out.ptr, (size_t)at * row, (size_t)total * row, a->items[i].ptr, 0, chunk, chunk, outer);
        at += a->items[i].dims[ax];
      }
    }
  } else if (strcmp(op, "SplitToSequence") == 0) {
    FL_TRY(need(a, FLAGOS_VALUE_TENSOR, "input"));
    int64_t ax = fir_attr_int(n, "axis", 0);
    if (ax < 0) ax += a->rank;
    if (ax < 0 || ax >= a->rank) return ERR("axis is out of range");
    bool keep = fir_attr_int(n, "keepdims", 1) != 0;
    int64_t len = a->dims[ax], outer, l2;
    size_t inner;
    around_axis(a, (int)ax, &outer, &l2, &inner);
    rt_val_t *sp = in_val(f, n, 1);
    int64_t sizes[4096];
    int ns = 0;
    if (!sp) {
      for (int64_t i = 0; i < len && ns < 4096; i++) sizes[ns++] = 1;
    } else {
      int64_t cnt = rt_numel(sp->rank, sp->dims);
      if (cnt > 4096) return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "more than 4096 splits");
      int64_t raw[4096];
      FL_TRY(rt_read(x, sp, raw, (size_t)cnt * flagos_dtype_size(sp->dtype)));
      if (sp->rank == 0) {
        int64_t chunk = fl_load_as_int64(sp->dtype, raw, 0);
        if (chunk <= 0) return ERR("split must be positive");
        for (int64_t s0 = 0; s0 < len && ns < 4096; s0 += chunk) sizes[ns++] = len - s0 < chunk ? len - s0 : chunk;
      } else {
        int64_t sum = 0;
        for (int64_t i = 0; i < cnt; i++) sum += sizes[ns++] = fl_load_as_int64(sp->dtype, raw, (size_t)i);
        if (sum != len) return FL_ERR(FLAGOS_ERR_SHAPE, "split sizes add up to %lld, the axis has %lld", (long long)sum, (long long)len);
      }
    }
    out = empty_seq(a->dtype);
    int64_t at = 0;
    for (int i = 0; i < ns && !st; i++) {
      int64_t dims[OPS_MAX_RANK];
      int r = 0;
      for (int d = 0; d < a->rank; d++) {
        if (d == ax && !sp && !keep) continue;
        dims[r++] = d == ax ? sizes[i] : a->dims[d];
      }
      rt_val_t item;
      st = rt_val_alloc_tensor(x, &item, a->dtype, r, dims);
      if (!st)
        st = rt_copy_chunks(x, a->dtype, item.ptr, 0, (size_t)sizes[i] * inner, a->ptr, (size_t)at * inner, (size_t)len * inner,
                            (size_t)sizes[i] * inner, outer);
      if (!st) st = seq_append(&out, &item);
      else rt_val_release(x, &item);
      at += sizes[i];
    }
  } else if (strcmp(op, "Optional") == 0) {
    out.present = true;
    out.kind = FLAGOS_VALUE_OPTIONAL;
    if (a) {
      out.dtype = a->dtype;
      out.items = calloc(1, sizeof(rt_val_t));
      if (!out.items) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
      st = rt_val_copy(x, a, &out.items[0]);
      out.n_items = 1;
    }
  } else if (strcmp(op, "OptionalHasElement") == 0) {
    uint8_t has = a && (a->kind != FLAGOS_VALUE_OPTIONAL || a->n_items > 0);
    st = rt_val_from_host(x, &out, FLAGOS_BOOL, 0, NULL, &has);
  } else if (strcmp(op, "OptionalGetElement") == 0) {
    if (!a) return ERR("input is missing");
    if (a->kind == FLAGOS_VALUE_OPTIONAL) {
      if (a->n_items == 0) return ERR("the optional is empty");
      st = rt_val_copy(x, &a->items[0], &out);
    } else {
      st = rt_val_copy(x, a, &out);
    }
  } else if (strcmp(op, "Identity") == 0) {
    if (!a) return ERR("input is missing");
    return out_copy(x, f, n, 0, a);
  } else {
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "the runtime has no implementation of %s", op);
  }
  if (!st) set_out(x, f, n, 0, &out);
  else rt_val_release(x, &out);
  return st;
}

flagos_status_t rt_host_op(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const char *op = rn->node->op_type;
  if (ops_str_runtime_runs(rn->node)) return rt_host_strings(x, f, rn);
  if (strcmp(op, "If") == 0) return op_if(x, f, rn);
  if (strcmp(op, "Loop") == 0) return op_loop(x, f, rn);
  if (strcmp(op, "Scan") == 0) return rn->node->opset < 9 ? op_scan8(x, f, rn) : op_scan(x, f, rn);
  if (strcmp(op, "SequenceMap") == 0) return op_sequence_map(x, f, rn);
  if (strcmp(op, "ImageDecoder") == 0) return rt_host_image_decode(x, f, rn);
  return op_sequence(x, f, rn);
}
