#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static fir_tensor_t *scalar_or_list(fir_model_t *m, flagos_dtype_t dt, int rank, int64_t n) {
  int64_t dims[1] = {n};
  return fir_tensor_create(m, dt, rank, dims);
}

/* The tensor a Constant node's attribute describes, or an error for a malformed node. */
static flagos_status_t constant_value(fir_model_t *m, const fir_node_t *n, fir_tensor_t **out) {
  if (n->n_attrs != 1)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "Constant node '%s' must have exactly one attribute, has %d", n->name,
                  n->n_attrs);
  const fir_attr_t *a = &n->attrs[0];
  fir_tensor_t *t = NULL;
  if (strcmp(a->name, "value") == 0 || strcmp(a->name, "sparse_value") == 0) {
    t = a->t;
  } else if (strcmp(a->name, "value_float") == 0) {
    t = scalar_or_list(m, FLAGOS_FLOAT32, 0, 1);
    ((float *)t->data)[0] = a->f;
  } else if (strcmp(a->name, "value_int") == 0) {
    t = scalar_or_list(m, FLAGOS_INT64, 0, 1);
    ((int64_t *)t->data)[0] = a->i;
  } else if (strcmp(a->name, "value_floats") == 0) {
    t = scalar_or_list(m, FLAGOS_FLOAT32, 1, a->n);
    if (a->n) memcpy(t->data, a->floats, sizeof(float) * (size_t)a->n);
  } else if (strcmp(a->name, "value_ints") == 0) {
    t = scalar_or_list(m, FLAGOS_INT64, 1, a->n);
    if (a->n) memcpy(t->data, a->ints, sizeof(int64_t) * (size_t)a->n);
  } else if (strcmp(a->name, "value_string") == 0) {
    t = scalar_or_list(m, FLAGOS_STRING, 0, 1);
    ((char **)t->data)[0] = fl_arena_strndup(m->arena, a->s, a->s_len);
    t->string_lens[0] = a->s_len;
  } else if (strcmp(a->name, "value_strings") == 0) {
    t = scalar_or_list(m, FLAGOS_STRING, 1, a->n);
    for (int i = 0; i < a->n; i++) {
      size_t len = a->string_lens ? a->string_lens[i] : strlen(a->strings[i]);
      ((char **)t->data)[i] = fl_arena_strndup(m->arena, a->strings[i], len);
      t->string_lens[i] = len;
    }
  }
  if (!t) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "Constant node '%s' has unknown attribute '%s'", n->name, a->name);
  *out = t;
  return NULL;
}

static flagos_status_t graph_constants(fir_model_t *m, fir_graph_t *g) {
  bool *dead = fl_arena_alloc(m->arena, sizeof(bool) * (size_t)(g->n_nodes + 1));
  bool any = false;
  for (int i = 0; i < g->n_nodes; i++) {
    fir_node_t *n = g->nodes[i];
    for (int a = 0; a < n->n_attrs; a++) {
      if (n->attrs[a].kind == FIR_ATTR_GRAPH && n->attrs[a].g) FL_TRY(graph_constants(m, n->attrs[a].g));
      if (n->attrs[a].kind == FIR_ATTR_GRAPHS)
        for (int j = 0; j < n->attrs[a].n; j++) FL_TRY(graph_constants(m, n->attrs[a].graphs[j]));
    }
    if (strcmp(n->op_type, "Constant") != 0 || n->domain[0] || n->n_outputs != 1 || !n->outputs[0]) continue;
    fir_tensor_t *t = NULL;
    FL_TRY(constant_value(m, n, &t));
    fir_value_t *v = n->outputs[0];
    t->name = v->name;
    v->init = t;
    v->producer = NULL;
    v->type = fir_type_tensor(m, t->dtype, t->rank, t->dims);
    dead[i] = true;
    any = true;
  }
  if (any) fir_graph_remove_nodes(g, dead);
  return NULL;
}

flagos_status_t pass_constants_to_initializers(fir_model_t *m) { return graph_constants(m, m->graph); }

flagos_status_t pass_apply_shapes(fir_model_t *m, const char *spec) {
  if (!spec || !*spec) return NULL;
  char *s = fl_arena_strdup(m->arena, spec);
  for (char *item = strtok(s, ";,"); item; item = strtok(NULL, ";,")) {
    /* strtok is not reentrant, but nothing below calls it. */
    char *eq = strchr(item, '=');
    if (!eq) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "--shape '%s': expected NAME=DIMxDIM...", item);
    *eq = 0;
    const char *name = item, *dims = eq + 1;
    int64_t vals[64];
    int nd = 0;
    const char *p = dims;
    while (*p && nd < 64) {
      char *end;
      long long v = strtoll(p, &end, 10);
      if (end == p || v < 0) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "--shape %s=%s: '%s' is not a dimension", name, dims, p);
      vals[nd++] = v;
      p = end;
      if (*p == 'x' || *p == 'X') p++;
      else if (*p) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "--shape %s=%s: unexpected '%c'", name, dims, *p);
    }
    bool found = false;
    fir_graph_t *g = m->graph;
    for (int i = 0; i < g->n_inputs; i++) {
      fir_value_t *v = g->inputs[i];
      if (strcmp(v->name, name) != 0) continue;
      found = true;
      if (v->type->kind != FIR_TYPE_TENSOR)
        return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "--shape %s: input is not a tensor", name);
      if (v->type->rank >= 0 && v->type->rank != nd)
        return FL_ERR(FLAGOS_ERR_SHAPE, "--shape %s=%s: the input has rank %d, not %d", name, dims, v->type->rank, nd);
      for (int d = 0; d < v->type->rank; d++)
        if (v->type->dims[d].value >= 0 && v->type->dims[d].value != vals[d])
          return FL_ERR(FLAGOS_ERR_SHAPE, "--shape %s=%s: dimension %d is fixed to %lld by the model", name, dims, d,
                        (long long)v->type->dims[d].value);
      v->type = fir_type_tensor(m, v->type->dtype, nd, vals);
    }
    if (!found && nd == 1) {
      /* NAME=V binds a symbolic dimension wherever it appears on the inputs. */
      for (int i = 0; i < g->n_inputs; i++) {
        fir_type_t *t = g->inputs[i]->type;
        for (int d = 0; t->kind == FIR_TYPE_TENSOR && d < t->rank; d++)
          if (t->dims[d].sym && strcmp(t->dims[d].sym, name) == 0) {
            t->dims[d].value = vals[0];
            t->dims[d].sym = NULL;
            found = true;
          }
      }
    }
    if (!found) return FL_ERR(FLAGOS_ERR_NOT_FOUND, "--shape: the model has no input or dimension named '%s'", name);
  }
  return NULL;
}
