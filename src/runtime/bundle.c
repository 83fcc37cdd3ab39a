/* Opening a bundle: checks it, parses its manifest and FlagIR, and points the
 * initializers at the weights section (no copy: the file is mapped). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

#define MANIFEST_FORMAT 1

static flagos_status_t bad(const char *what) {
  return FL_ERR(FLAGOS_ERR_CORRUPT, "bundle manifest is malformed: %s", what);
}

static flagos_status_t parse_expr(fl_arena_t *a, const cJSON *j, kir_expr_t **out) {
  if (!cJSON_IsString(j)) return bad("expected an expression string");
  return kir_parse_int_expr(a, j->valuestring, out);
}

static flagos_status_t parse_plan(flagos_bundle_t *b, fir_graph_t *g, const cJSON *nodes, rt_plan_t *p);

static int add_kernel_name(flagos_bundle_t *b, const char *name) {
  if (b->n_kernels == b->cap_kernels) {
    int nc = b->cap_kernels ? b->cap_kernels * 2 : 64;
    const char **nk = fl_arena_alloc(b->arena, sizeof(*nk) * (size_t)nc);
    if (b->n_kernels) memcpy(nk, b->kernel_names, sizeof(*nk) * (size_t)b->n_kernels);
    b->kernel_names = nk;
    b->cap_kernels = nc;
  }
  b->kernel_names[b->n_kernels] = name;
  return b->n_kernels++;
}

/* The values of graph `owner` that a node's subgraphs read (its captures), each
 * once, in the order first read. */
typedef struct captures {
  fl_arena_t *a;
  const fir_graph_t *owner;
  fir_value_t **v;
  int n, cap;
} captures_t;

static void add_capture(fir_value_t *v, void *ctx) {
  captures_t *c = ctx;
  if (v->graph != c->owner) return;
  for (int j = 0; j < c->n; j++)
    if (c->v[j] == v) return;
  if (c->n == c->cap) {
    int nc = c->cap ? c->cap * 2 : 16;
    fir_value_t **nv = fl_arena_alloc(c->a, sizeof(*nv) * (size_t)nc);
    if (c->n) memcpy(nv, c->v, sizeof(*nv) * (size_t)c->n);
    c->v = nv;
    c->cap = nc;
  }
  c->v[c->n++] = v;
}

const rt_plan_t *rt_node_subplan(const rt_node_t *rn, const char *attr) {
  for (int i = 0; i < rn->n_sub; i++)
    if (strcmp(rn->sub_attr[i], attr) == 0) return rn->sub[i];
  return NULL;
}

