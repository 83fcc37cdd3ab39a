/* Strings and numbers: Cast/CastLike in both directions and LabelEncoder
 * (ai.onnx.ml) with string keys or values, run by the runtime on the host.
 *
 * Number to string follows the ONNX reference (NumPy's astype(str)): integers
 * in decimal, bools as True/False, floats as the shortest decimal that reads
 * back as the same value of their type, positional when 1e-4 <= |x| < 1e16
 * (1e6 for float32 and bfloat16, 1e3 for float16) and otherwise scientific
 * with an exponent of at least two digits (1e+06, 1.5e-07); inf, -inf, nan.
 * String to number reads decimal and scientific notation and INF/+INF/-INF/NaN
 * in any case (strtod); to an integer type a string that is not an integer is
 * read as a float and truncated ("100.5" gives 100), as the ONNX spec allows;
 * to bool, as in the reference, any non-empty string is true. A string that is
 * not a number is an error naming the element. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_string.h"
#include "runtime/host_strings.h"

void rt_hs_store_int(flagos_dtype_t dt, void *buf, int64_t i, int64_t v) {
  switch (dt) {
  case FLAGOS_BOOL: ((uint8_t *)buf)[i] = v != 0; break;
  case FLAGOS_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
  case FLAGOS_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
  case FLAGOS_INT16: ((int16_t *)buf)[i] = (int16_t)v; break;
  case FLAGOS_UINT16: ((uint16_t *)buf)[i] = (uint16_t)v; break;
  case FLAGOS_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
  case FLAGOS_UINT32: ((uint32_t *)buf)[i] = (uint32_t)v; break;
  case FLAGOS_INT64: ((int64_t *)buf)[i] = v; break;
  case FLAGOS_UINT64: ((uint64_t *)buf)[i] = (uint64_t)v; break;
  case FLAGOS_INT4: ((int8_t *)buf)[i] = (int8_t)(((v & 0xF) ^ 0x8) - 0x8); break;
  case FLAGOS_UINT4: ((uint8_t *)buf)[i] = (uint8_t)(v & 0xF); break;
  case FLAGOS_INT2: ((int8_t *)buf)[i] = (int8_t)(((v & 0x3) ^ 0x2) - 0x2); break;
  case FLAGOS_UINT2: ((uint8_t *)buf)[i] = (uint8_t)(v & 0x3); break;
  default: rt_hs_store_float(dt, buf, i, (double)v); break;
  }
}

void rt_hs_store_float(flagos_dtype_t dt, void *buf, int64_t i, double v) {
  switch (dt) {
  case FLAGOS_FLOAT32: ((float *)buf)[i] = (float)v; return;
  case FLAGOS_FLOAT64: ((double *)buf)[i] = v; return;
  case FLAGOS_FLOAT16: ((uint16_t *)buf)[i] = fl_f32_to_f16((float)v); return;
  case FLAGOS_BFLOAT16: ((uint16_t *)buf)[i] = fl_f32_to_bf16((float)v); return;
  case FLAGOS_BOOL: ((uint8_t *)buf)[i] = v != 0; return;
  default: break;
  }
  /* To an integer: truncate toward zero, NaN as 0, out-of-range values clamped to int64 before wrapping. */
  if (dt == FLAGOS_UINT64 && v >= 9223372036854775808.0) {
    ((uint64_t *)buf)[i] = v >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)v;
    return;
  }
  int64_t iv = isnan(v) ? 0 : v >= 9223372036854775807.0 ? INT64_MAX : v <= -9223372036854775808.0 ? INT64_MIN : (int64_t)v;
  rt_hs_store_int(dt, buf, i, iv);
}

/* ---- number -> string ---- */

static bool reads_back(const char *s, double v, flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT32: return strtof(s, NULL) == (float)v;
  case FLAGOS_FLOAT16: return fl_f32_to_f16((float)strtod(s, NULL)) == fl_f32_to_f16((float)v);
  case FLAGOS_BFLOAT16: return fl_f32_to_bf16((float)strtod(s, NULL)) == fl_f32_to_bf16((float)v);
  default: return strtod(s, NULL) == v;
  }
}

