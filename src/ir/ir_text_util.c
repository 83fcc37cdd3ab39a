#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir_text_internal.h"

/* ---- name table ---- */

static uint64_t key_hash(const void *scope, const char *name) {
  uintptr_t sp = (uintptr_t)scope;
  return fl_hash64(name, strlen(name), (uint64_t)sp * 0x9e3779b97f4a7c15ull);
}

static fir_nmap_entry_t *find_slot(fir_nmap_entry_t *e, size_t cap, const void *scope, const char *name,
                                   uint64_t h) {
  size_t i = (size_t)h & (cap - 1);
  for (;;) {
    fir_nmap_entry_t *s = &e[i];
    if (!s->name) return s;
    if (s->hash == h && s->scope == scope && strcmp(s->name, name) == 0) return s;
    i = (i + 1) & (cap - 1);
  }
}

void *fir_nmap_get(const fir_nmap_t *t, const void *scope, const char *name) {
  if (!t->cap) return NULL;
  fir_nmap_entry_t *s = find_slot(t->e, t->cap, scope, name, key_hash(scope, name));
  return s->name ? s->val : NULL;
}

void fir_nmap_put(fir_nmap_t *t, const void *scope, const char *name, void *val) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t nc = t->cap ? t->cap * 2 : 64;
    fir_nmap_entry_t *ne = calloc(nc, sizeof(*ne));
    if (!ne) {
      fputs("flagos: out of memory\n", stderr);
      abort();
    }
    for (size_t i = 0; i < t->cap; i++) {
      fir_nmap_entry_t *o = &t->e[i];
      if (o->name) *find_slot(ne, nc, o->scope, o->name, o->hash) = *o;
    }
    free(t->e);
    t->e = ne;
    t->cap = nc;
  }
  uint64_t h = key_hash(scope, name);
  fir_nmap_entry_t *s = find_slot(t->e, t->cap, scope, name, h);
  if (!s->name) {
    s->name = name;
    s->scope = scope;
    s->hash = h;
    t->n++;
  }
  s->val = val;
}

void fir_nmap_free(fir_nmap_t *t) {
  free(t->e);
  t->e = NULL;
  t->cap = t->n = 0;
}

/* ---- lexical classes ---- */

bool fir_text_is_word_start(int c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }

bool fir_text_is_word_char(int c) { return fir_text_is_word_start(c) || (c >= '0' && c <= '9') || c == '.'; }

bool fir_text_is_value_char(int c) { return fir_text_is_word_char(c) || c == '/' || c == '-'; }

size_t fir_text_value_bare_len(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] == ':') {
      if (i + 1 < n && s[i + 1] == ':') i += 2;
      else break;
    } else if (fir_text_is_value_char((unsigned char)s[i])) {
      i++;
    } else {
      break;
    }
  }
  return i;
}

bool fir_text_value_name_bare(const char *s) {
  if (!s || !*s) return false;
  size_t n = strlen(s);
  return fir_text_value_bare_len(s, n) == n;
}

bool fir_text_word_bare(const char *s) {
  if (!s || !fir_text_is_word_start((unsigned char)s[0])) return false;
  for (const char *p = s + 1; *p; p++)
    if (!fir_text_is_word_char((unsigned char)*p)) return false;
  /* Reserved where a word may start a statement or follow '='. */
  return strcmp(s, "_") != 0 && strcmp(s, "const") != 0 && strcmp(s, "default") != 0;
}

/* ---- printing helpers ---- */

void fir_text_put_string(fl_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  fl_buf_reserve(b, n + 2);
  fl_buf_putc(b, '"');
  size_t run = 0; /* bytes copied verbatim are appended in runs for speed */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      run++;
      continue;
    }
    fl_buf_append(b, s + i - run, run);
    run = 0;
    char esc[4] = {'\\', 0, 0, 0};
    size_t en = 2;
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\t': esc[1] = 't'; break;
    case '\r': esc[1] = 'r'; break;
    default:
      esc[1] = 'x';
      esc[2] = hex[c >> 4];
      esc[3] = hex[c & 15];
      en = 4;
    }
    fl_buf_append(b, esc, en);
  }
  fl_buf_append(b, s + n - run, run);
  fl_buf_putc(b, '"');
}

/* %g output such as "3" or "-7" would read back as an integer literal. */
static void put_number_text(fl_buf_t *b, const char *t) {
  fl_buf_puts(b, t);
  if (!strpbrk(t, ".eE")) fl_buf_puts(b, ".0");
}

void fir_text_put_f32(fl_buf_t *b, float f) {
  uint32_t bits;
  memcpy(&bits, &f, 4);
  if (isnan(f)) {
    if (bits == 0x7fc00000u) fl_buf_puts(b, "nan");
    else fl_buf_printf(b, "nan:0x%08x", (unsigned)bits);
    return;
  }
  if (isinf(f)) {
    fl_buf_puts(b, f < 0 ? "-inf" : "inf");
    return;
  }
  char t[48];
  snprintf(t, sizeof t, "%.9g", (double)f);
  put_number_text(b, t);
}

void fir_text_put_f64(fl_buf_t *b, double d) {
  uint64_t bits;
  memcpy(&bits, &d, 8);
  if (isnan(d)) {
    if (bits == 0x7ff8000000000000ull) fl_buf_puts(b, "nan");
    else fl_buf_printf(b, "nan:0x%016llx", (unsigned long long)bits);
    return;
  }
  if (isinf(d)) {
    fl_buf_puts(b, d < 0 ? "-inf" : "inf");
    return;
  }
  char t[48];
  snprintf(t, sizeof t, "%.17g", d);
  put_number_text(b, t);
}

void fir_text_describe_node(fl_buf_t *b, const fir_node_t *n) {
  if (n->name && n->name[0]) fl_buf_printf(b, "node '%s' (%s)", n->name, n->op_type ? n->op_type : "?");
  else fl_buf_printf(b, "node #%d (%s)", n->id, n->op_type ? n->op_type : "?");
  if (n->graph && n->graph->name && n->graph->parent) fl_buf_printf(b, " in graph '%s'", n->graph->name);
}
