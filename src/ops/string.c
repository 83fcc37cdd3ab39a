/* The string family: StringNormalizer, StringConcat, StringSplit and
 * RegexFullMatch. Only their shape rules are here (`host = true`): kernel IR has
 * no strings, so src/runtime/host_strings.c executes them, once for every
 * backend. This file also answers, for the compiler and the runtime, which nodes
 * touch strings (ops_string.h) and holds the string cases of Equal, Cast,
 * CastLike and LabelEncoder's shape rules, which their own families delegate to. */
#include <stdio.h>
#include <string.h>

#include "ops/elementwise.h"
#include "ops/ops_string.h"

#define STR OPS_DT(FLAGOS_STRING)

static bool type_has_strings(const fir_type_t *t) {
  for (; t; t = t->elem) {
    if (t->kind == FIR_TYPE_TENSOR) return t->dtype == FLAGOS_STRING;
    if (t->kind != FIR_TYPE_SEQUENCE && t->kind != FIR_TYPE_OPTIONAL) return false;
  }
  return false;
}

bool ops_str_node_has_strings(const fir_node_t *n) {
  for (int k = 0; k < n->n_inputs; k++)
    if (n->inputs[k] && type_has_strings(n->inputs[k]->type)) return true;
  for (int k = 0; k < n->n_outputs; k++)
    if (n->outputs[k] && type_has_strings(n->outputs[k]->type)) return true;
  return false;
}

static bool all_tensors(const fir_node_t *n) {
  for (int k = 0; k < n->n_inputs; k++)
    if (n->inputs[k] && n->inputs[k]->type->kind != FIR_TYPE_TENSOR) return false;
  for (int k = 0; k < n->n_outputs; k++)
    if (n->outputs[k] && n->outputs[k]->type->kind != FIR_TYPE_TENSOR) return false;
  return true;
}

bool ops_str_runtime_runs(const fir_node_t *n) {
  static const char *const string_ops[] = {"StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch"};
  /* Operators with kernel lowerings that the runtime also runs on strings. */
  static const char *const with_strings[] = {"Equal", "Cast", "CastLike"};
  bool dflt = !n->domain[0] || strcmp(n->domain, "ai.onnx") == 0;
  if (dflt)
    for (size_t i = 0; i < FL_ARRAY_LEN(string_ops); i++)
      if (strcmp(n->op_type, string_ops[i]) == 0) return true;
  if (!ops_str_node_has_strings(n) || !all_tensors(n)) return false;
  if (strcmp(n->domain, "ai.onnx.ml") == 0) return strcmp(n->op_type, "LabelEncoder") == 0;
  if (dflt)
    for (size_t i = 0; i < FL_ARRAY_LEN(with_strings); i++)
      if (strcmp(n->op_type, with_strings[i]) == 0) return true;
  return false;
}

bool ops_str_any_input(const ops_ctx_t *c) {
  for (int k = 0; k < c->n_in; k++)
    if (ops_has_in(c, k) && c->in[k].dtype == FLAGOS_STRING) return true;
  return false;
}

/* ---- StringNormalizer ---- */

static flagos_status_t infer_normalizer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, STR));
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank != 1 && x->rank != 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input must be [C] or [1, C], got rank %d", x->rank);
  if (x->rank == 2 && x->dims[0] > 1)
    return ops_err(c, FLAGOS_ERR_SHAPE, "a 2-D input must be [1, C], got %lld rows", (long long)x->dims[0]);
  const char *act = fir_attr_string(c->node, "case_change_action", "NONE");
  if (strcmp(act, "NONE") != 0 && strcmp(act, "LOWER") != 0 && strcmp(act, "UPPER") != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "case_change_action must be NONE, LOWER or UPPER, got \"%s\"", act);
  const char *loc = fir_attr_string(c->node, "locale", "");
  if (loc[0] && strncmp(loc, "en_US", 5) != 0 && strncmp(loc, "en-US", 5) != 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "locale \"%s\": only en_US is supported", loc);
  const fir_attr_t *sw = fir_node_attr(c->node, "stopwords");
  if (sw && sw->kind != FIR_ATTR_STRINGS)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute stopwords must be a list of strings");
  int64_t dims[2] = {1, -1};
  /* Without stop words nothing is dropped, except that an empty input gives [""]. */
  int64_t cdim = x->dims[x->rank - 1];
  if ((!sw || sw->n == 0) && cdim >= 0) dims[1] = cdim == 0 ? 1 : cdim;
  if (x->rank == 1) ops_set_out(c, 0, FLAGOS_STRING, 1, &dims[1]);
  else ops_set_out(c, 0, FLAGOS_STRING, 2, dims);
  return NULL;
}