/* v (finite, non-zero) of type dt as NumPy prints it. */
static void format_float(double v, flagos_dtype_t dt, char *out, size_t cap) {
  if (isnan(v)) {
    snprintf(out, cap, "nan");
    return;
  }
  if (isinf(v) || v == 0) {
    snprintf(out, cap, "%s%s", signbit(v) ? "-" : "", isinf(v) ? "inf" : "0.0");
    return;
  }
  double a = fabs(v);
  char e[64], d[32];
  for (int p = 1; p <= 17; p++) {
    snprintf(e, sizeof e, "%.*e", p - 1, a);
    if (reads_back(e, a, dt)) break;
  }
  int nd = 0;
  for (const char *q = e; *q && *q != 'e'; q++)
    if (*q >= '0' && *q <= '9') d[nd++] = *q;
  while (nd > 1 && d[nd - 1] == '0') nd--;
  d[nd] = 0;
  int ex = atoi(strchr(e, 'e') + 1);
  double maxpos = dt == FLAGOS_FLOAT64 ? 1e16 : dt == FLAGOS_FLOAT16 ? 1e3 : 1e6;
  size_t o = 0;
  if (v < 0) out[o++] = '-';
  if (a >= 1e-4 && a < maxpos) {
    if (ex >= 0) {
      for (int k = 0; k <= ex; k++) out[o++] = k < nd ? d[k] : '0';
      out[o++] = '.';
      if (nd > ex + 1)
        for (int k = ex + 1; k < nd; k++) out[o++] = d[k];
      else
        out[o++] = '0';
    } else {
      out[o++] = '0';
      out[o++] = '.';
      for (int k = 0; k < -ex - 1; k++) out[o++] = '0';
      for (int k = 0; k < nd; k++) out[o++] = d[k];
    }
    out[o] = 0;
    return;
  }
  out[o++] = d[0];
  if (nd > 1) {
    out[o++] = '.';
    for (int k = 1; k < nd; k++) out[o++] = d[k];
  }
  snprintf(out + o, cap - o, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
}

static void format_number(flagos_dtype_t dt, const void *data, int64_t i, char *out, size_t cap) {
  if (dt == FLAGOS_BOOL) snprintf(out, cap, "%s", ((const uint8_t *)data)[i] ? "True" : "False");
  else if (dt == FLAGOS_UINT64) snprintf(out, cap, "%llu", (unsigned long long)((const uint64_t *)data)[i]);
  else if (flagos_dtype_is_float(dt)) format_float(fl_load_as_double(dt, data, (size_t)i), dt, out, cap);
  else snprintf(out, cap, "%lld", (long long)fl_load_as_int64(dt, data, (size_t)i));
}

/* ---- string -> number ---- */

static bool only_space(const char *s) {
  while (*s == ' ' || (*s >= '\t' && *s <= '\r')) s++;
  return !*s;
}

static flagos_status_t parse_number(const char *s, flagos_dtype_t to, void *buf, int64_t i) {
  if (to == FLAGOS_BOOL) {
    ((uint8_t *)buf)[i] = s[0] != 0;
    return NULL;
  }
  char *end;
  if (!flagos_dtype_is_float(to)) {
    if (to == FLAGOS_UINT64) {
      const char *p = s;
      while (*p == ' ' || (*p >= '\t' && *p <= '\r')) p++;
      if (*p != '-') {
        unsigned long long u = strtoull(p, &end, 10);
        if (end != p && only_space(end)) {
          ((uint64_t *)buf)[i] = u;
          return NULL;
        }
      }
    }
    long long v = strtoll(s, &end, 10);
    if (end != s && only_space(end)) {
      rt_hs_store_int(to, buf, i, v);
      return NULL;
    }
  }
  double d = strtod(s, &end);
  if (end == s || !only_space(end))
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "element %lld (\"%.40s\") is not a number", (long long)i, s);
  rt_hs_store_float(to, buf, i, d);
  return NULL;
}