static flagos_status_t parse_node(flagos_bundle_t *b, fir_graph_t *g, const cJSON *nj, rt_node_t *rn) {
  fl_arena_t *a = b->arena;
  const cJSON *idx = cJSON_GetObjectItem(nj, "index");
  if (!cJSON_IsNumber(idx) || idx->valueint < 0 || idx->valueint >= g->n_nodes) return bad("node index out of range");
  rn->node = g->nodes[idx->valueint];
  const cJSON *op = cJSON_GetObjectItem(nj, "op");
  if (!cJSON_IsString(op) || strcmp(op->valuestring, rn->node->op_type) != 0)
    return bad("node operator does not match the FlagIR");
  rn->def = ops_find(rn->node->op_type, rn->node->domain);
  if (!rn->def)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "bundle uses operator %s, which this FlagOS runtime does not know",
                  rn->node->op_type);
  const cJSON *fl = cJSON_GetObjectItem(nj, "flops"), *grp = cJSON_GetObjectItem(nj, "group");
  rn->flops = cJSON_IsNumber(fl) && fl->valuedouble >= 0 ? fl->valuedouble : -1;
  rn->group = cJSON_IsString(grp) ? fl_arena_strdup(a, grp->valuestring) : rn->node->op_type;
  if (cJSON_IsTrue(cJSON_GetObjectItem(nj, "host"))) {
    rn->host = true;
    rn->flops = 0;
    const cJSON *subs = cJSON_GetObjectItem(nj, "subgraphs");
    rn->n_sub = cJSON_GetArraySize(subs);
    rn->sub_attr = fl_arena_alloc(a, sizeof(*rn->sub_attr) * (size_t)(rn->n_sub + 1));
    rn->sub = fl_arena_alloc(a, sizeof(*rn->sub) * (size_t)(rn->n_sub + 1));
    for (int i = 0; i < rn->n_sub; i++) {
      const cJSON *sj = cJSON_GetArrayItem(subs, i), *an = cJSON_GetObjectItem(sj, "attr");
      if (!cJSON_IsString(an)) return bad("subgraph attribute name");
      const fir_attr_t *at = fir_node_attr(rn->node, an->valuestring);
      if (!at || at->kind != FIR_ATTR_GRAPH || !at->g) return bad("subgraph attribute missing from the FlagIR");
      rn->sub_attr[i] = fl_arena_strdup(a, an->valuestring);
      rn->sub[i] = fl_arena_alloc(a, sizeof(rt_plan_t));
      FL_TRY(parse_plan(b, at->g, cJSON_GetObjectItem(sj, "nodes"), rn->sub[i]));
    }
    captures_t caps = {a, g, NULL, 0, 0};
    fir_node_subgraph_reads(rn->node, add_capture, &caps);
    rn->n_captures = caps.n;
    rn->captures = caps.n ? caps.v : fl_arena_alloc(a, sizeof(*caps.v));
    return NULL;
  }
  rn->is_static = cJSON_IsTrue(cJSON_GetObjectItem(nj, "static"));
  const cJSON *ns = cJSON_GetObjectItem(nj, "n_syms"), *pb = cJSON_GetObjectItem(nj, "param_base"),
              *np = cJSON_GetObjectItem(nj, "n_params");
  if (!cJSON_IsNumber(ns) || !cJSON_IsNumber(pb) || !cJSON_IsNumber(np)) return bad("node symbol counts missing");
  rn->n_syms = ns->valueint;
  rn->param_base = pb->valueint;
  rn->n_params = np->valueint;
  if (rn->n_syms < 0 || rn->n_syms > 1 << 20 || rn->n_params < 0 || rn->n_params > OPS_MAX_PARAMS) return bad("symbol counts");
  const cJSON *temps = cJSON_GetObjectItem(nj, "temps");
  rn->n_temps = cJSON_GetArraySize(temps);
  rn->temp_dtype = fl_arena_alloc(a, sizeof(*rn->temp_dtype) * (size_t)(rn->n_temps + 1));
  rn->temp_numel = fl_arena_alloc(a, sizeof(*rn->temp_numel) * (size_t)(rn->n_temps + 1));
  for (int t = 0; t < rn->n_temps; t++) {
    const cJSON *tj = cJSON_GetArrayItem(temps, t), *dt = cJSON_GetObjectItem(tj, "dtype");
    if (!cJSON_IsString(dt)) return bad("temp dtype");
    rn->temp_dtype[t] = flagos_dtype_from_name(dt->valuestring);
    FL_TRY(parse_expr(a, cJSON_GetObjectItem(tj, "numel"), &rn->temp_numel[t]));
  }
  const cJSON *steps = cJSON_GetObjectItem(nj, "steps");
  rn->n_steps = cJSON_GetArraySize(steps);
  rn->steps = fl_arena_alloc(a, sizeof(*rn->steps) * (size_t)(rn->n_steps + 1));
  for (int s = 0; s < rn->n_steps; s++) {
    const cJSON *sj = cJSON_GetArrayItem(steps, s);
    rt_step_t *st = &rn->steps[s];
    const cJSON *k = cJSON_GetObjectItem(sj, "kernel");
    if (!cJSON_IsString(k)) return bad("step kernel name");
    st->kernel = fl_arena_strdup(a, k->valuestring);
    st->kid = add_kernel_name(b, st->kernel);
    const cJSON *binds = cJSON_GetObjectItem(sj, "binds");
    st->n_binds = cJSON_GetArraySize(binds);
    st->binds = fl_arena_alloc(a, sizeof(*st->binds) * (size_t)(st->n_binds + 1));
    for (int i = 0; i < st->n_binds; i++) {
      const cJSON *bj = cJSON_GetArrayItem(binds, i);
      const cJSON *kind = cJSON_GetArrayItem(bj, 0), *ix = cJSON_GetArrayItem(bj, 1);
      if (!cJSON_IsString(kind) || !cJSON_IsNumber(ix) || ix->valueint < 0) return bad("step binding");
      const char *kn = kind->valuestring;
      st->binds[i].index = ix->valueint;
      if (strcmp(kn, "in") == 0) {
        st->binds[i].kind = OPS_BIND_INPUT;
        if (ix->valueint >= rn->node->n_inputs || !rn->node->inputs[ix->valueint]) return bad("binding to a missing input");
      } else if (strcmp(kn, "out") == 0) {
        st->binds[i].kind = OPS_BIND_OUTPUT;
        if (ix->valueint >= rn->node->n_outputs) return bad("binding to a missing output");
      } else if (strcmp(kn, "temp") == 0) {
        st->binds[i].kind = OPS_BIND_TEMP;
        if (ix->valueint >= rn->n_temps) return bad("binding to a missing temp");
      } else {
        return bad("binding kind");
      }
    }
    FL_TRY(parse_expr(a, cJSON_GetObjectItem(sj, "work"), &st->work));
    const cJSON *lc = cJSON_GetObjectItem(sj, "libcall");
    if (lc) {
      const cJSON *name = cJSON_GetObjectItem(lc, "name"), *lb = cJSON_GetObjectItem(lc, "bufs"),
                  *li = cJSON_GetObjectItem(lc, "ints"), *lf = cJSON_GetObjectItem(lc, "floats");
      if (!cJSON_IsString(name)) return bad("library call name");
      st->lc_name = fl_arena_strdup(a, name->valuestring);
      st->lc_n_bufs = cJSON_GetArraySize(lb);
      st->lc_bufs = fl_arena_alloc(a, sizeof(int) * (size_t)(st->lc_n_bufs + 1));
      for (int i = 0; i < st->lc_n_bufs; i++) {
        const cJSON *x = cJSON_GetArrayItem(lb, i);
        if (!cJSON_IsNumber(x) || x->valueint < 0 || x->valueint >= st->n_binds) return bad("library call buffer");
        st->lc_bufs[i] = x->valueint;
      }
      st->lc_n_ints = cJSON_GetArraySize(li);
      st->lc_ints = fl_arena_alloc(a, sizeof(*st->lc_ints) * (size_t)(st->lc_n_ints + 1));
      for (int i = 0; i < st->lc_n_ints; i++) FL_TRY(parse_expr(a, cJSON_GetArrayItem(li, i), &st->lc_ints[i]));
      st->lc_n_floats = cJSON_GetArraySize(lf);
      st->lc_floats = fl_arena_alloc(a, sizeof(double) * (size_t)(st->lc_n_floats + 1));
      for (int i = 0; i < st->lc_n_floats; i++) st->lc_floats[i] = cJSON_GetArrayItem(lf, i)->valuedouble;
      st->lc_ends_node = cJSON_IsTrue(cJSON_GetObjectItem(lc, "ends_node"));
      const cJSON *sk = cJSON_GetObjectItem(lc, "skip");
      if (sk && (!cJSON_IsNumber(sk) || sk->valuedouble < 0 || sk->valuedouble > 1e6 ||
                 sk->valuedouble != (double)(int)sk->valuedouble))
        return bad("library call skip count");
      st->lc_skip = sk ? (int)sk->valuedouble : 0;
    }
  }
  return NULL;
}

