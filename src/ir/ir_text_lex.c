/* FlagIR parser, lower half: tokens and literals. Every read is bounds-checked
 * against p->n (the text need not be NUL-terminated and may hold NUL bytes). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir_text_parse.h"

#define MAX_NUMBER_LEN 400

static int at(const fir_parser_t *p, size_t i) { return i < p->n ? (unsigned char)p->s[i] : -1; }

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static int hex_val(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A short, printable rendering of the text at pos, for "found ..." messages. */
static void describe_at(const fir_parser_t *p, size_t pos, fl_buf_t *b) {
  if (pos >= p->n) {
    fl_buf_puts(b, "end of input");
    return;
  }
  fl_buf_putc(b, '\'');
  size_t end = pos;
  int c0 = at(p, pos);
  if (fir_text_is_value_char(c0) || c0 == ':') {
    while (end < p->n && end - pos < 24 && (fir_text_is_value_char(at(p, end)) || at(p, end) == ':')) end++;
  } else {
    end = pos + 1;
  }
  for (size_t i = pos; i < end; i++) {
    int c = at(p, i);
    if (c >= 0x20 && c < 0x7f && c != '\'') fl_buf_putc(b, (char)c);
    else fl_buf_printf(b, "\\x%02x", (unsigned)c);
  }
  fl_buf_putc(b, '\'');
}