flagos_status_t rt_hs_cast(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  rt_val_t *a = rt_hs_in(f, n, 0);
  FL_TRY(rt_hs_need(a, false, "input"));
  flagos_dtype_t to;
  if (strcmp(n->op_type, "CastLike") == 0) {
    rt_val_t *b = rt_hs_in(f, n, 1);
    FL_TRY(rt_hs_need(b, false, "target_type"));
    to = b->dtype;
  } else {
    to = (flagos_dtype_t)fir_attr_int(n, "to", FLAGOS_UNDEFINED);
  }
  flagos_dtype_t from = a->dtype;
  if (!ops_str_cast_supported(from) || !ops_str_cast_supported(to))
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "cast from %s to %s is not supported", flagos_dtype_onnx_name(from),
                  flagos_dtype_onnx_name(to));
  int64_t cnt = rt_numel(a->rank, a->dims);
  rt_val_t out;
  memset(&out, 0, sizeof out);
  flagos_status_t st = NULL;
  if (from == FLAGOS_STRING && to == FLAGOS_STRING) {
    st = rt_val_copy(x, a, &out);
  } else if (from == FLAGOS_STRING) {
    size_t nb = (size_t)cnt * flagos_dtype_size(to);
    void *buf = calloc(nb ? nb : 1, 1);
    if (!buf) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t i = 0; i < cnt && !st; i++) st = parse_number(rt_str_get(a, i), to, buf, i);
    if (!st) st = rt_val_from_host(x, &out, to, a->rank, a->dims, buf);
    free(buf);
  } else {
    void *data;
    FL_TRY(rt_hs_host_data(x, a, &data));
    st = rt_val_alloc_tensor(x, &out, FLAGOS_STRING, a->rank, a->dims);
    char tmp[64];
    for (int64_t i = 0; i < cnt && !st; i++) {
      format_number(from, data, i, tmp, sizeof tmp);
      st = rt_str_set(&out, i, tmp, strlen(tmp));
    }
    free(data);
  }
  if (st) {
    rt_val_release(x, &out);
    return flagos_status_wrap(st, "casting %s to %s", flagos_dtype_onnx_name(from), flagos_dtype_onnx_name(to));
  }
  rt_hs_set_out(x, f, n, 0, &out);
  return NULL;
}

/* ---- LabelEncoder ---- */

/* Keys or values: strings, or numbers (as double, and as int64 when integral). */
typedef struct le_list {
  flagos_dtype_t dt;
  int64_t n;
  const char *const *s;
  double *f;
  int64_t *i;
} le_list_t;

static bool is_integral(flagos_dtype_t dt) { return dt == FLAGOS_BOOL || flagos_dtype_is_int(dt); }

static flagos_status_t le_list(const fir_node_t *n, const char *what, fl_arena_t *ar, le_list_t *l) {
  char name[32];
  memset(l, 0, sizeof(*l));
  l->n = -1;
  snprintf(name, sizeof name, "%s_strings", what);
  const fir_attr_t *at = fir_node_attr(n, name);
  if (at && at->kind == FIR_ATTR_STRINGS) {
    *l = (le_list_t){FLAGOS_STRING, at->n, at->strings, NULL, NULL};
    return NULL;
  }
  snprintf(name, sizeof name, "%s_int64s", what);
  if ((at = fir_node_attr(n, name)) && at->kind == FIR_ATTR_INTS) {
    l->dt = FLAGOS_INT64;
    l->n = at->n;
    l->i = at->ints;
    l->f = fl_arena_alloc(ar, sizeof(double) * (size_t)(at->n + 1));
    for (int k = 0; k < at->n; k++) l->f[k] = (double)at->ints[k];
    return NULL;
  }
  snprintf(name, sizeof name, "%s_floats", what);
  if ((at = fir_node_attr(n, name)) && at->kind == FIR_ATTR_FLOATS) {
    l->dt = FLAGOS_FLOAT32;
    l->n = at->n;
    l->f = fl_arena_alloc(ar, sizeof(double) * (size_t)(at->n + 1));
    for (int k = 0; k < at->n; k++) l->f[k] = at->floats[k];
    return NULL;
  }
  snprintf(name, sizeof name, "%s_tensor", what);
  if ((at = fir_node_attr(n, name)) && at->kind == FIR_ATTR_TENSOR && at->t) {
    const fir_tensor_t *t = at->t;
    if (t->numel > 0 && !t->data) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "attribute %s holds no data", name);
    l->dt = t->dtype;
    l->n = t->numel;
    if (t->dtype == FLAGOS_STRING) {
      l->s = (const char *const *)t->data;
      return NULL;
    }
    l->f = fl_arena_alloc(ar, sizeof(double) * (size_t)(t->numel + 1));
    l->i = fl_arena_alloc(ar, sizeof(int64_t) * (size_t)(t->numel + 1));
    for (int64_t k = 0; k < t->numel; k++) {
      l->f[k] = fl_load_as_double(t->dtype, t->data, (size_t)k);
      l->i[k] = fl_load_as_int64(t->dtype, t->data, (size_t)k);
    }
    if (!is_integral(t->dtype)) l->i = NULL;
    return NULL;
  }
  return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "none of the attributes %s_strings, %s_int64s, %s_floats, %s_tensor is given",
                what, what, what, what);
}

