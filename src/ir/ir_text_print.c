/* FlagIR text printer. The spelling is specified in docs/flagir.md; the parser
 * (ir_text_parse*.c) must read back exactly what is written here, so every
 * choice below has a twin there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir_text_internal.h"

typedef struct printer {
  fl_buf_t *b;
  bool inline_weights;
} printer_t;

static void put_graph(printer_t *p, const fir_graph_t *g, int indent);

static void put_indent(fl_buf_t *b, int indent) {
  for (int i = 0; i < indent; i++) fl_buf_puts(b, "  ");
}

static void put_cstring(fl_buf_t *b, const char *s) { fir_text_put_string(b, s ? s : "", s ? strlen(s) : 0); }

static void put_word(fl_buf_t *b, const char *s) {
  if (fir_text_word_bare(s)) fl_buf_puts(b, s);
  else put_cstring(b, s);
}

static void put_value_name(fl_buf_t *b, const fir_value_t *v) {
  fl_buf_putc(b, '%');
  if (fir_text_value_name_bare(v->name)) fl_buf_puts(b, v->name);
  else put_cstring(b, v->name);
}

static void put_dtype(fl_buf_t *b, flagos_dtype_t dt) { fl_buf_puts(b, flagos_dtype_name(dt)); }

static void put_type(fl_buf_t *b, const fir_type_t *t) {
  if (!t) {
    fl_buf_putc(b, '?');
    return;
  }
  switch (t->kind) {
  case FIR_TYPE_TENSOR:
    put_dtype(b, t->dtype);
    if (t->rank < 0) {
      fl_buf_puts(b, "[*]");
      return;
    }
    fl_buf_putc(b, '[');
    for (int i = 0; i < t->rank; i++) {
      if (i) fl_buf_putc(b, ',');
      const fir_dim_t *d = t->dims ? &t->dims[i] : NULL;
      if (d && d->value >= 0) fl_buf_printf(b, "%lld", (long long)d->value);
      else if (d && d->sym) put_word(b, d->sym);
      else fl_buf_putc(b, '?');
    }
    fl_buf_putc(b, ']');
    return;
  case FIR_TYPE_SEQUENCE:
  case FIR_TYPE_OPTIONAL:
    fl_buf_puts(b, t->kind == FIR_TYPE_SEQUENCE ? "seq<" : "opt<");
    put_type(b, t->elem);
    fl_buf_putc(b, '>');
    return;
  case FIR_TYPE_MAP:
    fl_buf_puts(b, "map<");
    put_dtype(b, t->dtype);
    fl_buf_puts(b, ", ");
    put_type(b, t->elem);
    fl_buf_putc(b, '>');
    return;
  default:
    fl_buf_putc(b, '?');
  }
}

static bool type_known(const fir_type_t *t) { return t && t->kind != FIR_TYPE_UNKNOWN && t->kind <= FIR_TYPE_MAP; }

/* `%x: f32[3]`, or `%x` alone while the type is unknown. */
static void put_value_decl(fl_buf_t *b, const fir_value_t *v) {
  put_value_name(b, v);
  if (type_known(v->type)) {
    fl_buf_puts(b, ": ");
    put_type(b, v->type);
  }
}

/* ---- tensors ---- */

static bool listable(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_BOOL:
  case FLAGOS_UINT8:
  case FLAGOS_INT8:
  case FLAGOS_UINT16:
  case FLAGOS_INT16:
  case FLAGOS_UINT32:
  case FLAGOS_INT32:
  case FLAGOS_UINT64:
  case FLAGOS_INT64:
  case FLAGOS_UINT4:
  case FLAGOS_INT4:
  case FLAGOS_UINT2:
  case FLAGOS_INT2:
  case FLAGOS_FLOAT32:
  case FLAGOS_FLOAT64:
  case FLAGOS_STRING: return true;
  default: return false;
  }
}

static void put_element(fl_buf_t *b, flagos_dtype_t dt, const void *data, size_t i) {
  char t[32];
  switch (dt) {
  case FLAGOS_FLOAT32: fir_text_put_f32(b, ((const float *)data)[i]); return;
  case FLAGOS_FLOAT64: fir_text_put_f64(b, ((const double *)data)[i]); return;
  case FLAGOS_UINT64: snprintf(t, sizeof t, "%llu", (unsigned long long)((const uint64_t *)data)[i]); break;
  default: snprintf(t, sizeof t, "%lld", (long long)fl_load_as_int64(dt, data, i)); break;
  }
  fl_buf_puts(b, t);
}

