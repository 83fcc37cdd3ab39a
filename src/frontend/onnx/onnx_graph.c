/* GraphProto -> fir_graph_t: values, initializers, nodes, and the scoping of names
 * across subgraphs. */
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx_internal.h"

/* ---- the model-wide name table (open addressing, keys are the values' names) ---- */

static size_t slot_of(const onnx_names_t *t, const char *name) {
  size_t mask = t->cap - 1, i = (size_t)fl_hash64(name, strlen(name), 0) & mask;
  while (t->slots[i] && strcmp(t->slots[i]->name, name) != 0) i = (i + 1) & mask;
  return i;
}

fir_value_t *onnx_names_get(const onnx_names_t *t, const char *name) {
  return t->cap ? t->slots[slot_of(t, name)] : NULL;
}

static void names_put(onnx_names_t *t, fir_value_t *v) {
  if ((t->count + 1) * 2 > t->cap) {
    onnx_names_t n = {calloc(t->cap ? t->cap * 2 : 64, sizeof(fir_value_t *)), t->cap ? t->cap * 2 : 64, 0};
    if (!n.slots) {
      fputs("flagos: out of memory\n", stderr);
      abort();
    }
    for (size_t i = 0; i < t->cap; i++)
      if (t->slots[i]) n.slots[slot_of(&n, t->slots[i]->name)] = t->slots[i];
    n.count = t->count;
    free(t->slots);
    *t = n;
  }
  t->slots[slot_of(t, v->name)] = v;
  t->count++;
}

void onnx_names_free(onnx_names_t *t) {
  free(t->slots);
  memset(t, 0, sizeof(*t));
}

static flagos_status_t define(onnx_ctx_t *c, fir_graph_t *g, const char *name, fir_type_t *type, fir_value_t **out) {
  fir_value_t *old = onnx_names_get(&c->names, name);
  if (old)
    return FL_ERR(FLAGOS_ERR_CORRUPT,
                  "value name '%s' is defined twice (first in graph '%s'); FlagOS needs unique names", name,
                  onnx_show(old->graph->name));
  fir_value_t *v = fir_value_create(g, name, type);
  names_put(&c->names, v);
  *out = v;
  return NULL;
}

/* A name is visible in g when it is defined in g or in a graph enclosing g. */
static fir_value_t *lookup(onnx_ctx_t *c, const fir_graph_t *g, const char *name) {
  fir_value_t *v = onnx_names_get(&c->names, name);
  if (!v) return NULL;
  for (; g; g = g->parent)
    if (v->graph == g) return v;
  return NULL;
}

/* ---- graphs ---- */

static const char *node_label(fl_arena_t *a, const Onnx__NodeProto *np, size_t idx) {
  return np->name && *np->name ? fl_arena_printf(a, "node '%s' (%s)", np->name, onnx_show(np->op_type))
                               : fl_arena_printf(a, "node #%zu (%s)", idx, onnx_show(np->op_type));
}

static flagos_status_t add_initializer(onnx_ctx_t *c, fir_graph_t *g, fir_tensor_t *t) {
  if (!t->name || !*t->name) return FL_ERR(FLAGOS_ERR_CORRUPT, "an initializer has no name");
  fir_value_t *v;
  FL_TRY(define(c, g, t->name, fir_type_tensor(c->m, t->dtype, t->rank, t->dims), &v));
  v->init = t;
  return NULL;
}

static flagos_status_t convert_node(onnx_ctx_t *c, fir_graph_t *g, const Onnx__NodeProto *np, const char *label) {
  if (!np->op_type || !*np->op_type) return FL_ERR(FLAGOS_ERR_CORRUPT, "%s has no op_type", label);
  fir_value_t **ins = fl_arena_alloc(c->m->arena, sizeof(*ins) * (np->n_input + 1));
  fir_value_t **outs = fl_arena_alloc(c->m->arena, sizeof(*outs) * (np->n_output + 1));
  for (size_t i = 0; i < np->n_input; i++) {
    const char *nm = np->input[i];
    if (!nm || !*nm) continue; /* omitted optional input */
    ins[i] = lookup(c, g, nm);
    if (!ins[i]) {
      fir_value_t *other = onnx_names_get(&c->names, nm);
      if (other)
        return FL_ERR(FLAGOS_ERR_CORRUPT, "%s: input '%s' is defined in subgraph '%s', which is not visible here",
                      label, nm, onnx_show(other->graph->name));
      return FL_ERR(FLAGOS_ERR_CORRUPT, "%s: input '%s' is not defined (not a graph input, initializer or node output)",
                    label, nm);
    }
  }
  for (size_t i = 0; i < np->n_output; i++)
    if (np->output[i] && *np->output[i]) outs[i] = onnx_names_get(&c->names, np->output[i]);
  if (np->n_input > INT32_MAX || np->n_output > INT32_MAX)
    return FL_ERR(FLAGOS_ERR_CORRUPT, "%s has too many inputs", label);
  fir_node_t *n = fir_node_create(g, np->op_type, np->domain ? np->domain : "", np->name ? np->name : "",
                                  (int)np->n_input, ins, (int)np->n_output, outs);
  for (size_t i = 0; i < np->n_attribute; i++)
    FL_TRY(flagos_status_wrap(onnx_attr_convert(c, n, np->attribute[i]), "%s", label));
  return NULL;
}

