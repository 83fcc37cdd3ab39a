/* FlagIR parser, upper half: model header, graphs, statements, attributes, and
 * the late resolution of value references. Grammar: docs/flagir.md. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir_text_parse.h"

static bool parse_graph(fir_parser_t *p, fir_graph_t *parent, fir_graph_t **out);

/* ---- values ---- */

static bool define_value(fir_parser_t *p, fir_graph_t *g, const char *name, fir_type_t *type, size_t pos,
                         fir_value_t **out) {
  if (fir_nmap_get(&p->defs, g, name))
    return fir_p_error(p, pos, "value '%%%s' is already defined in this graph", name);
  fir_value_t *v = fir_value_create(g, name, type);
  fir_nmap_put(&p->defs, g, v->name, v);
  *out = v;
  return true;
}

static bool add_pending(fir_parser_t *p, const fir_pending_t *pe) {
  if (p->n_pend == p->cap_pend) {
    size_t nc = p->cap_pend ? p->cap_pend * 2 : 64;
    fir_pending_t *d = realloc(p->pend, nc * sizeof(*d));
    if (!d) return fir_p_error(p, pe->pos, "out of memory");
    p->pend = d;
    p->cap_pend = nc;
  }
  p->pend[p->n_pend++] = *pe;
  return true;
}

/* `%x` or `%x: type`; the type is unknown when left out. */
static bool parse_value_decl(fir_parser_t *p, const char **name, fir_type_t **type, bool *typed, const char *what) {
  if (!fir_p_value_name(p, name, what)) return false;
  *typed = false;
  if (fir_p_accept(p, ':')) {
    *typed = true;
    return fir_p_type(p, type);
  }
  *type = fir_type_unknown(p->m);
  return true;
}

/* ---- attributes ---- */

typedef enum { CAT_NONE, CAT_NUMBER, CAT_STRING, CAT_TENSOR, CAT_SPARSE, CAT_GRAPH, CAT_TYPE } category_t;

static category_t peek_category(fir_parser_t *p) {
  int c = fir_p_peek(p);
  if (c == '"') return CAT_STRING;
  if (c == '-' || (c >= '0' && c <= '9') || fir_p_peek_word(p, "inf") || fir_p_peek_word(p, "nan")) return CAT_NUMBER;
  if (fir_p_peek_word(p, "tensor")) return CAT_TENSOR;
  if (fir_p_peek_word(p, "sparse")) return CAT_SPARSE;
  if (fir_p_peek_word(p, "graph")) return CAT_GRAPH;
  if (fir_p_peek_word(p, "type")) return CAT_TYPE;
  return CAT_NONE;
}

static bool parse_type_literal(fir_parser_t *p, fir_type_t **out) {
  if (!fir_p_accept_word(p, "type") || !fir_p_expect(p, '<', "after 'type'")) return false;
  return fir_p_type(p, out) && fir_p_expect(p, '>', "to close type<...>");
}

static bool parse_sparse(fir_parser_t *p, fir_tensor_t **out) {
  fir_p_accept_word(p, "sparse");
  return fir_p_tensor(p, out);
}

static const struct {
  const char *name;
  fir_attr_kind_t kind;
} k_kinds[] = {
    {"undefined", FIR_ATTR_UNDEFINED}, {"float", FIR_ATTR_FLOAT},   {"int", FIR_ATTR_INT},
    {"string", FIR_ATTR_STRING},       {"tensor", FIR_ATTR_TENSOR}, {"graph", FIR_ATTR_GRAPH},
    {"sparse_tensor", FIR_ATTR_SPARSE_TENSOR}, {"type", FIR_ATTR_TYPE}, {"floats", FIR_ATTR_FLOATS},
    {"ints", FIR_ATTR_INTS},           {"strings", FIR_ATTR_STRINGS}, {"tensors", FIR_ATTR_TENSORS},
    {"graphs", FIR_ATTR_GRAPHS},       {"sparse_tensors", FIR_ATTR_SPARSE_TENSORS}, {"types", FIR_ATTR_TYPES},
};

static const char *kind_name(fir_attr_kind_t k) {
  for (size_t i = 0; i < FL_ARRAY_LEN(k_kinds); i++)
    if (k_kinds[i].kind == k) return k_kinds[i].name;
  return "?";
}