bool fir_p_error(fir_parser_t *p, size_t pos, const char *fmt, ...) {
  if (p->err) return false;
  if (pos > p->n) pos = p->n;
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos; i++) {
    if (p->s[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  fl_buf_t b = {0};
  fl_buf_printf(&b, "line %zu, col %zu: ", line, col);
  va_list ap;
  va_start(ap, fmt);
  fl_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  p->err = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s", b.data ? b.data : "parse error");
  fl_buf_free(&b);
  return false;
}

bool fir_p_expected(fir_parser_t *p, const char *what) {
  fir_p_peek(p);
  fl_buf_t b = {0};
  describe_at(p, p->pos, &b);
  fir_p_error(p, p->pos, "expected %s, found %s", what, b.data);
  fl_buf_free(&b);
  return false;
}

int fir_p_peek(fir_parser_t *p) {
  for (;;) {
    int c = at(p, p->pos);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      p->pos++;
    } else if (c == '#') {
      while (p->pos < p->n && p->s[p->pos] != '\n') p->pos++;
    } else {
      return c;
    }
  }
}

bool fir_p_accept(fir_parser_t *p, char c) {
  if (fir_p_peek(p) != (unsigned char)c) return false;
  p->pos++;
  return true;
}

bool fir_p_expect(fir_parser_t *p, char c, const char *context) {
  if (fir_p_accept(p, c)) return true;
  char what[160];
  snprintf(what, sizeof what, "'%c' %s", c, context);
  return fir_p_expected(p, what);
}

static size_t word_end(const fir_parser_t *p, size_t i) {
  if (!fir_text_is_word_start(at(p, i))) return i;
  i++;
  while (fir_text_is_word_char(at(p, i))) i++;
  return i;
}

bool fir_p_peek_word(fir_parser_t *p, const char *w) {
  fir_p_peek(p);
  size_t e = word_end(p, p->pos), n = strlen(w);
  return e - p->pos == n && memcmp(p->s + p->pos, w, n) == 0;
}

bool fir_p_accept_word(fir_parser_t *p, const char *w) {
  if (!fir_p_peek_word(p, w)) return false;
  p->pos += strlen(w);
  return true;
}

bool fir_p_word(fir_parser_t *p, const char **out, const char *what) {
  fir_p_peek(p);
  size_t e = word_end(p, p->pos);
  if (e == p->pos) return fir_p_expected(p, what);
  *out = fl_arena_strndup(p->m->arena, p->s + p->pos, e - p->pos);
  p->pos = e;
  return true;
}

bool fir_p_string(fir_parser_t *p, const char **out, size_t *len, const char *what) {
  if (fir_p_peek(p) != '"') return fir_p_expected(p, what);
  size_t start = p->pos++;
  /* The decoded string is never longer than its spelling. */
  size_t cap = 0;
  for (size_t i = p->pos; i < p->n && p->s[i] != '"'; i++) {
    if (p->s[i] == '\\') i++;
    cap++;
  }
  char *d = fl_arena_alloc(p->m->arena, cap + 1);
  size_t k = 0;
  for (;;) {
    int c = at(p, p->pos);
    if (c < 0) return fir_p_error(p, start, "unterminated string");
    if (c == '"') break;
    if (c < 0x20 || c == 0x7f)
      return fir_p_error(p, p->pos, "raw control byte 0x%02x in string; write it as \\x%02x", (unsigned)c, (unsigned)c);
    if (c == '\\') {
      int e = at(p, p->pos + 1);
      switch (e) {
      case '"': c = '"'; break;
      case '\\': c = '\\'; break;
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case 'r': c = '\r'; break;
      case 'x': {
        int h = hex_val(at(p, p->pos + 2)), l = hex_val(at(p, p->pos + 3));
        if (h < 0 || l < 0) return fir_p_error(p, p->pos, "expected two hex digits after \\x");
        c = h * 16 + l;
        p->pos += 2;
        break;
      }
      default: return fir_p_error(p, p->pos, "unknown escape in string (use \\\" \\\\ \\n \\t \\r or \\xHH)");
      }
      p->pos += 2;
    } else {
      p->pos++;
    }
    if (k >= cap) return fir_p_error(p, start, "malformed string"); /* cannot happen; keeps writes bounded */
    d[k++] = (char)c;
  }
  p->pos++;
  d[k] = 0;
  *out = d;
  if (len) *len = k;
  return true;
}

bool fir_p_word_or_string(fir_parser_t *p, const char **out, const char *what) {
  if (fir_p_peek(p) == '"') return fir_p_string(p, out, NULL, what);
  return fir_p_word(p, out, what);
}

bool fir_p_value_name(fir_parser_t *p, const char **out, const char *what) {
  if (fir_p_peek(p) != '%') return fir_p_expected(p, what);
  size_t start = p->pos++;
  if (at(p, p->pos) == '"') {
    size_t len;
    if (!fir_p_string(p, out, &len, "a quoted value name")) return false;
    if (len == 0) return fir_p_error(p, start, "a value name cannot be empty");
    if (strlen(*out) != len) return fir_p_error(p, start, "a value name cannot hold a NUL byte");
    return true;
  }
  size_t e = p->pos + fir_text_value_bare_len(p->s + p->pos, p->n - p->pos);
  if (e == p->pos) return fir_p_error(p, start, "expected a value name after '%%'");
  *out = fl_arena_strndup(p->m->arena, p->s + p->pos, e - p->pos);
  p->pos = e;
  return true;
}

/* ---- numbers ---- */

bool fir_p_number(fir_parser_t *p, fir_num_t *out, const char *what) {
  fir_p_peek(p);
  size_t i = p->pos;
  bool is_float = false;
  if (at(p, i) == '-') i++;
  size_t w = word_end(p, i);
  if ((w - i == 3 && memcmp(p->s + i, "inf", 3) == 0)) {
    i = w;
    is_float = true;
  } else if (w - i == 3 && memcmp(p->s + i, "nan", 3) == 0) {
    i = w;
    is_float = true;
    if (at(p, i) == ':' && at(p, i + 1) == '0' && at(p, i + 2) == 'x') {
      i += 3;
      size_t h = i;
      while (hex_val(at(p, i)) >= 0) i++;
      if (i == h || i - h > 16) return fir_p_error(p, h, "expected 1 to 16 hex digits of a NaN bit pattern");
    }
  } else if (is_digit(at(p, i))) {
    while (is_digit(at(p, i))) i++;
    if (at(p, i) == '.') {
      is_float = true;
      i++;
      while (is_digit(at(p, i))) i++;
    }
    if (at(p, i) == 'e' || at(p, i) == 'E') {
      is_float = true;
      i++;
      if (at(p, i) == '+' || at(p, i) == '-') i++;
      if (!is_digit(at(p, i))) return fir_p_error(p, i, "expected digits of an exponent");
      while (is_digit(at(p, i))) i++;
    }
  } else {
    return fir_p_expected(p, what);
  }
  if (fir_text_is_word_char(at(p, i))) return fir_p_error(p, i, "unexpected character after number");
  if (i - p->pos > MAX_NUMBER_LEN) return fir_p_error(p, p->pos, "number longer than %d characters", MAX_NUMBER_LEN);
  out->pos = p->pos;
  out->len = i - p->pos;
  out->is_float = is_float;
  p->pos = i;
  return true;
}

static void num_text(const fir_parser_t *p, const fir_num_t *n, char *buf) {
  memcpy(buf, p->s + n->pos, n->len);
  buf[n->len] = 0;
}

/* Handles inf and nan spellings; returns 0 when the text is an ordinary decimal. */
static int special_float(fir_parser_t *p, const fir_num_t *n, const char *t, int bits, uint64_t *pattern) {
  bool neg = t[0] == '-';
  const char *u = t + neg;
  uint64_t sign = (uint64_t)neg << (bits - 1);
  uint64_t exp_all = bits == 32 ? 0x7f800000ull : 0x7ff0000000000000ull;
  uint64_t quiet = bits == 32 ? 0x00400000ull : 0x0008000000000000ull;
  if (strcmp(u, "inf") == 0) {
    *pattern = sign | exp_all;
    return 1;
  }
  if (strncmp(u, "nan", 3) != 0) return 0;
  if (u[3] == 0) {
    *pattern = sign | exp_all | quiet;
    return 1;
  }
  if (neg) return fir_p_error(p, n->pos, "a NaN with a bit pattern carries its sign in the pattern"), -1;
  uint64_t v = strtoull(u + 6, NULL, 16);
  uint64_t mant = bits == 32 ? 0x007fffffull : 0x000fffffffffffffull;
  if ((bits == 32 && v > 0xffffffffull) || (v & exp_all) != exp_all || (v & mant) == 0)
    return fir_p_error(p, n->pos, "0x%llx is not the bit pattern of an f%d NaN", (unsigned long long)v, bits), -1;
  *pattern = v;
  return 1;
}

bool fir_p_num_f32(fir_parser_t *p, const fir_num_t *n, float *out) {
  char t[MAX_NUMBER_LEN + 1];
  num_text(p, n, t);
  uint64_t pat;
  int sp = special_float(p, n, t, 32, &pat);
  if (sp < 0) return false;
  if (sp) {
    uint32_t b32 = (uint32_t)pat;
    memcpy(out, &b32, 4);
    return true;
  }
  errno = 0;
  char *end;
  float f = strtof(t, &end);
  if (*end) return fir_p_error(p, n->pos, "malformed number '%s'", t);
  if (errno == ERANGE && isinf(f)) return fir_p_error(p, n->pos, "%s is out of the range of f32", t);
  *out = f;
  return true;
}

bool fir_p_num_f64(fir_parser_t *p, const fir_num_t *n, double *out) {
  char t[MAX_NUMBER_LEN + 1];
  num_text(p, n, t);
  uint64_t pat;
  int sp = special_float(p, n, t, 64, &pat);
  if (sp < 0) return false;
  if (sp) {
    memcpy(out, &pat, 8);
    return true;
  }
  errno = 0;
  char *end;
  double d = strtod(t, &end);
  if (*end) return fir_p_error(p, n->pos, "malformed number '%s'", t);
  if (errno == ERANGE && isinf(d)) return fir_p_error(p, n->pos, "%s is out of the range of f64", t);
  *out = d;
  return true;
}

bool fir_p_num_i64(fir_parser_t *p, const fir_num_t *n, int64_t *out) {
  if (n->is_float) return fir_p_error(p, n->pos, "expected an integer, found a float");
  char t[MAX_NUMBER_LEN + 1];
  num_text(p, n, t);
  errno = 0;
  long long v = strtoll(t, NULL, 10);
  if (errno == ERANGE) return fir_p_error(p, n->pos, "%s does not fit in 64 bits", t);
  *out = v;
  return true;
}

static bool num_u64(fir_parser_t *p, const fir_num_t *n, uint64_t *out) {
  if (n->is_float || p->s[n->pos] == '-') return fir_p_error(p, n->pos, "expected an unsigned integer");
  char t[MAX_NUMBER_LEN + 1];
  num_text(p, n, t);
  errno = 0;
  unsigned long long v = strtoull(t, NULL, 10);
  if (errno == ERANGE) return fir_p_error(p, n->pos, "%s does not fit in 64 bits", t);
  *out = v;
  return true;
}

bool fir_p_int64(fir_parser_t *p, int64_t *out, const char *what) {
  fir_num_t n;
  if (!fir_p_number(p, &n, what)) return false;
  return fir_p_num_i64(p, &n, out);
}

bool fir_p_enter(fir_parser_t *p) {
  if (++p->depth > FIR_TEXT_MAX_DEPTH) {
    fir_p_peek(p);
    return fir_p_error(p, p->pos, "nesting deeper than %d levels", FIR_TEXT_MAX_DEPTH);
  }
  return true;
}

void fir_p_leave(fir_parser_t *p) { p->depth--; }

bool fir_p_grow(fir_parser_t *p, void **arr, int n, int *cap, size_t elem) {
  if (n < *cap) return true;
  if (n >= INT_MAX / 4) return fir_p_error(p, p->pos, "too many entries in one list");
  int nc = *cap ? *cap * 2 : 8;
  void *d = fl_arena_alloc(p->m->arena, elem * (size_t)nc);
  if (n) memcpy(d, *arr, elem * (size_t)n);
  *arr = d;
  *cap = nc;
  return true;
}

/* ---- types ---- */

static bool parse_dtype(fir_parser_t *p, flagos_dtype_t *out) {
  size_t pos = (fir_p_peek(p), p->pos);
  const char *w;
  if (!fir_p_word(p, &w, "an element type (f32, i64, bool, str, ...)")) return false;
  if (strcmp(w, "undef") == 0) {
    *out = FLAGOS_UNDEFINED;
    return true;
  }
  *out = flagos_dtype_from_name(w);
  if (*out == FLAGOS_UNDEFINED) return fir_p_error(p, pos, "unknown element type '%s'", w);
  return true;
}

static bool parse_type_inner(fir_parser_t *p, fir_type_t *t) {
  if (fir_p_accept(p, '?')) {
    t->kind = FIR_TYPE_UNKNOWN;
    t->rank = -1;
    return true;
  }
  bool seq = fir_p_peek_word(p, "seq"), opt = fir_p_peek_word(p, "opt");
  if (seq || opt || fir_p_peek_word(p, "map")) {
    p->pos += 3;
    t->kind = seq ? FIR_TYPE_SEQUENCE : opt ? FIR_TYPE_OPTIONAL : FIR_TYPE_MAP;
    t->rank = -1;
    if (!fir_p_expect(p, '<', "to open the element type")) return false;
    if (t->kind == FIR_TYPE_MAP) {
      if (!parse_dtype(p, &t->dtype) || !fir_p_expect(p, ',', "after the key type of a map")) return false;
    }
    if (!fir_p_type(p, &t->elem)) return false;
    return fir_p_expect(p, '>', "to close the element type");
  }
  t->kind = FIR_TYPE_TENSOR;
  if (!parse_dtype(p, &t->dtype)) return false;
  if (!fir_p_expect(p, '[', "after the element type")) return false;
  if (fir_p_accept(p, '*')) {
    t->rank = -1;
    return fir_p_expect(p, ']', "after '*' (unknown rank)");
  }
  int cap = 0;
  t->rank = 0;
  if (fir_p_accept(p, ']')) return true;
  do {
    if (!fir_p_grow(p, (void **)&t->dims, t->rank, &cap, sizeof(*t->dims))) return false;
    fir_dim_t *d = &t->dims[t->rank];
    int c = fir_p_peek(p);
    if (c == '?') {
      p->pos++;
      d->value = -1;
    } else if (c == '"' || fir_text_is_word_start(c)) {
      d->value = -1;
      if (!fir_p_word_or_string(p, &d->sym, "a dimension name")) return false;
    } else {
      size_t pos = p->pos;
      if (!fir_p_int64(p, &d->value, "a dimension (an integer, a name or '?')")) return false;
      if (d->value < 0) return fir_p_error(p, pos, "a dimension cannot be negative; write '?' when it is unknown");
    }
    t->rank++;
  } while (fir_p_accept(p, ','));
  return fir_p_expect(p, ']', "to close the dimensions");
}

bool fir_p_type(fir_parser_t *p, fir_type_t **out) {
  if (!fir_p_enter(p)) return false;
  fir_type_t *t = fl_arena_alloc(p->m->arena, sizeof(*t));
  bool ok = parse_type_inner(p, t);
  fir_p_leave(p);
  *out = t;
  return ok;
}

/* ---- tensors ---- */

static bool listable(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_BOOL: case FLAGOS_UINT8: case FLAGOS_INT8: case FLAGOS_UINT16: case FLAGOS_INT16:
  case FLAGOS_UINT32: case FLAGOS_INT32: case FLAGOS_UINT64: case FLAGOS_INT64: case FLAGOS_UINT4:
  case FLAGOS_INT4: case FLAGOS_UINT2: case FLAGOS_INT2: case FLAGOS_FLOAT32: case FLAGOS_FLOAT64:
  case FLAGOS_STRING: return true;
  default: return false;
  }
}