static void put_tensor_payload(printer_t *p, const fir_tensor_t *t) {
  fl_buf_t *b = p->b;
  if (t->ref >= 0 && (!p->inline_weights || !t->data)) {
    fl_buf_printf(b, "@w%lld", (long long)t->ref);
    return;
  }
  if (!t->data) {
    fl_buf_puts(b, "@none");
    return;
  }
  size_t n = t->numel > 0 ? (size_t)t->numel : 0;
  if (listable(t->dtype)) {
    fl_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
      if (i) fl_buf_puts(b, ", ");
      if (t->dtype == FLAGOS_STRING) {
        const char *s = ((char *const *)t->data)[i];
        size_t len = s ? (t->string_lens ? t->string_lens[i] : strlen(s)) : 0;
        fir_text_put_string(b, s ? s : "", len);
      } else {
        put_element(b, t->dtype, t->data, i);
      }
    }
    fl_buf_putc(b, ']');
    return;
  }
  static const char hex[] = "0123456789abcdef";
  size_t nb = n * flagos_dtype_size(t->dtype);
  const unsigned char *d = t->data;
  fl_buf_puts(b, "dense<\"");
  fl_buf_reserve(b, nb * 2 + 2);
  for (size_t i = 0; i < nb; i++) {
    b->data[b->len++] = hex[d[i] >> 4];
    b->data[b->len++] = hex[d[i] & 15];
  }
  b->data[b->len] = 0;
  fl_buf_puts(b, "\">");
}

/* `tensor<"name": f32[2,3]>`; the name part only when the tensor has a
 * non-empty one (ONNX writes "" for unnamed attribute tensors). */
static void put_tensor_header(fl_buf_t *b, const fir_tensor_t *t, bool with_name) {
  fl_buf_puts(b, "tensor<");
  if (with_name && t->name && t->name[0]) {
    put_cstring(b, t->name);
    fl_buf_puts(b, ": ");
  }
  put_dtype(b, t->dtype);
  fl_buf_putc(b, '[');
  for (int i = 0; i < t->rank; i++) {
    if (i) fl_buf_putc(b, ',');
    fl_buf_printf(b, "%lld", (long long)(t->dims ? t->dims[i] : 0));
  }
  fl_buf_puts(b, "]>");
}

static void put_tensor(printer_t *p, const fir_tensor_t *t) {
  put_tensor_header(p->b, t, true);
  fl_buf_putc(p->b, ' ');
  put_tensor_payload(p, t);
}

/* The `tensor<...>` header of an initializer is left out when the value's type
 * already says the same dtype and static shape. */
static bool type_matches_tensor(const fir_type_t *ty, const fir_tensor_t *t) {
  if (!ty || ty->kind != FIR_TYPE_TENSOR || ty->dtype != t->dtype || ty->rank != t->rank || t->rank < 0) return false;
  for (int i = 0; i < t->rank; i++)
    if (!ty->dims || !t->dims || ty->dims[i].value < 0 || ty->dims[i].value != t->dims[i]) return false;
  return true;
}

/* ---- attributes ---- */

/* Malformed attributes (payload pointer missing) print as `?`, the spelling of
 * an undefined attribute, so printing never dereferences NULL. */
static bool attr_printable(const fir_attr_t *a) {
  switch (a->kind) {
  case FIR_ATTR_FLOAT:
  case FIR_ATTR_INT: return true;
  case FIR_ATTR_STRING: return true;
  case FIR_ATTR_TENSOR:
  case FIR_ATTR_SPARSE_TENSOR: return a->t != NULL;
  case FIR_ATTR_GRAPH: return a->g != NULL;
  case FIR_ATTR_TYPE: return a->tp != NULL;
  case FIR_ATTR_FLOATS: return a->n <= 0 || a->floats;
  case FIR_ATTR_INTS: return a->n <= 0 || a->ints;
  case FIR_ATTR_STRINGS:
    if (a->n > 0 && !a->strings) return false;
    for (int i = 0; i < a->n; i++)
      if (!a->strings[i]) return false;
    return true;
  case FIR_ATTR_TENSORS:
  case FIR_ATTR_SPARSE_TENSORS:
    if (a->n > 0 && !a->tensors) return false;
    for (int i = 0; i < a->n; i++)
      if (!a->tensors[i]) return false;
    return true;
  case FIR_ATTR_GRAPHS:
    if (a->n > 0 && !a->graphs) return false;
    for (int i = 0; i < a->n; i++)
      if (!a->graphs[i]) return false;
    return true;
  case FIR_ATTR_TYPES:
    if (a->n > 0 && !a->types) return false;
    for (int i = 0; i < a->n; i++)
      if (!a->types[i]) return false;
    return true;
  default: return false;
  }
}