static bool is_list_kind(fir_attr_kind_t k) {
  return k == FIR_ATTR_FLOATS || k == FIR_ATTR_INTS || k == FIR_ATTR_STRINGS || k == FIR_ATTR_TENSORS ||
         k == FIR_ATTR_GRAPHS || k == FIR_ATTR_SPARSE_TENSORS || k == FIR_ATTR_TYPES;
}

static fir_attr_kind_t list_kind_of(category_t c, bool any_float) {
  switch (c) {
  case CAT_NUMBER: return any_float ? FIR_ATTR_FLOATS : FIR_ATTR_INTS;
  case CAT_STRING: return FIR_ATTR_STRINGS;
  case CAT_TENSOR: return FIR_ATTR_TENSORS;
  case CAT_SPARSE: return FIR_ATTR_SPARSE_TENSORS;
  case CAT_GRAPH: return FIR_ATTR_GRAPHS;
  case CAT_TYPE: return FIR_ATTR_TYPES;
  default: return FIR_ATTR_UNDEFINED;
  }
}

/* Reads `[...]`; numbers stay as text in *nums until the kind is settled. */
static bool parse_list(fir_parser_t *p, fir_graph_t *g, fir_attr_t *a, fir_num_t **nums, category_t *cat,
                       bool *any_float) {
  int cap = 0, scap = 0;
  *cat = CAT_NONE;
  *any_float = false;
  a->n = 0;
  if (!fir_p_enter(p)) return false;
  if (fir_p_peek(p) != ']') {
    *cat = peek_category(p);
    if (*cat == CAT_NONE) return fir_p_expected(p, "a list element (number, string, tensor<...>, graph or type<...>)");
    do {
      int n = a->n;
      if (peek_category(p) != *cat) return fir_p_expected(p, "an element of the same kind as the list's first");
      bool ok = true;
      switch (*cat) {
      case CAT_NUMBER:
        ok = fir_p_grow(p, (void **)nums, n, &cap, sizeof(**nums)) && fir_p_number(p, &(*nums)[n], "a number");
        if (ok) *any_float = *any_float || (*nums)[n].is_float;
        break;
      case CAT_STRING:
        ok = fir_p_grow(p, (void **)&a->strings, n, &cap, sizeof(*a->strings)) &&
             fir_p_grow(p, (void **)&a->string_lens, n, &scap, sizeof(*a->string_lens)) &&
             fir_p_string(p, &a->strings[n], &a->string_lens[n], "a string");
        break;
      case CAT_TENSOR:
      case CAT_SPARSE:
        ok = fir_p_grow(p, (void **)&a->tensors, n, &cap, sizeof(*a->tensors)) &&
             (*cat == CAT_SPARSE ? parse_sparse(p, &a->tensors[n]) : fir_p_tensor(p, &a->tensors[n]));
        break;
      case CAT_GRAPH:
        ok = fir_p_grow(p, (void **)&a->graphs, n, &cap, sizeof(*a->graphs)) && parse_graph(p, g, &a->graphs[n]);
        break;
      case CAT_TYPE:
        ok = fir_p_grow(p, (void **)&a->types, n, &cap, sizeof(*a->types)) && parse_type_literal(p, &a->types[n]);
        break;
      default: break;
      }
      if (!ok) return false;
      a->n++;
    } while (fir_p_accept(p, ','));
  }
  fir_p_leave(p);
  return fir_p_expect(p, ']', "to close the list");
}