static flagos_status_t parse_plan(flagos_bundle_t *b, fir_graph_t *g, const cJSON *nodes, rt_plan_t *p) {
  p->graph = g;
  p->n_nodes = cJSON_GetArraySize(nodes);
  if (!cJSON_IsArray(nodes) || p->n_nodes != g->n_nodes) return bad("node count differs from the FlagIR");
  p->nodes = fl_arena_alloc(b->arena, sizeof(*p->nodes) * (size_t)(p->n_nodes + 1));
  for (int i = 0; i < p->n_nodes; i++) FL_TRY(parse_node(b, g, cJSON_GetArrayItem(nodes, i), &p->nodes[i]));
  p->uses = fl_arena_alloc(b->arena, sizeof(int) * (size_t)(g->n_values + 1));
  p->is_output = fl_arena_alloc(b->arena, sizeof(bool) * (size_t)(g->n_values + 1));
  for (int i = 0; i < p->n_nodes; i++) {
    const rt_node_t *rn = &p->nodes[i];
    for (int k = 0; k < rn->node->n_inputs; k++)
      if (rn->node->inputs[k] && rn->node->inputs[k]->graph == g) p->uses[rn->node->inputs[k]->id]++;
    for (int k = 0; k < rn->n_captures; k++) p->uses[rn->captures[k]->id]++;
  }
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i]->graph == g) p->is_output[g->outputs[i]->id] = true;
  return NULL;
}

