/* Nodes on string tensors, run by the runtime on the host for every backend
 * (kernel IR cannot hold strings): StringNormalizer, StringConcat, StringSplit,
 * RegexFullMatch and Equal on strings here; Cast/CastLike and LabelEncoder in
 * host_strings_num.c; sequences of strings go through host_ops.c like any other. A string tensor's data is a host array
 * of `char *`; numeric inputs and outputs still live on the device and move
 * through the plugin ABI's copies. Strings are byte strings: lengths are strlen,
 * comparisons are bytewise, and only case mapping and whitespace look at UTF-8. */
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "ops/ops_string.h"
#include "runtime/host_strings.h"

#define ERR(...) FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, __VA_ARGS__)

rt_val_t *rt_hs_in(rt_frame_t *f, const fir_node_t *n, int k) {
  if (k >= n->n_inputs || !n->inputs[k]) return NULL;
  rt_val_t *v = rt_lookup(f, n->inputs[k]);
  return v && v->present ? v : NULL;
}

void rt_hs_set_out(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n, int k, rt_val_t *v) {
  if (k >= n->n_outputs || !n->outputs[k]) {
    rt_val_release(x, v);
    return;
  }
  rt_val_t *o = &f->vals[n->outputs[k]->id];
  rt_val_release(x, o);
  *o = *v;
  memset(v, 0, sizeof(*v));
}

flagos_status_t rt_hs_need(const rt_val_t *v, bool strings, const char *what) {
  if (!v) return ERR("%s is missing", what);
  if (v->kind != FLAGOS_VALUE_TENSOR) return FL_ERR(FLAGOS_ERR_SHAPE, "%s must be a tensor", what);
  if (strings && v->dtype != FLAGOS_STRING)
    return FL_ERR(FLAGOS_ERR_SHAPE, "%s must be a string tensor, got %s", what, flagos_dtype_onnx_name(v->dtype));
  return NULL;
}

flagos_status_t rt_hs_host_data(rt_exec_t *x, const rt_val_t *v, void **out) {
  *out = malloc(v->nbytes ? v->nbytes : 1);
  if (!*out) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes", v->nbytes);
  flagos_status_t st = rt_read(x, v, *out, v->nbytes);
  if (st) {
    free(*out);
    *out = NULL;
  }
  return st;
}

/* Finishes an operator: a numeric output made from host data, moved into output k. */
static flagos_status_t out_from_host(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n, int k, flagos_dtype_t dt,
                                     int rank, const int64_t *dims, const void *data) {
  rt_val_t v;
  memset(&v, 0, sizeof v);
  flagos_status_t st = rt_val_from_host(x, &v, dt, rank, dims, data);
  if (st) rt_val_release(x, &v);
  else rt_hs_set_out(x, f, n, k, &v);
  return st;
}

/* Takes ownership of s (a malloc'ed string) as element i of string tensor v. */
static void put_owned(rt_val_t *v, int64_t i, char *s) {
  char **a = v->ptr;
  free(a[i]);
  a[i] = s;
}

/* ---- broadcasting of two string inputs ---- */

static flagos_status_t bcast_shape(const rt_val_t *a, const rt_val_t *b, int *rank, int64_t *dims) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return FL_ERR(FLAGOS_ERR_SHAPE, "cannot broadcast dimension %d: %lld against %lld", i, (long long)da, (long long)db);
    dims[i] = da == 1 ? db : da;
  }
  *rank = r;
  return NULL;
}

/* Index into v of element i of the broadcast shape (rank r, dims). */
static int64_t bcast_index(const rt_val_t *v, int r, const int64_t *dims, int64_t i) {
  int64_t idx = 0, stride = 1;
  for (int d = r - 1; d >= 0; d--) {
    int64_t c = i % dims[d];
    i /= dims[d];
    int vd = d - (r - v->rank);
    if (vd < 0) break;
    if (v->dims[vd] != 1) idx += c * stride;
    stride *= v->dims[vd];
  }
  return idx;
}