/* name = value [: kind] */
static bool parse_attr(fir_parser_t *p, fir_graph_t *g, fir_attr_t *a) {
  fl_arena_t *ar = p->m->arena;
  if (!fir_p_word_or_string(p, &a->name, "an attribute name")) return false;
  if (!fir_p_expect(p, '=', "after the attribute name")) return false;
  fir_p_peek(p);
  size_t vpos = p->pos;
  fir_num_t num = {0}, *nums = NULL;
  category_t cat = CAT_NONE;
  bool any_float = false, list = false;
  fir_attr_kind_t kind;
  if (fir_p_accept(p, '?')) {
    kind = FIR_ATTR_UNDEFINED;
  } else if (fir_p_accept(p, '[')) {
    list = true;
    if (!parse_list(p, g, a, &nums, &cat, &any_float)) return false;
    kind = list_kind_of(cat, any_float);
  } else {
    cat = peek_category(p);
    bool ok;
    switch (cat) {
    case CAT_NUMBER:
      ok = fir_p_number(p, &num, "a number");
      kind = num.is_float ? FIR_ATTR_FLOAT : FIR_ATTR_INT;
      break;
    case CAT_STRING:
      ok = fir_p_string(p, &a->s, &a->s_len, "a string");
      kind = FIR_ATTR_STRING;
      break;
    case CAT_TENSOR:
      ok = fir_p_tensor(p, &a->t);
      kind = FIR_ATTR_TENSOR;
      break;
    case CAT_SPARSE:
      ok = parse_sparse(p, &a->t);
      kind = FIR_ATTR_SPARSE_TENSOR;
      break;
    case CAT_GRAPH:
      ok = parse_graph(p, g, &a->g);
      kind = FIR_ATTR_GRAPH;
      break;
    case CAT_TYPE:
      ok = parse_type_literal(p, &a->tp);
      kind = FIR_ATTR_TYPE;
      break;
    default:
      return fir_p_expected(p, "an attribute value (number, string, [list], tensor<...>, graph, type<...> or ?)");
    }
    if (!ok) return false;
  }
  if (fir_p_accept(p, ':')) {
    size_t kpos = (fir_p_peek(p), p->pos);
    const char *kw;
    if (!fir_p_word(p, &kw, "an attribute kind (int, floats, strings, ...)")) return false;
    fir_attr_kind_t want = FIR_ATTR_UNDEFINED;
    bool found = false;
    for (size_t i = 0; i < FL_ARRAY_LEN(k_kinds); i++)
      if (strcmp(k_kinds[i].name, kw) == 0) want = k_kinds[i].kind, found = true;
    if (!found) return fir_p_error(p, kpos, "unknown attribute kind '%s'", kw);
    /* Integers may be read as floats; an empty list takes any list kind. */
    bool fits = want == kind || (want == FIR_ATTR_FLOAT && kind == FIR_ATTR_INT) ||
                (want == FIR_ATTR_FLOATS && kind == FIR_ATTR_INTS) ||
                (list && a->n == 0 && is_list_kind(want));
    if (!fits)
      return fir_p_error(p, kpos, "attribute '%s' is written as %s but declared %s", a->name,
                         list && a->n == 0 ? "an empty list" : kind_name(kind), kw);
    kind = want;
  } else if (list && a->n == 0) {
    return fir_p_error(p, vpos, "an empty list needs its kind, e.g. '[] : ints'");
  }
  a->kind = kind;
  switch (kind) {
  case FIR_ATTR_INT: return fir_p_num_i64(p, &num, &a->i);
  case FIR_ATTR_FLOAT: return fir_p_num_f32(p, &num, &a->f);
  case FIR_ATTR_INTS:
    a->ints = fl_arena_alloc(ar, sizeof(int64_t) * (size_t)(a->n ? a->n : 1));
    for (int i = 0; i < a->n; i++)
      if (!fir_p_num_i64(p, &nums[i], &a->ints[i])) return false;
    return true;
  case FIR_ATTR_FLOATS:
    a->floats = fl_arena_alloc(ar, sizeof(float) * (size_t)(a->n ? a->n : 1));
    for (int i = 0; i < a->n; i++)
      if (!fir_p_num_f32(p, &nums[i], &a->floats[i])) return false;
    return true;
  case FIR_ATTR_STRING:
    if (!a->s) a->s = "";
    return true;
  default: return true;
  }
}

static bool parse_attrs(fir_parser_t *p, fir_node_t *n) {
  if (!fir_p_accept(p, '{')) return true;
  if (fir_p_accept(p, '}')) return true;
  /* Grown here rather than with fir_node_add_attr, which copies the whole
   * array per attribute (quadratic arena use on hostile input). */
  int cap = 0;
  do {
    if (!fir_p_grow(p, (void **)&n->attrs, n->n_attrs, &cap, sizeof(*n->attrs))) return false;
    memset(&n->attrs[n->n_attrs], 0, sizeof(*n->attrs));
    if (!parse_attr(p, n->graph, &n->attrs[n->n_attrs])) return false;
    n->n_attrs++;
  } while (fir_p_accept(p, ','));
  return fir_p_expect(p, '}', "to close the attributes");
}

/* ---- statements ---- */

typedef struct lhs {
  const char *name; /* NULL for `_` */
  fir_type_t *type;
  bool typed;
  size_t pos;
} lhs_t;

