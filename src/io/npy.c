/* NumPy .npy files (format versions 1.0, 2.0, 3.0; see numpy/lib/format.py for the
 * layout): magic, version, header length, a Python dict literal, then the data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/value_io.h"

static const char k_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* ---- header dict parsing: only what numpy writes ({'descr': ..., 'fortran_order': ..., 'shape': ...}) ---- */

typedef struct {
  const char *p, *end;
} cursor_t;

static void skip_ws(cursor_t *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool eat(cursor_t *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return true;
  }
  return false;
}

/* A quoted Python string without escapes (numpy never writes any). */
static bool parse_str(cursor_t *c, char *buf, size_t cap) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
  char q = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != q) {
    if (n + 1 >= cap) return false;
    buf[n++] = *c->p++;
  }
  if (c->p >= c->end) return false;
  c->p++;
  buf[n] = 0;
  return true;
}

static bool parse_word(cursor_t *c, const char *w) {
  skip_ws(c);
  size_t n = strlen(w);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
  c->p += n;
  return true;
}

static bool parse_shape(cursor_t *c, int *rank, int64_t *dims) {
  if (!eat(c, '(')) return false;
  *rank = 0;
  for (;;) {
    if (eat(c, ')')) return true;
    skip_ws(c);
    int64_t v = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
      if (v > (INT64_MAX - 9) / 10) return false;
      v = v * 10 + (*c->p++ - '0');
    }
    if (c->p == start || *rank >= FLAGOS_MAX_RANK) return false;
    if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 longs */
    dims[(*rank)++] = v;
    if (!eat(c, ',')) return eat(c, ')');
  }
}

typedef struct {
  flagos_dtype_t dtype;
  char kind; /* 'U' and 'S' for strings, else 0 */
  size_t itemsize;
} npy_descr_t;

static flagos_status_t parse_descr(const char *d, npy_descr_t *out) {
  memset(out, 0, sizeof(*out));
  const char *s = d;
  char order = '=';
  if (*s == '<' || *s == '>' || *s == '|' || *s == '=') order = *s++;
  char kind = *s ? *s++ : 0;
  char *endp;
  unsigned long size = strtoul(s, &endp, 10);
  if (endp == s || *endp || size == 0 || size > (1u << 20))
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "unsupported dtype '%s'", d);
  static const struct {
    char kind;
    size_t size;
    flagos_dtype_t dt;
  } k_map[] = {{'b', 1, FLAGOS_BOOL},      {'i', 1, FLAGOS_INT8},       {'i', 2, FLAGOS_INT16},
               {'i', 4, FLAGOS_INT32},     {'i', 8, FLAGOS_INT64},      {'u', 1, FLAGOS_UINT8},
               {'u', 2, FLAGOS_UINT16},    {'u', 4, FLAGOS_UINT32},     {'u', 8, FLAGOS_UINT64},
               {'f', 2, FLAGOS_FLOAT16},   {'f', 4, FLAGOS_FLOAT32},    {'f', 8, FLAGOS_FLOAT64},
               {'c', 8, FLAGOS_COMPLEX64}, {'c', 16, FLAGOS_COMPLEX128}};
  if (kind == 'U' || kind == 'S') {
    out->dtype = FLAGOS_STRING;
    out->kind = kind;
    out->itemsize = kind == 'U' ? size * 4 : size;
  } else {
    for (size_t i = 0; i < FL_ARRAY_LEN(k_map); i++)
      if (k_map[i].kind == kind && k_map[i].size == size) out->dtype = k_map[i].dt;
    if (!out->dtype) return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "unsupported dtype '%s'", d);
    out->itemsize = size;
  }
  if (order == '>' && out->itemsize > 1 && out->kind != 'S')
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "big-endian dtype '%s' is not supported (save the array as '<%s')", d, d + 1);
  return NULL;
}