/* Points initializers that the text refers to (@w<N>) at the mapped weights, in g and its subgraphs. */
static flagos_status_t bind_weights(fir_graph_t *g, const cJSON *wj, const unsigned char *weights, size_t wlen) {
  int nw = cJSON_GetArraySize(wj);
  for (int i = 0; i < g->n_nodes; i++)
    for (int a = 0; a < g->nodes[i]->n_attrs; a++)
      if (g->nodes[i]->attrs[a].kind == FIR_ATTR_GRAPH && g->nodes[i]->attrs[a].g)
        FL_TRY(bind_weights(g->nodes[i]->attrs[a].g, wj, weights, wlen));
  for (int i = 0; i < g->n_values; i++) {
    fir_tensor_t *t = g->values[i]->init;
    if (!t || t->ref < 0) continue;
    if (t->ref >= nw)
      return FL_ERR(FLAGOS_ERR_CORRUPT, "initializer '%s' refers to weight %lld, but the manifest lists %d",
                    g->values[i]->name, (long long)t->ref, nw);
    const cJSON *w = cJSON_GetArrayItem(wj, (int)t->ref);
    double off = cJSON_GetNumberValue(cJSON_GetObjectItem(w, "offset"));
    double nb = cJSON_GetNumberValue(cJSON_GetObjectItem(w, "nbytes"));
    if (!(off >= 0 && nb >= 0 && off + nb <= (double)wlen) || (size_t)nb != t->nbytes)
      return FL_ERR(FLAGOS_ERR_CORRUPT, "weight of initializer '%s' lies outside the weights section", g->values[i]->name);
    t->data = (void *)(weights + (size_t)off);
  }
  return NULL;
}

static flagos_status_t load(flagos_bundle_t *b) {
  size_t mlen, irlen, wlen;
  const char *mtext = bundle_file_section(b->file, "manifest", &mlen);
  const char *irtext = bundle_file_section(b->file, "flagir", &irlen);
  const unsigned char *weights = bundle_file_section(b->file, "weights", &wlen);
  if (!mtext) return FL_ERR(FLAGOS_ERR_CORRUPT, "bundle has no 'manifest' section");
  if (!irtext) return FL_ERR(FLAGOS_ERR_CORRUPT, "bundle has no 'flagir' section");
  FL_TRY(fir_parse(irtext, irlen, &b->model));
  cJSON *root = cJSON_ParseWithLength(mtext, mlen);
  if (!root) return bad("not valid JSON");
  flagos_status_t st = NULL;
  const cJSON *fmt = cJSON_GetObjectItem(root, "format");
  if (!cJSON_IsNumber(fmt)) st = bad("no format number");
  else if (fmt->valueint > MANIFEST_FORMAT)
    st = FL_ERR(FLAGOS_ERR_CORRUPT, "bundle manifest format %d is newer than this FlagOS supports (%d)", fmt->valueint,
                MANIFEST_FORMAT);
  const cJSON *kj = cJSON_GetObjectItem(root, "kernels"), *kt;
  cJSON_ArrayForEach(kt, kj) {
    if (st || b->n_code == 8) break;
    const cJSON *sec = cJSON_GetObjectItem(kt, "section"), *fmt2 = cJSON_GetObjectItem(kt, "format");
    if (!cJSON_IsString(sec) || !cJSON_IsString(fmt2) || !kt->string) {
      st = bad("kernels entry");
      break;
    }
    size_t n = 0;
    const void *data = bundle_file_section(b->file, sec->valuestring, &n);
    if (!data) {
      st = FL_ERR(FLAGOS_ERR_CORRUPT, "bundle has no '%s' section, which its manifest lists", sec->valuestring);
      break;
    }
    b->code[b->n_code].target = fl_arena_strdup(b->arena, kt->string);
    b->code[b->n_code].format = fl_arena_strdup(b->arena, fmt2->valuestring);
    b->code[b->n_code].data = data;
    b->code[b->n_code].size = n;
    b->n_code++;
  }
  if (!st) st = bind_weights(b->model->graph, cJSON_GetObjectItem(root, "weights"), weights, wlen);
  if (!st) st = parse_plan(b, b->model->graph, cJSON_GetObjectItem(root, "nodes"), &b->main);
  cJSON_Delete(root);
  return st;
}