static bool parse_initializer(fir_parser_t *p, fir_graph_t *g, const lhs_t *l, int n_lhs, bool is_default) {
  size_t kw_pos = p->pos - (is_default ? 7 : 5);
  if (n_lhs != 1 || !l[0].name)
    return fir_p_error(p, kw_pos, "'%s' defines exactly one named value", is_default ? "default" : "const");
  fir_value_t *v;
  if (is_default) {
    v = fir_nmap_get(&p->inputs, g, l[0].name);
    if (!v) return fir_p_error(p, l[0].pos, "'default' needs '%%%s' to be an input of this graph", l[0].name);
    if (v->init) return fir_p_error(p, l[0].pos, "input '%%%s' already has a default", l[0].name);
    if (l[0].typed && !fir_type_equal(l[0].type, v->type))
      return fir_p_error(p, l[0].pos, "the type of '%%%s' differs from the graph signature", l[0].name);
  } else if (!define_value(p, g, l[0].name, l[0].type, l[0].pos, &v)) {
    return false;
  }
  fir_tensor_t *t;
  if (fir_p_peek_word(p, "tensor")) {
    if (!fir_p_tensor(p, &t)) return false;
    if (t->name) return fir_p_error(p, kw_pos, "an initializer's tensor takes the value's name; drop the \"name\":");
  } else {
    fir_p_peek(p);
    t = fir_p_tensor_from_type(p, v->type);
    if (!t)
      return fir_p_error(p, p->pos, "data without 'tensor<...>' needs a static tensor type on '%%%s'", l[0].name);
    if (!fir_p_tensor_payload(p, t)) return false;
  }
  t->name = v->name;
  v->init = t;
  return true;
}

static bool parse_node(fir_parser_t *p, fir_graph_t *g, const lhs_t *l, int n_lhs) {
  fl_arena_t *ar = p->m->arena;
  const char *domain = "", *op, *name = "";
  if (!fir_p_word_or_string(p, &op, "an operator name")) return false;
  if (fir_p_peek(p) == ':' && p->pos + 1 < p->n && p->s[p->pos + 1] == ':') {
    p->pos += 2;
    domain = op;
    if (!fir_p_word_or_string(p, &op, "an operator name after '::'")) return false;
  }
  if (fir_p_peek(p) == '"' && !fir_p_string(p, &name, NULL, "a node name")) return false;
  if (!fir_p_expect(p, '(', "to open the node inputs")) return false;
  int n_in = 0, cap = 0;
  const char **in_names = NULL;
  size_t *in_pos = NULL;
  int pcap = 0;
  if (fir_p_peek(p) != ')') {
    do {
      if (!fir_p_grow(p, (void **)&in_names, n_in, &cap, sizeof(*in_names)) ||
          !fir_p_grow(p, (void **)&in_pos, n_in, &pcap, sizeof(*in_pos)))
        return false;
      in_pos[n_in] = (fir_p_peek(p), p->pos);
      if (fir_p_accept_word(p, "_")) in_names[n_in] = NULL;
      else if (!fir_p_value_name(p, &in_names[n_in], "a node input ('%name' or '_')")) return false;
      n_in++;
    } while (fir_p_accept(p, ','));
  }
  if (!fir_p_expect(p, ')', "after node inputs")) return false;
  fir_value_t **outs = fl_arena_alloc(ar, sizeof(*outs) * (size_t)(n_lhs ? n_lhs : 1));
  for (int i = 0; i < n_lhs; i++)
    if (l[i].name && !define_value(p, g, l[i].name, l[i].type, l[i].pos, &outs[i])) return false;
  fir_value_t **ins = fl_arena_alloc(ar, sizeof(*ins) * (size_t)(n_in ? n_in : 1));
  fir_node_t *n = fir_node_create(g, op, domain, name, n_in, ins, n_lhs, outs);
  for (int i = 0; i < n_in; i++) {
    if (!in_names[i]) continue;
    fir_pending_t pe = {g, in_names[i], &n->inputs[i], in_pos[i], n, i, NULL};
    if (!add_pending(p, &pe)) return false;
  }
  return parse_attrs(p, n);
}