static flagos_status_t op_concat_or_equal(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n, bool equal) {
  rt_val_t *a = rt_hs_in(f, n, 0), *b = rt_hs_in(f, n, 1);
  FL_TRY(rt_hs_need(a, true, "input 0"));
  FL_TRY(rt_hs_need(b, true, "input 1"));
  int r = 0;
  int64_t dims[OPS_MAX_RANK];
  FL_TRY(bcast_shape(a, b, &r, dims));
  int64_t cnt = rt_numel(r, dims);
  if (equal) {
    uint8_t *eq = malloc((size_t)cnt + 1);
    if (!eq) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t i = 0; i < cnt; i++)
      eq[i] = strcmp(rt_str_get(a, bcast_index(a, r, dims, i)), rt_str_get(b, bcast_index(b, r, dims, i))) == 0;
    flagos_status_t st = out_from_host(x, f, n, 0, FLAGOS_BOOL, r, dims, eq);
    free(eq);
    return st;
  }
  rt_val_t out;
  flagos_status_t st = rt_val_alloc_tensor(x, &out, FLAGOS_STRING, r, dims);
  for (int64_t i = 0; i < cnt && !st; i++) {
    const char *sa = rt_str_get(a, bcast_index(a, r, dims, i)), *sb = rt_str_get(b, bcast_index(b, r, dims, i));
    size_t la = strlen(sa), lb = strlen(sb);
    char *s = malloc(la + lb + 1);
    if (!s) {
      st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
      break;
    }
    memcpy(s, sa, la);
    memcpy(s + la, sb, lb + 1);
    put_owned(&out, i, s);
  }
  if (st) rt_val_release(x, &out);
  else rt_hs_set_out(x, f, n, 0, &out);
  return st;
}

/* ---- StringSplit ---- */