flagos_status_t rt_bundle_from_file(bundle_file_t *f, flagos_bundle_t **out) {
  flagos_bundle_t *b = calloc(1, sizeof(*b));
  if (!b) {
    bundle_file_close(f);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  b->file = f;
  b->arena = fl_arena_create();
  flagos_status_t st = load(b);
  if (st) {
    flagos_bundle_close(b);
    return st;
  }
  *out = b;
  return NULL;
}

flagos_status_t flagos_bundle_open(const char *path, flagos_bundle_t **out) {
  bundle_file_t *f;
  FL_TRY(bundle_file_open(path, &f));
  return flagos_status_wrap(rt_bundle_from_file(f, out), "%s", path);
}

void flagos_bundle_close(flagos_bundle_t *b) {
  if (!b) return;
  fir_model_destroy(b->model);
  fl_arena_destroy(b->arena);
  bundle_file_close(b->file);
  free(b);
}

int flagos_bundle_num_inputs(const flagos_bundle_t *b) { return b->model->graph->n_inputs; }
int flagos_bundle_num_outputs(const flagos_bundle_t *b) { return b->model->graph->n_outputs; }

static flagos_status_t io_info(const fir_value_t *v, flagos_io_info_t *out) {
  memset(out, 0, sizeof(*out));
  out->name = v->name;
  const fir_type_t *t = v->type;
  out->kind = t->kind == FIR_TYPE_SEQUENCE ? FLAGOS_VALUE_SEQUENCE
              : t->kind == FIR_TYPE_OPTIONAL ? FLAGOS_VALUE_OPTIONAL
                                             : FLAGOS_VALUE_TENSOR;
  if (t->kind != FIR_TYPE_TENSOR && t->elem) t = t->elem;
  if (t->kind == FIR_TYPE_OPTIONAL && t->elem) t = t->elem; /* optional<sequence<...>> */
  if (t->kind == FIR_TYPE_SEQUENCE && t->elem) t = t->elem;
  out->dtype = t->dtype;
  out->rank = t->rank > FLAGOS_MAX_RANK ? FLAGOS_MAX_RANK : t->rank;
  for (int i = 0; i < out->rank; i++) {
    out->dims[i] = t->dims[i].value;
    out->dim_names[i] = t->dims[i].sym;
  }
  return NULL;
}

flagos_status_t flagos_bundle_input(const flagos_bundle_t *b, int i, flagos_io_info_t *out) {
  if (i < 0 || i >= b->model->graph->n_inputs) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "no input %d", i);
  return io_info(b->model->graph->inputs[i], out);
}

flagos_status_t flagos_bundle_output(const flagos_bundle_t *b, int i, flagos_io_info_t *out) {
  if (i < 0 || i >= b->model->graph->n_outputs) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "no output %d", i);
  return io_info(b->model->graph->outputs[i], out);
}