static bool parse_statement(fir_parser_t *p, fir_graph_t *g) {
  lhs_t *l = NULL;
  int n_lhs = 0, cap = 0;
  int c = fir_p_peek(p);
  if (c == '%' || fir_p_peek_word(p, "_")) {
    do {
      if (!fir_p_grow(p, (void **)&l, n_lhs, &cap, sizeof(*l))) return false;
      lhs_t *o = &l[n_lhs];
      memset(o, 0, sizeof(*o));
      o->pos = (fir_p_peek(p), p->pos);
      if (fir_p_accept_word(p, "_")) {
        o->name = NULL;
      } else if (!parse_value_decl(p, &o->name, &o->type, &o->typed, "a value ('%name' or '_')")) {
        return false;
      }
      n_lhs++;
    } while (fir_p_accept(p, ','));
    if (!fir_p_expect(p, '=', "after the defined values")) return false;
  }
  if (fir_p_accept_word(p, "const")) return parse_initializer(p, g, l, n_lhs, false);
  if (fir_p_accept_word(p, "default")) return parse_initializer(p, g, l, n_lhs, true);
  return parse_node(p, g, l, n_lhs);
}

/* ---- graphs ---- */

static bool parse_graph_body(fir_parser_t *p, fir_graph_t *g, size_t open_pos) {
  for (;;) {
    int c = fir_p_peek(p);
    if (c == '}') {
      p->pos++;
      return true;
    }
    if (c < 0) return fir_p_error(p, open_pos, "graph '%s' opened here is never closed with '}'", g->name);
    if (!parse_statement(p, g)) return false;
  }
}

static bool parse_graph_inner(fir_parser_t *p, fir_graph_t *parent, fir_graph_t **out) {
  const char *name;
  if (!fir_p_accept_word(p, "graph")) return fir_p_expected(p, "'graph'");
  if (!fir_p_word_or_string(p, &name, "the graph's name (a string)")) return false;
  fir_graph_t *g = fir_graph_create(p->m, parent, name);
  *out = g;
  if (!fir_p_expect(p, '(', "to open the graph inputs")) return false;
  int cap = 0;
  if (fir_p_peek(p) != ')') {
    do {
      const char *vn;
      fir_type_t *ty;
      bool typed;
      size_t pos = (fir_p_peek(p), p->pos);
      if (!parse_value_decl(p, &vn, &ty, &typed, "a graph input ('%name: type')")) return false;
      fir_value_t *v;
      if (!define_value(p, g, vn, ty, pos, &v)) return false;
      fir_nmap_put(&p->inputs, g, v->name, v);
      if (!fir_p_grow(p, (void **)&g->inputs, g->n_inputs, &cap, sizeof(*g->inputs))) return false;
      g->inputs[g->n_inputs++] = v;
    } while (fir_p_accept(p, ','));
  }
  if (!fir_p_expect(p, ')', "after the graph inputs")) return false;
  if (!fir_p_accept(p, '-') || !fir_p_accept(p, '>')) return fir_p_expected(p, "'->' before the graph outputs");
  if (!fir_p_expect(p, '(', "to open the graph outputs")) return false;
  /* Outputs are pending until the body (and any later outer statement) is read;
   * their slots must not move, so they are collected first and copied once. */
  typedef struct {
    const char *name;
    fir_type_t *type;
    bool typed;
    size_t pos;
  } out_t;
  out_t *outs = NULL;
  int n_out = 0;
  cap = 0;
  if (fir_p_peek(p) != ')') {
    do {
      if (!fir_p_grow(p, (void **)&outs, n_out, &cap, sizeof(*outs))) return false;
      out_t *o = &outs[n_out++];
      o->pos = (fir_p_peek(p), p->pos);
      if (!parse_value_decl(p, &o->name, &o->type, &o->typed, "a graph output ('%name')")) return false;
    } while (fir_p_accept(p, ','));
  }
  if (!fir_p_expect(p, ')', "after the graph outputs")) return false;
  g->n_outputs = n_out;
  g->outputs = fl_arena_alloc(p->m->arena, sizeof(*g->outputs) * (size_t)(n_out ? n_out : 1));
  for (int i = 0; i < n_out; i++) {
    fir_pending_t pe = {g, outs[i].name, &g->outputs[i], outs[i].pos, NULL, i, outs[i].typed ? outs[i].type : NULL};
    if (!add_pending(p, &pe)) return false;
  }
  fir_p_peek(p);
  size_t open_pos = p->pos;
  if (!fir_p_expect(p, '{', "to open the graph body")) return false;
  return parse_graph_body(p, g, open_pos);
}

static bool parse_graph(fir_parser_t *p, fir_graph_t *parent, fir_graph_t **out) {
  if (!fir_p_enter(p)) return false;
  bool ok = parse_graph_inner(p, parent, out);
  fir_p_leave(p);
  return ok;
}

/* ---- resolution ---- */