static flagos_status_t parse_header(const char *h, size_t n, npy_descr_t *descr, int *rank, int64_t *dims) {
  cursor_t c = {h, h + n};
  char key[64], descr_s[64] = "";
  bool have_descr = false, have_shape = false, fortran = false;
  if (!eat(&c, '{')) return FL_ERR(FLAGOS_ERR_CORRUPT, "header is not a dict");
  while (!eat(&c, '}')) {
    if (!parse_str(&c, key, sizeof key) || !eat(&c, ':')) return FL_ERR(FLAGOS_ERR_CORRUPT, "malformed header");
    if (strcmp(key, "descr") == 0) {
      if (!parse_str(&c, descr_s, sizeof descr_s))
        return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "structured arrays (a dtype list) are not supported");
      have_descr = true;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (parse_word(&c, "True"))
        fortran = true;
      else if (!parse_word(&c, "False"))
        return FL_ERR(FLAGOS_ERR_CORRUPT, "malformed fortran_order");
    } else if (strcmp(key, "shape") == 0) {
      if (!parse_shape(&c, rank, dims))
        return FL_ERR(FLAGOS_ERR_CORRUPT, "malformed shape (or more than %d dims)", FLAGOS_MAX_RANK);
      have_shape = true;
    } else {
      return FL_ERR(FLAGOS_ERR_CORRUPT, "unknown header key '%s'", key);
    }
    if (!eat(&c, ',')) {
      if (!eat(&c, '}')) return FL_ERR(FLAGOS_ERR_CORRUPT, "malformed header");
      break;
    }
  }
  if (!have_descr || !have_shape) return FL_ERR(FLAGOS_ERR_CORRUPT, "header lacks 'descr' or 'shape'");
  if (fortran)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "arrays in Fortran order are not supported (save with np.ascontiguousarray)");
  return parse_descr(descr_s, descr);
}

/* ---- UTF-8 <-> code points ---- */

static void put_utf8(fl_buf_t *b, uint32_t cp) {
  char s[4];
  if (cp < 0x80) {
    fl_buf_putc(b, (char)cp);
  } else if (cp < 0x800) {
    s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 63));
    fl_buf_append(b, s, 2);
  } else if (cp < 0x10000) {
    s[0] = (char)(0xE0 | (cp >> 12)), s[1] = (char)(0x80 | ((cp >> 6) & 63)), s[2] = (char)(0x80 | (cp & 63));
    fl_buf_append(b, s, 3);
  } else {
    s[0] = (char)(0xF0 | (cp >> 18)), s[1] = (char)(0x80 | ((cp >> 12) & 63)), s[2] = (char)(0x80 | ((cp >> 6) & 63));
    s[3] = (char)(0x80 | (cp & 63));
    fl_buf_append(b, s, 4);
  }
}

/* Decodes one UTF-8 sequence; malformed bytes decode as U+FFFD one byte at a time. */
static uint32_t next_utf8(const unsigned char **p, const unsigned char *end) {
  const unsigned char *s = *p;
  unsigned c = *s;
  int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
  uint32_t cp = n == 0 ? c : n == 1 ? (c & 31) : n == 2 ? (c & 15) : (c & 7);
  if (n < 0 || end - s <= n) n = -1;
  for (int i = 1; i <= n; i++) {
    if ((s[i] & 0xC0) != 0x80) {
      n = -1;
      break;
    }
    cp = (cp << 6) | (s[i] & 63u);
  }
  static const uint32_t k_min[] = {0, 0x80, 0x800, 0x10000};
  if (n < 0 || cp < k_min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
    *p = s + 1;
    return 0xFFFD;
  }
  *p = s + n + 1;
  return cp;
}

/* ---- reading ---- */