/* Attaches a declared type to a value defined in g; initializers keep the type
 * their data gives them. */
static flagos_status_t attach_type(onnx_ctx_t *c, fir_value_t *v, const Onnx__TypeProto *tp) {
  if (!tp || v->init) return NULL;
  fir_type_t *t;
  FL_TRY(onnx_type_convert(c, tp, &t));
  if (t->kind != FIR_TYPE_UNKNOWN) v->type = t;
  return NULL;
}

flagos_status_t onnx_graph_convert(onnx_ctx_t *c, fir_graph_t *g, const Onnx__GraphProto *gp) {
  fl_arena_t *a = c->m->arena;
  for (size_t i = 0; i < gp->n_initializer; i++) {
    fir_tensor_t *t;
    FL_TRY(flagos_status_wrap(onnx_tensor_convert(c, gp->initializer[i], &t), "initializer #%zu", i));
    FL_TRY(add_initializer(c, g, t));
  }
  for (size_t i = 0; i < gp->n_sparse_initializer; i++) {
    fir_tensor_t *t;
    FL_TRY(flagos_status_wrap(onnx_sparse_convert(c, gp->sparse_initializer[i], &t), "sparse initializer #%zu", i));
    FL_TRY(add_initializer(c, g, t));
  }
  for (size_t i = 0; i < gp->n_input; i++) {
    const Onnx__ValueInfoProto *vi = gp->input[i];
    if (!vi->name || !*vi->name) return FL_ERR(FLAGOS_ERR_CORRUPT, "graph input #%zu has no name", i);
    fir_value_t *v = onnx_names_get(&c->names, vi->name);
    /* Old exporters list initializers among the inputs too (as defaults a caller
     * could override); FlagOS treats them as constants. */
    if (v && v->graph == g && v->init) continue;
    fir_type_t *t;
    FL_TRY(flagos_status_wrap(onnx_type_convert(c, vi->type, &t), "graph input '%s'", vi->name));
    FL_TRY(define(c, g, vi->name, t, &v));
    fir_graph_add_input(g, v);
  }
  /* All node outputs are defined before any node is converted, so that nodes
   * listed out of order and subgraphs using later outer values still resolve. */
  for (size_t i = 0; i < gp->n_node; i++) {
    const Onnx__NodeProto *np = gp->node[i];
    for (size_t k = 0; k < np->n_output; k++) {
      if (!np->output[k] || !*np->output[k]) continue;
      fir_value_t *v;
      FL_TRY(flagos_status_wrap(define(c, g, np->output[k], NULL, &v), "%s", node_label(a, np, i)));
    }
  }
  for (size_t i = 0; i < gp->n_value_info; i++) {
    const Onnx__ValueInfoProto *vi = gp->value_info[i];
    fir_value_t *v = vi->name ? onnx_names_get(&c->names, vi->name) : NULL;
    if (v && v->graph == g) FL_TRY(flagos_status_wrap(attach_type(c, v, vi->type), "value_info '%s'", vi->name));
  }
  for (size_t i = 0; i < gp->n_node; i++) FL_TRY(convert_node(c, g, gp->node[i], node_label(a, gp->node[i], i)));
  for (size_t i = 0; i < gp->n_output; i++) {
    const Onnx__ValueInfoProto *vi = gp->output[i];
    const char *nm = vi->name ? vi->name : "";
    fir_value_t *v = lookup(c, g, nm);
    if (!v) return FL_ERR(FLAGOS_ERR_CORRUPT, "graph output '%s' is not defined", nm);
    if (v->graph == g) FL_TRY(flagos_status_wrap(attach_type(c, v, vi->type), "graph output '%s'", nm));
    fir_graph_add_output(g, v);
  }
  return NULL;
}