/* Stores one list element; integer ranges are those of the storage type (a
 * sub-byte type keeps one element per byte). */
static bool store_element(fir_parser_t *p, flagos_dtype_t dt, const fir_num_t *n, fl_buf_t *out) {
  int64_t lo = 0, hi = 0;
  size_t size = flagos_dtype_size(dt);
  switch (dt) {
  case FLAGOS_FLOAT32: {
    float f;
    if (!fir_p_num_f32(p, n, &f)) return false;
    fl_buf_append(out, &f, 4);
    return true;
  }
  case FLAGOS_FLOAT64: {
    double d;
    if (!fir_p_num_f64(p, n, &d)) return false;
    fl_buf_append(out, &d, 8);
    return true;
  }
  case FLAGOS_UINT64: {
    uint64_t u;
    if (!num_u64(p, n, &u)) return false;
    fl_buf_append(out, &u, 8);
    return true;
  }
  case FLAGOS_INT64: {
    int64_t v;
    if (!fir_p_num_i64(p, n, &v)) return false;
    fl_buf_append(out, &v, 8);
    return true;
  }
  case FLAGOS_BOOL: case FLAGOS_UINT8: case FLAGOS_UINT4: case FLAGOS_UINT2: hi = UINT8_MAX; break;
  case FLAGOS_INT8: case FLAGOS_INT4: case FLAGOS_INT2: lo = INT8_MIN, hi = INT8_MAX; break;
  case FLAGOS_UINT16: hi = UINT16_MAX; break;
  case FLAGOS_INT16: lo = INT16_MIN, hi = INT16_MAX; break;
  case FLAGOS_UINT32: hi = UINT32_MAX; break;
  case FLAGOS_INT32: lo = INT32_MIN, hi = INT32_MAX; break;
  default: return fir_p_error(p, n->pos, "internal: no list form for %s", flagos_dtype_name(dt));
  }
  int64_t v;
  if (!fir_p_num_i64(p, n, &v)) return false;
  if (v < lo || v > hi)
    return fir_p_error(p, n->pos, "%lld is out of range for %s", (long long)v, flagos_dtype_name(dt));
  /* Little-endian hosts only: the low bytes of v are the element. */
  fl_buf_append(out, &v, size);
  return true;
}