flagos_status_t io_read_npy(const void *data, size_t size, flagos_tensor_t *out) {
  memset(out, 0, sizeof(*out));
  const unsigned char *b = data;
  if (size < 10 || memcmp(b, k_magic, 6) != 0) return FL_ERR(FLAGOS_ERR_CORRUPT, "not a .npy file (bad magic)");
  int major = b[6];
  if (major < 1 || major > 3)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, ".npy format version %d.%d is not supported", major, b[7]);
  size_t hlen, start;
  if (major == 1) {
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    start = 10;
  } else {
    if (size < 12) return FL_ERR(FLAGOS_ERR_CORRUPT, "truncated .npy header");
    hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    start = 12;
  }
  if (hlen > size - start) return FL_ERR(FLAGOS_ERR_CORRUPT, "truncated .npy header");
  npy_descr_t d;
  int rank = 0;
  int64_t dims[FLAGOS_MAX_RANK];
  FL_TRY(parse_header((const char *)b + start, hlen, &d, &rank, dims));
  uint64_t numel = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] != 0 && numel > (UINT64_C(1) << 60) / (uint64_t)dims[i])
      return FL_ERR(FLAGOS_ERR_CORRUPT, "shape is too large");
    numel *= (uint64_t)dims[i];
  }
  size_t avail = size - start - hlen;
  if (numel > avail / d.itemsize)
    return FL_ERR(FLAGOS_ERR_CORRUPT,
                  "truncated .npy data: the shape needs %llu elements of %zu bytes, the file holds %zu bytes",
                  (unsigned long long)numel, d.itemsize, avail);
  const unsigned char *src = b + start + hlen;
  out->dtype = d.dtype;
  out->rank = rank;
  memcpy(out->dims, dims, sizeof(int64_t) * (size_t)rank);
  size_t esize = flagos_dtype_size(d.dtype);
  out->nbytes = (size_t)numel * esize;
  out->data = calloc(out->nbytes ? out->nbytes : 1, 1);
  if (!out->data) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes", out->nbytes);
  if (d.dtype != FLAGOS_STRING) {
    memcpy(out->data, src, out->nbytes);
    if (d.dtype == FLAGOS_BOOL)
      for (size_t i = 0; i < numel; i++) ((uint8_t *)out->data)[i] = ((uint8_t *)out->data)[i] != 0;
    return NULL;
  }
  char **strs = out->data;
  for (size_t i = 0; i < numel; i++) {
    const unsigned char *e = src + i * d.itemsize;
    fl_buf_t s = {0};
    if (d.kind == 'S') {
      size_t n = d.itemsize;
      while (n && !e[n - 1]) n--; /* numpy pads with NULs */
      fl_buf_append(&s, e, n);
    } else {
      size_t n = d.itemsize / 4;
      while (n && !(e[4 * n - 4] | e[4 * n - 3] | e[4 * n - 2] | e[4 * n - 1])) n--;
      for (size_t k = 0; k < n; k++) {
        uint32_t cp = (uint32_t)e[4 * k] | (uint32_t)e[4 * k + 1] << 8 | (uint32_t)e[4 * k + 2] << 16 |
                      (uint32_t)e[4 * k + 3] << 24;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
          fl_buf_free(&s);
          flagos_value_t v = {.tensor = *out};
          flagos_value_clear(&v);
          memset(out, 0, sizeof(*out));
          return FL_ERR(FLAGOS_ERR_CORRUPT, "string element %zu holds invalid code point 0x%x", i, cp);
        }
        put_utf8(&s, cp);
      }
    }
    fl_buf_append(&s, "", 0); /* fl_buf_take leaves an untouched buffer unterminated */
    strs[i] = fl_buf_take(&s);
  }
  return NULL;
}

/* ---- writing ---- */

/* What a FlagOS dtype is written as; types NumPy lacks go out as their raw bits. */
static const char *npy_descr(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_BOOL: return "|b1";
  case FLAGOS_INT8: return "|i1";
  case FLAGOS_UINT8: return "|u1";
  case FLAGOS_INT16: return "<i2";
  case FLAGOS_UINT16: return "<u2";
  case FLAGOS_INT32: return "<i4";
  case FLAGOS_UINT32: return "<u4";
  case FLAGOS_INT64: return "<i8";
  case FLAGOS_UINT64: return "<u8";
  case FLAGOS_FLOAT16: return "<f2";
  case FLAGOS_FLOAT32: return "<f4";
  case FLAGOS_FLOAT64: return "<f8";
  case FLAGOS_COMPLEX64: return "<c8";
  case FLAGOS_COMPLEX128: return "<c16";
  case FLAGOS_BFLOAT16: return "<u2";
  case FLAGOS_FLOAT8E4M3FN:
  case FLAGOS_FLOAT8E4M3FNUZ:
  case FLAGOS_FLOAT8E5M2:
  case FLAGOS_FLOAT8E5M2FNUZ:
  case FLAGOS_FLOAT8E8M0:
  case FLAGOS_FLOAT4E2M1:
  case FLAGOS_INT4:
  case FLAGOS_UINT4:
  case FLAGOS_INT2:
  case FLAGOS_UINT2: return "|u1";
  default: return NULL;
  }
}