static bool resolve(fir_parser_t *p) {
  for (size_t i = 0; i < p->n_pend; i++) {
    fir_pending_t *pe = &p->pend[i];
    fir_value_t *v = NULL;
    for (const fir_graph_t *g = pe->scope; g && !v; g = g->parent) v = fir_nmap_get(&p->defs, g, pe->name);
    if (!v) {
      if (pe->node) {
        fl_buf_t b = {0};
        fir_text_describe_node(&b, pe->node);
        fir_p_error(p, pe->pos, "value '%%%s' is not defined (input %d of %s)", pe->name, pe->index, b.data);
        fl_buf_free(&b);
        return false;
      }
      return fir_p_error(p, pe->pos, "graph output '%%%s' is not defined in graph '%s' or around it", pe->name,
                         pe->scope->name);
    }
    *pe->slot = v;
    if (pe->declared) {
      if (v->type->kind == FIR_TYPE_UNKNOWN) v->type = pe->declared;
      else if (!fir_type_equal(v->type, pe->declared)) {
        fl_buf_t a = {0}, b = {0};
        fir_type_print(&a, pe->declared);
        fir_type_print(&b, v->type);
        fir_p_error(p, pe->pos, "graph output '%%%s' is declared %s here but %s where it is defined", pe->name,
                    a.data, b.data);
        fl_buf_free(&a);
        fl_buf_free(&b);
        return false;
      }
    }
  }
  return true;
}

/* ---- model ---- */

static bool parse_model(fir_parser_t *p) {
  fir_model_t *m = p->m;
  if (!fir_p_accept_word(p, "flagir")) return fir_p_expected(p, "'flagir <version>' on the first line");
  size_t vpos = (fir_p_peek(p), p->pos);
  int64_t ver;
  if (!fir_p_int64(p, &ver, "the FlagIR text version")) return false;
  if (ver != FIR_TEXT_VERSION) {
    fir_p_error(p, vpos, "FlagIR text version %lld is not supported (this build reads %d)", (long long)ver,
                FIR_TEXT_VERSION);
    flagos_status_t st = p->err;
    p->err = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s", flagos_status_message(st));
    flagos_status_free(st);
    return false;
  }
  int ocap = 0;
  for (;;) {
    if (fir_p_accept_word(p, "ir_version")) {
      if (!fir_p_int64(p, &m->ir_version, "the IR version")) return false;
    } else if (fir_p_accept_word(p, "producer")) {
      if (!fir_p_string(p, &m->producer, NULL, "the producer (a string)")) return false;
    } else if (fir_p_accept_word(p, "opset")) {
      fir_opset_t o = {0};
      if (!fir_p_string(p, &o.domain, NULL, "the opset's domain (a string, \"\" for ai.onnx)") ||
          !fir_p_int64(p, &o.version, "the opset version"))
        return false;
      /* Every node looks its domain up in this list; a bound keeps that cheap. */
      if (m->n_opsets >= FIR_TEXT_MAX_OPSETS)
        return fir_p_error(p, p->pos, "more than %d opset imports", FIR_TEXT_MAX_OPSETS);
      if (!fir_p_grow(p, (void **)&m->opsets, m->n_opsets, &ocap, sizeof(*m->opsets))) return false;
      m->opsets[m->n_opsets++] = o;
    } else if (fir_p_peek_word(p, "graph")) {
      if (!parse_graph(p, NULL, &m->graph)) return false;
      if (fir_p_peek(p) >= 0) return fir_p_expected(p, "the end of the text after the main graph");
      return resolve(p);
    } else if (fir_p_peek(p) < 0) {
      return true;
    } else {
      return fir_p_expected(p, "'ir_version', 'producer', 'opset' or 'graph'");
    }
  }
}

flagos_status_t fir_parse(const char *text, size_t len, fir_model_t **out) {
  *out = NULL;
  if (!text && len) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "fir_parse: text is NULL");
  fir_parser_t p = {0};
  p.s = text ? text : "";
  p.n = len;
  p.m = fir_model_create();
  p.m->ir_version = 0;
  bool ok = parse_model(&p);
  fir_nmap_free(&p.defs);
  fir_nmap_free(&p.inputs);
  free(p.pend);
  if (!ok) {
    fir_model_destroy(p.m);
    return p.err ? p.err : FL_ERR(FLAGOS_ERR_INTERNAL, "FlagIR parse failed without a message");
  }
  *out = p.m;
  return NULL;
}