static bool parse_list_payload(fir_parser_t *p, fir_tensor_t *t, size_t open_pos) {
  fl_arena_t *a = p->m->arena;
  int64_t count = 0;
  if (t->dtype == FLAGOS_STRING) {
    int cap = 0, n = 0;
    char **strs = NULL;
    size_t *lens = NULL;
    int lcap = 0;
    if (fir_p_peek(p) != ']') {
      do {
        const char *s;
        size_t len;
        if (!fir_p_grow(p, (void **)&strs, n, &cap, sizeof(*strs))) return false;
        if (!fir_p_grow(p, (void **)&lens, n, &lcap, sizeof(*lens))) return false;
        if (!fir_p_string(p, &s, &len, "a string element")) return false;
        strs[n] = (char *)s;
        lens[n] = len;
        n++;
      } while (fir_p_accept(p, ','));
    }
    if (!fir_p_expect(p, ']', "to close the tensor's elements")) return false;
    count = n;
    if (count != t->numel) goto mismatch;
    t->data = strs ? (void *)strs : fl_arena_alloc(a, sizeof(char *));
    t->string_lens = lens ? lens : fl_arena_alloc(a, sizeof(size_t));
    t->nbytes = (size_t)t->numel * sizeof(char *);
    return true;
  }
  fl_buf_t data = {0};
  if (fir_p_peek(p) != ']') {
    do {
      fir_num_t num;
      if (!fir_p_number(p, &num, "a number") || !store_element(p, t->dtype, &num, &data)) {
        fl_buf_free(&data);
        return false;
      }
      count++;
    } while (fir_p_accept(p, ','));
  }
  if (!fir_p_expect(p, ']', "to close the tensor's elements")) {
    fl_buf_free(&data);
    return false;
  }
  if (count != t->numel) {
    fl_buf_free(&data);
    goto mismatch;
  }
  t->nbytes = data.len;
  t->data = fl_arena_alloc(a, data.len ? data.len : 1);
  if (data.len) memcpy(t->data, data.data, data.len);
  fl_buf_free(&data);
  return true;
mismatch:
  return fir_p_error(p, open_pos, "the tensor has %lld elements but the list holds %lld", (long long)t->numel,
                     (long long)count);
}