/* Order of keys: strings bytewise, numbers by value with NaN last and equal to NaN. */
static int key_cmp(const le_list_t *k, int64_t a, const char *s, double v, int64_t iv, bool use_int) {
  if (k->dt == FLAGOS_STRING) return strcmp(k->s[a] ? k->s[a] : "", s);
  if (use_int) return k->i[a] < iv ? -1 : k->i[a] > iv;
  double x = k->f[a];
  if (isnan(x) || isnan(v)) return (isnan(x) != 0) - (isnan(v) != 0);
  return x < v ? -1 : x > v;
}

static int sort_cmp(const void *pa, const void *pb, void *ctx) {
  const le_list_t *k = ctx;
  int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
  int c = k->dt == FLAGOS_STRING ? key_cmp(k, a, k->s[b] ? k->s[b] : "", 0, 0, false)
                                 : key_cmp(k, a, NULL, k->f[b], k->i ? k->i[b] : 0, k->i != NULL);
  return c ? c : (a > b) - (a < b); /* ties by position: the last duplicate key wins, as in the reference */
}

flagos_status_t rt_hs_label_encoder(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  rt_val_t *a = rt_hs_in(f, n, 0);
  FL_TRY(rt_hs_need(a, false, "X"));
  fl_arena_t *ar = fl_arena_create();
  le_list_t keys, vals;
  memset(&keys, 0, sizeof keys);
  memset(&vals, 0, sizeof vals);
  const char *def_s = "_Unused";
  double def_f = -1;
  int64_t def_i = -1;
  flagos_status_t st = NULL;
  if (n->opset < 2) {
    /* classes_strings: string -> its index, int64 index -> string. */
    const fir_attr_t *cl = fir_node_attr(n, "classes_strings");
    if (!cl || cl->kind != FIR_ATTR_STRINGS) st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "classes_strings is missing");
    else if (a->dtype == FLAGOS_STRING) {
      keys = (le_list_t){FLAGOS_STRING, cl->n, cl->strings, NULL, NULL};
      vals = (le_list_t){FLAGOS_INT64, cl->n, NULL, fl_arena_alloc(ar, sizeof(double) * (size_t)(cl->n + 1)),
                         fl_arena_alloc(ar, sizeof(int64_t) * (size_t)(cl->n + 1))};
      for (int k = 0; k < cl->n; k++) vals.f[k] = (double)(vals.i[k] = k);
    } else {
      keys = (le_list_t){FLAGOS_INT64, cl->n, NULL, fl_arena_alloc(ar, sizeof(double) * (size_t)(cl->n + 1)),
                         fl_arena_alloc(ar, sizeof(int64_t) * (size_t)(cl->n + 1))};
      for (int k = 0; k < cl->n; k++) keys.f[k] = (double)(keys.i[k] = k);
      vals = (le_list_t){FLAGOS_STRING, cl->n, cl->strings, NULL, NULL};
    }
    if (!st) {
      def_i = fir_attr_int(n, "default_int64", -1);
      def_f = (double)def_i;
      def_s = fir_attr_string(n, "default_string", "_Unused");
    }
  } else {
    st = le_list(n, "keys", ar, &keys);
    if (!st) st = le_list(n, "values", ar, &vals);
    if (!st && keys.n != vals.n)
      st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%lld keys but %lld values", (long long)keys.n, (long long)vals.n);
    const fir_attr_t *dt = fir_node_attr(n, "default_tensor");
    if (!st && dt && dt->kind == FIR_ATTR_TENSOR && dt->t && dt->t->numel >= 1 && dt->t->data) {
      if (dt->t->dtype == FLAGOS_STRING) def_s = ((char *const *)dt->t->data)[0];
      else {
        def_f = fl_load_as_double(dt->t->dtype, dt->t->data, 0);
        def_i = fl_load_as_int64(dt->t->dtype, dt->t->data, 0);
      }
    } else if (!st) {
      def_s = fir_attr_string(n, "default_string", "_Unused");
      def_i = fir_attr_int(n, "default_int64", -1);
      def_f = fir_node_attr(n, "default_float") ? fir_attr_float(n, "default_float", 0) : is_integral(vals.dt) ? -1.0 : -0.0;
    }
  }
  if (!st && (keys.dt == FLAGOS_STRING) != (a->dtype == FLAGOS_STRING))
    st = FL_ERR(FLAGOS_ERR_SHAPE, "X is %s but the keys are %s", flagos_dtype_onnx_name(a->dtype),
                flagos_dtype_onnx_name(keys.dt));
  if (st) {
    fl_arena_destroy(ar);
    return st;
  }
  int64_t *order = fl_arena_alloc(ar, sizeof(int64_t) * (size_t)(keys.n + 1));
  for (int64_t k = 0; k < keys.n; k++) order[k] = k;
  qsort_r(order, (size_t)keys.n, sizeof(int64_t), sort_cmp, &keys);

  int64_t cnt = rt_numel(a->rank, a->dims);
  void *xin = NULL;
  bool use_int = keys.dt != FLAGOS_STRING && keys.i && is_integral(a->dtype);
  if (a->dtype != FLAGOS_STRING) st = rt_hs_host_data(x, a, &xin);
  flagos_dtype_t odt = vals.dt;
  rt_val_t out;
  memset(&out, 0, sizeof out);
  void *obuf = NULL;
  if (!st && odt == FLAGOS_STRING) st = rt_val_alloc_tensor(x, &out, FLAGOS_STRING, a->rank, a->dims);
  if (!st && odt != FLAGOS_STRING) {
    obuf = calloc((size_t)cnt * flagos_dtype_size(odt) + 1, 1);
    if (!obuf) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  bool int_vals = is_integral(odt);
  for (int64_t e = 0; e < cnt && !st; e++) {
    const char *s = a->dtype == FLAGOS_STRING ? rt_str_get(a, e) : NULL;
    double v = s ? 0 : fl_load_as_double(a->dtype, xin, (size_t)e);
    int64_t iv = s ? 0 : fl_load_as_int64(a->dtype, xin, (size_t)e);
    /* The last key equal to the element: the end of the run of equal keys. */
    int64_t lo = 0, hi = keys.n;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if (key_cmp(&keys, order[mid], s, v, iv, use_int) <= 0) lo = mid + 1;
      else hi = mid;
    }
    int64_t hit = lo > 0 && key_cmp(&keys, order[lo - 1], s, v, iv, use_int) == 0 ? order[lo - 1] : -1;
    if (odt == FLAGOS_STRING) {
      const char *r = hit >= 0 ? vals.s[hit] : def_s;
      st = rt_str_set(&out, e, r ? r : "", r ? strlen(r) : 0);
    } else if (int_vals) {
      rt_hs_store_int(odt, obuf, e, hit >= 0 ? (vals.i ? vals.i[hit] : (int64_t)vals.f[hit]) : def_i);
    } else {
      rt_hs_store_float(odt, obuf, e, hit >= 0 ? vals.f[hit] : def_f);
    }
  }
  if (!st && odt != FLAGOS_STRING) st = rt_val_from_host(x, &out, odt, a->rank, a->dims, obuf);
  if (st) rt_val_release(x, &out);
  else rt_hs_set_out(x, f, n, 0, &out);
  free(obuf);
  free(xin);
  fl_arena_destroy(ar);
  return st;
}