static void write_header(fl_buf_t *out, const char *descr, const flagos_tensor_t *t) {
  fl_buf_t h = {0};
  fl_buf_printf(&h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (int i = 0; i < t->rank; i++) fl_buf_printf(&h, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  fl_buf_puts(&h, t->rank == 1 ? ",), }" : "), }");
  /* numpy pads so that the data starts on a 64-byte boundary, ending in '\n' */
  size_t pre = h.len + 1 + 64 <= 65535 ? 10 : 12;
  while ((pre + h.len + 1) % 64) fl_buf_putc(&h, ' ');
  fl_buf_putc(&h, '\n');
  fl_buf_append(out, k_magic, 6);
  unsigned char v[6];
  if (pre == 10) {
    v[0] = 1, v[1] = 0, v[2] = (unsigned char)h.len, v[3] = (unsigned char)(h.len >> 8);
    fl_buf_append(out, v, 4);
  } else {
    v[0] = 2, v[1] = 0;
    for (int i = 0; i < 4; i++) v[2 + i] = (unsigned char)(h.len >> (8 * i));
    fl_buf_append(out, v, 6);
  }
  fl_buf_append(out, h.data, h.len);
  fl_buf_free(&h);
}

static void write_strings(fl_buf_t *out, const flagos_tensor_t *t) {
  size_t n = (size_t)flagos_tensor_numel(t), maxlen = 1;
  char *const *s = t->data;
  for (size_t i = 0; i < n; i++) {
    const unsigned char *p = (const unsigned char *)(s[i] ? s[i] : ""), *end = p + strlen((const char *)p);
    size_t k = 0;
    while (p < end) next_utf8(&p, end), k++;
    if (k > maxlen) maxlen = k;
  }
  char descr[32];
  snprintf(descr, sizeof descr, "<U%zu", maxlen);
  write_header(out, descr, t);
  for (size_t i = 0; i < n; i++) {
    const unsigned char *p = (const unsigned char *)(s[i] ? s[i] : ""), *end = p + strlen((const char *)p);
    size_t k = 0;
    while (p < end) {
      uint32_t cp = next_utf8(&p, end);
      unsigned char u[4] = {(unsigned char)cp, (unsigned char)(cp >> 8), (unsigned char)(cp >> 16),
                            (unsigned char)(cp >> 24)};
      fl_buf_append(out, u, 4);
      k++;
    }
    for (; k < maxlen; k++) fl_buf_append(out, "\0\0\0\0", 4);
  }
}

flagos_status_t io_write_npy(const char *path, const flagos_tensor_t *t) {
  if (t->rank < 0 || t->rank > FLAGOS_MAX_RANK)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cannot write '%s': rank %d", path, t->rank);
  size_t n = (size_t)flagos_tensor_numel(t), esize = flagos_dtype_size(t->dtype);
  if (n && !t->data) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cannot write '%s': the tensor holds no data", path);
  fl_buf_t out = {0};
  if (t->dtype == FLAGOS_STRING) {
    write_strings(&out, t);
  } else {
    const char *descr = npy_descr(t->dtype);
    if (!descr)
      return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "cannot write '%s': no .npy form for dtype %s", path,
                    flagos_dtype_onnx_name(t->dtype));
    write_header(&out, descr, t);
    size_t at = out.len;
    fl_buf_append(&out, t->data, n * esize);
    /* Signed sub-byte types are sign-extended in memory; the file keeps their bits. */
    unsigned mask = t->dtype == FLAGOS_INT4 ? 15u : t->dtype == FLAGOS_INT2 ? 3u : 255u;
    for (size_t i = 0; mask != 255u && i < n; i++) out.data[at + i] = (char)((unsigned char)out.data[at + i] & mask);
  }
  flagos_status_t st = fl_write_file(path, out.data, out.len);
  fl_buf_free(&out);
  return st;
}