static bool parse_dense_payload(fir_parser_t *p, fir_tensor_t *t) {
  if (t->dtype == FLAGOS_STRING) return fir_p_error(p, p->pos, "str tensors are written as a list of strings");
  if (!fir_p_expect(p, '<', "after 'dense'")) return false;
  if (fir_p_peek(p) != '"') return fir_p_expected(p, "a string of hex digits");
  size_t start = p->pos + 1, e = start;
  while (e < p->n && hex_val(at(p, e)) >= 0) e++;
  if (at(p, e) != '"') return fir_p_error(p, e, "expected hex digits and a closing '\"' in dense<...>");
  size_t digits = e - start, size = flagos_dtype_size(t->dtype);
  if ((uint64_t)t->numel > SIZE_MAX / 2 / (size ? size : 1) || digits != (size_t)t->numel * size * 2)
    return fir_p_error(p, start, "dense<...> holds %zu hex digits; a %s tensor of %lld elements needs %llu", digits,
                       flagos_dtype_name(t->dtype), (long long)t->numel,
                       (unsigned long long)t->numel * (unsigned long long)size * 2ull);
  unsigned char *d = fl_arena_alloc(p->m->arena, digits / 2 ? digits / 2 : 1);
  for (size_t i = 0; i < digits / 2; i++)
    d[i] = (unsigned char)(hex_val(at(p, start + 2 * i)) * 16 + hex_val(at(p, start + 2 * i + 1)));
  t->data = d;
  t->nbytes = digits / 2;
  p->pos = e + 1;
  return fir_p_expect(p, '>', "to close dense<...>");
}