/* ---- StringConcat ---- */

static flagos_status_t infer_concat(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  return ops_ew_infer_bcast(c, 0, 2, STR, true, FLAGOS_STRING);
}

/* ---- StringSplit ---- */

static flagos_status_t infer_split(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, STR));
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank + 1 > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input rank %d is too large", x->rank);
  int64_t dims[OPS_MAX_RANK];
  for (int i = 0; i < x->rank; i++) dims[i] = x->dims[i];
  dims[x->rank] = x->numel == 0 ? 0 : -1; /* the most substrings any element has */
  ops_set_out(c, 0, FLAGOS_STRING, x->rank + 1, dims);
  if (c->n_out > 1) ops_set_out(c, 1, FLAGOS_INT64, x->rank, x->dims);
  return NULL;
}

/* ---- RegexFullMatch ---- */

static flagos_status_t infer_regex(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, STR));
  const fir_attr_t *p = fir_node_attr(c->node, "pattern");
  if (!p || p->kind != FIR_ATTR_STRING) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute pattern is missing");
  /* Compiling here reports syntax FlagOS cannot run when the model is compiled, not when it runs. */
  ops_str_regex_t r;
  flagos_status_t st = ops_str_regex_compile(p->s, &r);
  if (st) return flagos_status_wrap(st, "%s node '%s'", c->node->op_type, c->node->name);
  ops_str_regex_free(&r);
  ops_set_out(c, 0, FLAGOS_BOOL, c->in[0].rank, c->in[0].dims);
  return NULL;
}

/* ---- string cases of other families' operators ---- */

flagos_status_t ops_str_infer_equal(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 2));
  if (strcmp(c->node->op_type, "Equal") != 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "string tensors can only be compared with Equal");
  return ops_ew_infer_bcast(c, 0, 2, STR, true, FLAGOS_BOOL);
}

bool ops_str_cast_supported(flagos_dtype_t dt) {
  return ops_dt_in(dt, OPS_DT_INTS | OPS_DT_BOOL | OPS_DT_FLOATS | STR) || dt == FLAGOS_INT4 || dt == FLAGOS_UINT4 ||
         dt == FLAGOS_INT2 || dt == FLAGOS_UINT2;
}