static const char *list_kind_name(fir_attr_kind_t k) {
  switch (k) {
  case FIR_ATTR_FLOATS: return "floats";
  case FIR_ATTR_INTS: return "ints";
  case FIR_ATTR_STRINGS: return "strings";
  case FIR_ATTR_TENSORS: return "tensors";
  case FIR_ATTR_GRAPHS: return "graphs";
  case FIR_ATTR_SPARSE_TENSORS: return "sparse_tensors";
  case FIR_ATTR_TYPES: return "types";
  default: return NULL;
  }
}

static void put_attr_value(printer_t *p, const fir_attr_t *a, int indent) {
  fl_buf_t *b = p->b;
  if (!attr_printable(a)) {
    fl_buf_putc(b, '?');
    return;
  }
  switch (a->kind) {
  case FIR_ATTR_FLOAT: fir_text_put_f32(b, a->f); return;
  case FIR_ATTR_INT: fl_buf_printf(b, "%lld", (long long)a->i); return;
  case FIR_ATTR_STRING: fir_text_put_string(b, a->s ? a->s : "", a->s ? a->s_len : 0); return;
  case FIR_ATTR_TENSOR: put_tensor(p, a->t); return;
  case FIR_ATTR_SPARSE_TENSOR:
    fl_buf_puts(b, "sparse ");
    put_tensor(p, a->t);
    return;
  case FIR_ATTR_GRAPH: put_graph(p, a->g, indent); return;
  case FIR_ATTR_TYPE:
    fl_buf_puts(b, "type<");
    put_type(b, a->tp);
    fl_buf_putc(b, '>');
    return;
  default: break;
  }
  int n = a->n > 0 ? a->n : 0;
  fl_buf_putc(b, '[');
  for (int i = 0; i < n; i++) {
    if (i) fl_buf_puts(b, ", ");
    switch (a->kind) {
    case FIR_ATTR_FLOATS: fir_text_put_f32(b, a->floats[i]); break;
    case FIR_ATTR_INTS: fl_buf_printf(b, "%lld", (long long)a->ints[i]); break;
    case FIR_ATTR_STRINGS:
      fir_text_put_string(b, a->strings[i], a->string_lens ? a->string_lens[i] : strlen(a->strings[i]));
      break;
    case FIR_ATTR_TENSORS: put_tensor(p, a->tensors[i]); break;
    case FIR_ATTR_SPARSE_TENSORS:
      fl_buf_puts(b, "sparse ");
      put_tensor(p, a->tensors[i]);
      break;
    case FIR_ATTR_GRAPHS: put_graph(p, a->graphs[i], indent); break;
    case FIR_ATTR_TYPES:
      fl_buf_puts(b, "type<");
      put_type(b, a->types[i]);
      fl_buf_putc(b, '>');
      break;
    default: break;
    }
  }
  fl_buf_putc(b, ']');
  /* Only an empty list needs its kind spelled out; elements say it otherwise. */
  if (n == 0) fl_buf_printf(b, " : %s", list_kind_name(a->kind));
}

static bool attr_has_graph(const fir_attr_t *a) {
  return (a->kind == FIR_ATTR_GRAPH || a->kind == FIR_ATTR_GRAPHS) && attr_printable(a) &&
         (a->kind == FIR_ATTR_GRAPH || a->n > 0);
}

/* Attributes on one line, unless a subgraph is among them: then one per line. */
static void put_attrs(printer_t *p, const fir_node_t *n, int indent) {
  fl_buf_t *b = p->b;
  if (n->n_attrs <= 0) return;
  bool multiline = false;
  for (int i = 0; i < n->n_attrs; i++) multiline = multiline || attr_has_graph(&n->attrs[i]);
  fl_buf_puts(b, " {");
  for (int i = 0; i < n->n_attrs; i++) {
    const fir_attr_t *a = &n->attrs[i];
    if (multiline) {
      fl_buf_puts(b, i ? ",\n" : "\n");
      put_indent(b, indent + 1);
    } else if (i) {
      fl_buf_puts(b, ", ");
    }
    put_word(b, a->name ? a->name : "");
    fl_buf_puts(b, " = ");
    put_attr_value(p, a, indent + 1);
  }
  if (multiline) {
    fl_buf_putc(b, '\n');
    put_indent(b, indent);
  }
  fl_buf_putc(b, '}');
}

/* ---- nodes and graphs ---- */