bool fir_p_tensor_payload(fir_parser_t *p, fir_tensor_t *t) {
  int c = fir_p_peek(p);
  size_t pos = p->pos;
  t->ref = -1;
  if (c == '@') {
    p->pos++;
    size_t e = word_end(p, p->pos);
    if (e - p->pos == 4 && memcmp(p->s + p->pos, "none", 4) == 0) {
      p->pos = e;
      return true;
    }
    if (at(p, p->pos) != 'w' || e - p->pos < 2 || e - p->pos > 19)
      return fir_p_error(p, pos, "expected a weight reference '@w<N>' or '@none'");
    int64_t r = 0;
    for (size_t i = p->pos + 1; i < e; i++) {
      if (!is_digit(at(p, i))) return fir_p_error(p, pos, "expected a weight reference '@w<N>' or '@none'");
      r = r * 10 + (at(p, i) - '0');
    }
    p->pos = e;
    t->ref = r;
    /* The bytes live in a bundle; nbytes says how many to expect there. */
    size_t size = flagos_dtype_size(t->dtype);
    t->nbytes = size && (uint64_t)t->numel <= SIZE_MAX / size ? (size_t)t->numel * size : 0;
    return true;
  }
  if (c == '[') {
    p->pos++;
    if (!listable(t->dtype))
      return fir_p_error(p, pos, "%s tensors are written as dense<\"hex\">, not as a list", flagos_dtype_name(t->dtype));
    return parse_list_payload(p, t, pos);
  }
  if (fir_p_accept_word(p, "dense")) return parse_dense_payload(p, t);
  return fir_p_expected(p, "tensor data: [elements], dense<\"hex\">, @w<N> or @none");
}