flagos_status_t ops_str_infer_cast(ops_ctx_t *c, flagos_dtype_t to) {
  if (!ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input is missing");
  const ops_tensor_info_t *x = &c->in[0];
  if (x->kind != FIR_TYPE_TENSOR || x->rank < 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input must be a tensor of known rank");
  if (!ops_str_cast_supported(x->dtype) || !ops_str_cast_supported(to))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "cast from %s to %s is not supported", flagos_dtype_onnx_name(x->dtype),
                   flagos_dtype_onnx_name(to));
  ops_set_out(c, 0, to, x->rank, x->dims);
  return NULL;
}

/* ---- LabelEncoder with strings (ai.onnx.ml) ---- */

static bool attr_is_strings(const ops_ctx_t *c, const char *name) {
  const fir_attr_t *a = fir_node_attr(c->node, name);
  if (!a) return false;
  return a->kind == FIR_ATTR_STRINGS || (a->kind == FIR_ATTR_TENSOR && a->t && a->t->dtype == FLAGOS_STRING);
}

bool ops_str_label_encoder_uses_strings(const ops_ctx_t *c) {
  if (ops_str_any_input(c) || c->opset < 2) return true;
  static const char *const names[] = {"keys_strings", "values_strings", "keys_tensor", "values_tensor",
                                      "classes_strings"};
  for (size_t i = 0; i < FL_ARRAY_LEN(names); i++)
    if (attr_is_strings(c, names[i])) return true;
  return false;
}

/* The dtype and count of the keys or values ("keys"/"values"); -1 count when absent. */
static void le_side(const ops_ctx_t *c, const char *what, flagos_dtype_t *dt, int64_t *n) {
  char name[32];
  static const char *const suffix[] = {"strings", "int64s", "floats"};
  static const flagos_dtype_t dts[] = {FLAGOS_STRING, FLAGOS_INT64, FLAGOS_FLOAT32};
  *n = -1;
  *dt = FLAGOS_UNDEFINED;
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "%s_%s", what, suffix[i]);
    const fir_attr_t *a = fir_node_attr(c->node, name);
    if (a) {
      *dt = dts[i];
      *n = a->n;
      return;
    }
  }
  snprintf(name, sizeof name, "%s_tensor", what);
  const fir_attr_t *a = fir_node_attr(c->node, name);
  if (a && a->kind == FIR_ATTR_TENSOR && a->t) {
    *dt = a->t->dtype;
    *n = a->t->numel;
  }
}

flagos_status_t ops_str_infer_label_encoder(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  if (!ops_has_in(c, 0) || c->in[0].kind != FIR_TYPE_TENSOR || c->in[0].rank < 0)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input must be a tensor of known rank");
  flagos_dtype_t in = c->in[0].dtype, out;
  if (c->opset < 2) {
    /* classes_strings maps strings to their index and back. */
    const fir_attr_t *cl = fir_node_attr(c->node, "classes_strings");
    if (!cl || cl->kind != FIR_ATTR_STRINGS)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "LabelEncoder-1 needs the classes_strings attribute");
    if (in != FLAGOS_STRING && in != FLAGOS_INT64)
      return ops_err(c, FLAGOS_ERR_SHAPE, "LabelEncoder-1 maps strings or int64, got %s", flagos_dtype_onnx_name(in));
    out = in == FLAGOS_STRING ? FLAGOS_INT64 : FLAGOS_STRING;
  } else {
    flagos_dtype_t kd, vd;
    int64_t nk, nv;
    le_side(c, "keys", &kd, &nk);
    le_side(c, "values", &vd, &nv);
    if (nk < 0 || nv < 0)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "LabelEncoder needs one keys_* and one values_* attribute");
    if (nk != nv) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "%lld keys but %lld values", (long long)nk, (long long)nv);
    if ((kd == FLAGOS_STRING) != (in == FLAGOS_STRING))
      return ops_err(c, FLAGOS_ERR_SHAPE, "input is %s but the keys are %s", flagos_dtype_onnx_name(in),
                     flagos_dtype_onnx_name(kd));
    if (!ops_str_cast_supported(kd) || !ops_str_cast_supported(vd) || !ops_str_cast_supported(in))
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "keys of %s and values of %s are not supported",
                     flagos_dtype_onnx_name(kd), flagos_dtype_onnx_name(vd));
    out = vd;
  }
  ops_set_out(c, 0, out, c->in[0].rank, c->in[0].dims);
  return NULL;
}

const ops_def_t ops_family_string[] = {
    {.op_type = "StringNormalizer", .domain = "", .infer = infer_normalizer, .host = true},
    {.op_type = "StringConcat", .domain = "", .infer = infer_concat, .host = true},
    {.op_type = "StringSplit", .domain = "", .infer = infer_split, .host = true},
    {.op_type = "RegexFullMatch", .domain = "", .infer = infer_regex, .host = true},
    {.op_type = NULL},
};