/* Bytes of the whitespace character at s (Python's str.isspace set), 0 if none. */
static size_t space_at(const unsigned char *s) {
  if (*s == ' ' || (*s >= '\t' && *s <= '\r') || (*s >= 0x1C && *s <= 0x1F)) return 1;
  if (s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
  if (s[0] == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3; /* U+1680 */
  if (s[0] == 0xE2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
    return 3; /* U+2000..200A, U+2028, U+2029, U+202F */
  if (s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3; /* U+205F */
  if (s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3; /* U+3000 */
  return 0;
}

/* Python's str.split(sep, maxsplit) (sep NULL: runs of whitespace, ends trimmed).
 * Writes the pieces' starts and lengths when starts is not NULL; returns their count. */
static int64_t split_one(const char *str, const char *sep, size_t seplen, int64_t maxsplit, size_t *starts, size_t *lens) {
  const unsigned char *s = (const unsigned char *)str;
  size_t len = strlen(str), i = 0;
  int64_t n = 0;
#define ADD(a, b)                                                                                                   \
  do {                                                                                                              \
    if (starts) {                                                                                                   \
      starts[n] = (a);                                                                                              \
      lens[n] = (b) - (a);                                                                                          \
    }                                                                                                               \
    n++;                                                                                                            \
  } while (0)
  if (sep) {
    for (const char *hit; (maxsplit < 0 || n < maxsplit) && (hit = strstr(str + i, sep)) != NULL;) {
      ADD(i, (size_t)(hit - str));
      i = (size_t)(hit - str) + seplen;
    }
    ADD(i, len);
    return n;
  }
  while (maxsplit < 0 || n < maxsplit) {
    for (size_t w; i < len && (w = space_at(s + i)) > 0;) i += w;
    if (i == len) break;
    size_t j = i;
    while (i < len && !space_at(s + i)) i++;
    ADD(j, i);
  }
  if (i < len) { /* maxsplit reached: the rest, leading whitespace skipped, is the last piece */
    for (size_t w; i < len && (w = space_at(s + i)) > 0;) i += w;
    if (i < len) ADD(i, len);
  }
#undef ADD
  return n;
}

static flagos_status_t op_split(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n) {
  rt_val_t *a = rt_hs_in(f, n, 0);
  FL_TRY(rt_hs_need(a, true, "X"));
  const fir_attr_t *da = fir_node_attr(n, "delimiter");
  const char *sep = da && da->kind == FIR_ATTR_STRING && da->s && da->s[0] ? da->s : NULL;
  size_t seplen = sep ? strlen(sep) : 0;
  int64_t maxsplit = fir_node_attr(n, "maxsplit") ? fir_attr_int(n, "maxsplit", -1) : -1;
  int64_t cnt = rt_numel(a->rank, a->dims), most = 0;
  int64_t *counts = calloc((size_t)cnt + 1, sizeof(int64_t));
  if (!counts) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t i = 0; i < cnt; i++) {
    counts[i] = split_one(rt_str_get(a, i), sep, seplen, maxsplit, NULL, NULL);
    if (counts[i] > most) most = counts[i];
  }
  int64_t dims[OPS_MAX_RANK];
  memcpy(dims, a->dims, sizeof(int64_t) * (size_t)a->rank);
  dims[a->rank] = most;
  rt_val_t out;
  flagos_status_t st = rt_val_alloc_tensor(x, &out, FLAGOS_STRING, a->rank + 1, dims);
  size_t *starts = malloc(sizeof(size_t) * (size_t)(most + 1)), *lens = malloc(sizeof(size_t) * (size_t)(most + 1));
  if (!st && (!starts || !lens)) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t i = 0; i < cnt && !st; i++) {
    const char *s = rt_str_get(a, i);
    split_one(s, sep, seplen, maxsplit, starts, lens);
    for (int64_t j = 0; j < most && !st; j++)
      st = j < counts[i] ? rt_str_set(&out, i * most + j, s + starts[j], lens[j]) : rt_str_set(&out, i * most + j, "", 0);
  }
  free(starts);
  free(lens);
  if (st) rt_val_release(x, &out);
  else rt_hs_set_out(x, f, n, 0, &out);
  if (!st) st = out_from_host(x, f, n, 1, FLAGOS_INT64, a->rank, a->dims, counts);
  free(counts);
  return st;
}

/* ---- StringNormalizer ---- */

/* s with every character upper- or lower-cased (malloc'ed). loc: a UTF-8 locale,
 * or NULL for ASCII only. Bytes that are not valid UTF-8 are kept as they are. */
static char *map_case(const char *str, bool upper, locale_t loc) {
  const unsigned char *s = (const unsigned char *)str;
  size_t len = strlen(str);
  unsigned char *o = malloc(len * 2 + 4), *w = o; /* a case pair differs by at most one byte in length */
  if (!o) return NULL;
  for (size_t i = 0; i < len;) {
    unsigned c = s[i];
    int more = c >= 0xF0 && c < 0xF8 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    bool ok = c < 0x80 || (more && c < 0xF8 && i + (size_t)more < len + 1);
    unsigned long cp = more ? c & (0x3Fu >> more) : c;
    for (int k = 1; ok && k <= more; k++) {
      if (i + (size_t)k >= len || (s[i + k] & 0xC0) != 0x80) ok = false;
      else cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (!ok) {
      *w++ = s[i++];
      continue;
    }
    unsigned long m = cp;
    if (cp < 0x80) m = upper ? (unsigned long)(cp >= 'a' && cp <= 'z' ? cp - 32 : cp) : (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    else if (loc) m = (unsigned long)(upper ? towupper_l((wint_t)cp, loc) : towlower_l((wint_t)cp, loc));
    if (m < 0x80) *w++ = (unsigned char)m;
    else if (m < 0x800) { *w++ = (unsigned char)(0xC0 | m >> 6); *w++ = (unsigned char)(0x80 | (m & 0x3F)); }
    else if (m < 0x10000) { *w++ = (unsigned char)(0xE0 | m >> 12); *w++ = (unsigned char)(0x80 | (m >> 6 & 0x3F)); *w++ = (unsigned char)(0x80 | (m & 0x3F)); }
    else { *w++ = (unsigned char)(0xF0 | m >> 18); *w++ = (unsigned char)(0x80 | (m >> 12 & 0x3F)); *w++ = (unsigned char)(0x80 | (m >> 6 & 0x3F)); *w++ = (unsigned char)(0x80 | (m & 0x3F)); }
    i += (size_t)more + 1;
  }
  *w = 0;
  return (char *)o;
}

static flagos_status_t op_normalizer(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n) {
  rt_val_t *a = rt_hs_in(f, n, 0);
  FL_TRY(rt_hs_need(a, true, "X"));
  if (a->rank != 1 && !(a->rank == 2 && a->dims[0] == 1))
    return FL_ERR(FLAGOS_ERR_SHAPE, "X must be [C] or [1, C]");
  const char *act = fir_attr_string(n, "case_change_action", "NONE");
  bool lower = strcmp(act, "LOWER") == 0, upper = strcmp(act, "UPPER") == 0;
  bool sensitive = fir_attr_int(n, "is_case_sensitive", 0) != 0;
  const fir_attr_t *sw = fir_node_attr(n, "stopwords");
  int nsw = sw && sw->kind == FIR_ATTR_STRINGS ? sw->n : 0;
  /* en_US case mapping: C.UTF-8 carries the same Unicode case tables. */
  locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
  int64_t cnt = a->dims[a->rank - 1], kept = 0;
  char **res = calloc((size_t)cnt + 1, sizeof(char *)), **folded_sw = calloc((size_t)nsw + 1, sizeof(char *));
  flagos_status_t st = res && folded_sw ? NULL : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int k = 0; k < nsw && !st && !sensitive; k++)
    if (!(folded_sw[k] = map_case(sw->strings[k], false, loc))) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t i = 0; i < cnt && !st; i++) {
    const char *s = rt_str_get(a, i);
    bool stop = false;
    if (nsw) {
      char *fs = sensitive ? NULL : map_case(s, false, loc);
      if (!sensitive && !fs) {
        st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
        break;
      }
      for (int k = 0; k < nsw && !stop; k++) stop = strcmp(sensitive ? s : fs, sensitive ? sw->strings[k] : folded_sw[k]) == 0;
      free(fs);
    }
    if (stop) continue;
    char *r = lower || upper ? map_case(s, upper, loc) : strdup(s);
    if (!r) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    else res[kept++] = r;
  }
  if (loc) freelocale(loc);
  rt_val_t out;
  memset(&out, 0, sizeof out);
  if (!st) {
    /* Everything dropped: one empty string, keeping the input's rank. */
    int64_t dims[2] = {1, kept ? kept : 1};
    st = rt_val_alloc_tensor(x, &out, FLAGOS_STRING, a->rank, a->rank == 1 ? &dims[1] : dims);
    for (int64_t i = 0; i < kept && !st; i++) {
      put_owned(&out, i, res[i]);
      res[i] = NULL;
    }
    if (!st && !kept) st = rt_str_set(&out, 0, "", 0);
  }
  for (int64_t i = 0; res && i < cnt; i++) free(res[i]);
  for (int k = 0; folded_sw && k < nsw; k++) free(folded_sw[k]);
  free(res);
  free(folded_sw);
  if (st) rt_val_release(x, &out);
  else rt_hs_set_out(x, f, n, 0, &out);
  return st;
}

/* ---- RegexFullMatch ---- */

static flagos_status_t op_regex(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n) {
  rt_val_t *a = rt_hs_in(f, n, 0);
  FL_TRY(rt_hs_need(a, true, "X"));
  const fir_attr_t *p = fir_node_attr(n, "pattern");
  if (!p || p->kind != FIR_ATTR_STRING) return ERR("attribute pattern is missing");
  ops_str_regex_t re;
  FL_TRY(ops_str_regex_compile(p->s, &re));
  int64_t cnt = rt_numel(a->rank, a->dims);
  uint8_t *m = malloc((size_t)cnt + 1);
  flagos_status_t st = m ? NULL : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t i = 0; i < cnt && !st; i++) m[i] = ops_str_regex_full_match(&re, rt_str_get(a, i));
  ops_str_regex_free(&re);
  if (!st) st = out_from_host(x, f, n, 0, FLAGOS_BOOL, a->rank, a->dims, m);
  free(m);
  return st;
}

flagos_status_t rt_host_strings(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  const char *op = n->op_type;
  if (strcmp(op, "StringConcat") == 0) return op_concat_or_equal(x, f, n, false);
  if (strcmp(op, "Equal") == 0) return op_concat_or_equal(x, f, n, true);
  if (strcmp(op, "StringSplit") == 0) return op_split(x, f, n);
  if (strcmp(op, "StringNormalizer") == 0) return op_normalizer(x, f, n);
  if (strcmp(op, "RegexFullMatch") == 0) return op_regex(x, f, n);
  if (strcmp(op, "Cast") == 0 || strcmp(op, "CastLike") == 0) return rt_hs_cast(x, f, rn);
  if (strcmp(op, "LabelEncoder") == 0) return rt_hs_label_encoder(x, f, rn);
  return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "the runtime has no implementation of %s on string tensors", op);
}