fir_tensor_t *fir_p_tensor_from_type(fir_parser_t *p, const fir_type_t *ty) {
  if (!fir_type_is_static(ty)) return NULL;
  fir_tensor_t *t = fl_arena_alloc(p->m->arena, sizeof(*t));
  t->dtype = ty->dtype;
  t->rank = ty->rank;
  t->dims = fl_arena_alloc(p->m->arena, sizeof(int64_t) * (size_t)(ty->rank > 0 ? ty->rank : 1));
  t->numel = 1;
  for (int i = 0; i < ty->rank; i++) {
    t->dims[i] = ty->dims[i].value;
    if (t->dims[i] && t->numel > INT64_MAX / t->dims[i]) return NULL;
    t->numel *= t->dims[i];
  }
  return t;
}

bool fir_p_tensor(fir_parser_t *p, fir_tensor_t **out) {
  if (!fir_p_accept_word(p, "tensor")) return fir_p_expected(p, "'tensor<...>'");
  if (!fir_p_expect(p, '<', "after 'tensor'")) return false;
  fir_tensor_t *t = fl_arena_alloc(p->m->arena, sizeof(*t));
  if (fir_p_peek(p) == '"') {
    if (!fir_p_string(p, &t->name, NULL, "a tensor name")) return false;
    if (!fir_p_expect(p, ':', "after the tensor's name")) return false;
  }
  if (!parse_dtype(p, &t->dtype) || !fir_p_expect(p, '[', "after the tensor's element type")) return false;
  int cap = 0;
  t->numel = 1;
  if (fir_p_peek(p) != ']') {
    do {
      if (!fir_p_grow(p, (void **)&t->dims, t->rank, &cap, sizeof(*t->dims))) return false;
      size_t pos = p->pos;
      int64_t d;
      if (!fir_p_int64(p, &d, "a dimension")) return false;
      if (d < 0) return fir_p_error(p, pos, "a tensor dimension cannot be negative");
      if (d && t->numel > INT64_MAX / d) return fir_p_error(p, pos, "the tensor has more than 2^63 elements");
      t->numel *= d;
      t->dims[t->rank++] = d;
    } while (fir_p_accept(p, ','));
  }
  if (!t->dims) t->dims = fl_arena_alloc(p->m->arena, sizeof(int64_t));
  if (!fir_p_expect(p, ']', "to close the tensor's dimensions") || !fir_p_expect(p, '>', "to close tensor<...>"))
    return false;
  *out = t;
  return fir_p_tensor_payload(p, t);
}