static void put_node(printer_t *p, const fir_node_t *n, int indent) {
  fl_buf_t *b = p->b;
  put_indent(b, indent);
  for (int i = 0; i < n->n_outputs; i++) {
    if (i) fl_buf_puts(b, ", ");
    if (n->outputs[i]) put_value_decl(b, n->outputs[i]);
    else fl_buf_putc(b, '_');
  }
  if (n->n_outputs > 0) fl_buf_puts(b, " = ");
  /* "ai.onnx" is the default domain under its long name; fir_node_create (and
   * so the parser) stores it as "", so it is printed as "" too. */
  if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0) {
    put_word(b, n->domain);
    fl_buf_puts(b, "::");
  }
  put_word(b, n->op_type ? n->op_type : "");
  if (n->name && n->name[0]) {
    fl_buf_putc(b, ' ');
    put_cstring(b, n->name);
    fl_buf_putc(b, ' ');
  }
  fl_buf_putc(b, '(');
  for (int i = 0; i < n->n_inputs; i++) {
    if (i) fl_buf_puts(b, ", ");
    if (n->inputs[i]) put_value_name(b, n->inputs[i]);
    else fl_buf_putc(b, '_');
  }
  fl_buf_putc(b, ')');
  put_attrs(p, n, indent);
  fl_buf_putc(b, '\n');
}

static void put_init_payload(printer_t *p, const fir_value_t *v) {
  if (type_matches_tensor(v->type, v->init)) {
    put_tensor_payload(p, v->init);
  } else {
    /* The tensor's own name is the value's; it is not repeated. */
    put_tensor_header(p->b, v->init, false);
    fl_buf_putc(p->b, ' ');
    put_tensor_payload(p, v->init);
  }
  fl_buf_putc(p->b, '\n');
}

/* Defaults of inputs first, in input order, then the other initializers in
 * definition order: a parsed graph defines all its inputs before any `const`,
 * so this is the order a re-print of the parsed graph finds again. */
static void put_initializers(printer_t *p, const fir_graph_t *g, int indent) {
  fl_buf_t *b = p->b;
  bool *is_input = calloc((size_t)(g->n_values > 0 ? g->n_values : 1), sizeof(bool));
  if (!is_input) abort();
  for (int i = 0; i < g->n_inputs; i++) {
    const fir_value_t *v = g->inputs[i];
    if (!v) continue;
    if (v->id >= 0 && v->id < g->n_values && g->values[v->id] == v) is_input[v->id] = true;
    if (!v->init) continue;
    put_indent(b, indent);
    put_value_name(b, v);
    fl_buf_puts(b, " = default ");
    put_init_payload(p, v);
  }
  for (int i = 0; i < g->n_values; i++) {
    const fir_value_t *v = g->values[i];
    if (!v || !v->init || is_input[i]) continue;
    put_indent(b, indent);
    put_value_decl(b, v);
    fl_buf_puts(b, " = const ");
    put_init_payload(p, v);
  }
  free(is_input);
}

static void put_graph(printer_t *p, const fir_graph_t *g, int indent) {
  fl_buf_t *b = p->b;
  fl_buf_puts(b, "graph ");
  put_cstring(b, g->name);
  fl_buf_puts(b, " (");
  for (int i = 0; i < g->n_inputs; i++) {
    if (i) fl_buf_puts(b, ", ");
    if (g->inputs[i]) put_value_decl(b, g->inputs[i]);
    else fl_buf_putc(b, '_');
  }
  fl_buf_puts(b, ") -> (");
  for (int i = 0; i < g->n_outputs; i++) {
    if (i) fl_buf_puts(b, ", ");
    if (g->outputs[i]) put_value_decl(b, g->outputs[i]);
    else fl_buf_putc(b, '_');
  }
  fl_buf_puts(b, ") {\n");
  put_initializers(p, g, indent + 1);
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]) put_node(p, g->nodes[i], indent + 1);
  put_indent(b, indent);
  fl_buf_putc(b, '}');
}

void fir_print(fl_buf_t *b, const fir_model_t *m, bool inline_weights) {
  printer_t p = {b, inline_weights};
  fl_buf_printf(b, "flagir %d\n", FIR_TEXT_VERSION);
  fl_buf_printf(b, "ir_version %lld\n", (long long)m->ir_version);
  fl_buf_puts(b, "producer ");
  put_cstring(b, m->producer);
  fl_buf_putc(b, '\n');
  for (int i = 0; i < m->n_opsets; i++) {
    fl_buf_puts(b, "opset ");
    put_cstring(b, m->opsets[i].domain);
    fl_buf_printf(b, " %lld\n", (long long)m->opsets[i].version);
  }
  if (m->graph) {
    put_graph(&p, m->graph, 0);
    fl_buf_putc(b, '\n');
  }
}
