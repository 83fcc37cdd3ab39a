/* RegexFullMatch's patterns: ONNX specifies RE2 syntax; FlagOS has no RE2, so a
 * pattern is rewritten as a POSIX extended regex (glibc's <regex.h>) that
 * accepts exactly the same whole strings. A full match does not depend on which
 * of several matches an engine prefers, so RE2's leftmost-first and POSIX's
 * leftmost-longest agree, and lazy quantifiers can drop their '?'. RE2's Perl
 * classes are ASCII (\w is [0-9A-Za-z_]) and are spelled out as such; '.'
 * matches any UTF-8 character except newline, so patterns are compiled and run
 * under the C.UTF-8 locale (set per thread, never globally). */
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_string.h"

#define DIGITS "0123456789"
#define WORD DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
#define SPACE "\t\n\f\r "

typedef struct rx {
  fl_buf_t b;
  const char *p; /* next unread character */
  const char *src;
} rx_t;

static flagos_status_t unsupported(const rx_t *r, const char *what) {
  return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "RegexFullMatch: %s (at offset %d of pattern \"%s\") has no POSIX equivalent in FlagOS",
                what, (int)(r->p - r->src), r->src);
}

static bool ere_special(int c) { return c && strchr(".[]()*+?{}|^$\\", c) != NULL; }

static void put_utf8(fl_buf_t *b, unsigned long cp) {
  char o[4];
  int n;
  if (cp < 0x80) { o[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) { o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
  else { o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3F)); o[2] = (char)(0x80 | (cp >> 6 & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
  fl_buf_append(b, o, (size_t)n);
}

/* \xHH or \x{H...} after the 'x': the code point, or -1. */
static long hex_escape(rx_t *r) {
  bool brace = *r->p == '{';
  if (brace) r->p++;
  long v = 0;
  int n = 0;
  while ((brace || n < 2) && strchr("0123456789abcdefABCDEF", *r->p) && *r->p) {
    int c = *r->p++;
    v = v * 16 + (c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
    if (++n > 8) return -1;
  }
  if (brace && *r->p++ != '}') return -1;
  return n ? v : -1;
}

/* A single-character escape (\n, \t, \x41, \.): its code point, -2 when the escape
 * is a class or an assertion, -1 when it is not valid RE2. */
static long char_escape(rx_t *r, int e) {
  switch (e) {
  case 'n': return '\n';
  case 't': return '\t';
  case 'r': return '\r';
  case 'f': return '\f';
  case 'v': return '\v';
  case 'a': return '\a';
  case 'x': return hex_escape(r);
  default: break;
  }
  if (strchr("dDwWsSbBAzpPQECk", e)) return -2;
  if ((e >= '0' && e <= '9') || (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) return -1;
  return (unsigned char)e; /* escaped punctuation stands for itself */
}

/* One bracket expression item list: chars and ranges as UTF-8 text. */
typedef struct cls {
  fl_buf_t body;
  bool has_close, has_dash, has_caret, has_open;
} cls_t;

static void cls_char(cls_t *c, unsigned long cp) {
  if (cp == ']') c->has_close = true;
  else if (cp == '-') c->has_dash = true;
  else if (cp == '^') c->has_caret = true;
  else if (cp == '[') c->has_open = true;
  else put_utf8(&c->body, cp);
}

/* Reads one class member's code point (a literal or an escape). */
static flagos_status_t cls_atom(rx_t *r, cls_t *c, long *cp, bool *was_class) {
  *was_class = false;
  const unsigned char *u = (const unsigned char *)r->p;
  if (*u == '\\') {
    r->p++;
    int e = (unsigned char)*r->p++;
    if (!e) return unsupported(r, "a trailing backslash");
    long v = char_escape(r, e);
    if (v == -1) return unsupported(r, "an unknown escape inside brackets");
    if (v == -2) {
      if (e == 'd') fl_buf_puts(&c->body, DIGITS);
      else if (e == 'w') fl_buf_puts(&c->body, WORD);
      else if (e == 's') fl_buf_puts(&c->body, SPACE);
      else return unsupported(r, "a negated or Unicode class escape inside brackets");
      *was_class = true;
      return NULL;
    }
    *cp = v;
    return NULL;
  }
  /* A UTF-8 sequence is one member. */
  unsigned long v = *u;
  int more = v >= 0xF0 ? 3 : v >= 0xE0 ? 2 : v >= 0xC0 ? 1 : 0;
  if (more) v &= (0x3F >> more);
  r->p++;
  for (int i = 0; i < more && (*r->p & 0xC0) == 0x80; i++) v = v << 6 | (*r->p++ & 0x3F);
  *cp = (long)v;
  return NULL;
}

static flagos_status_t bracket(rx_t *r) {
  cls_t c;
  memset(&c, 0, sizeof c);
  r->p++; /* '[' */
  bool neg = *r->p == '^';
  if (neg) r->p++;
  flagos_status_t st = NULL;
  bool first = true;
  while (!st) {
    if (!*r->p) {
      st = unsupported(r, "an unterminated '['");
      break;
    }
    if (*r->p == ']' && !first) {
      r->p++;
      break;
    }
    first = false;
    if (r->p[0] == '[' && r->p[1] == ':') {
      const char *end = strstr(r->p + 2, ":]");
      if (!end) {
        st = unsupported(r, "an unterminated '[:'");
        break;
      }
      fl_buf_append(&c.body, r->p, (size_t)(end + 2 - r->p)); /* ASCII classes: the same in both syntaxes */
      r->p = end + 2;
      continue;
    }
    long lo, hi;
    bool cl;
    st = cls_atom(r, &c, &lo, &cl);
    if (st || cl) continue;
    if (r->p[0] == '-' && r->p[1] && r->p[1] != ']') {
      r->p++;
      st = cls_atom(r, &c, &hi, &cl);
      if (st) break;
      if (cl) {
        st = unsupported(r, "a range ending in a class");
        break;
      }
      if (hi < lo) {
        st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "RegexFullMatch: bad range in pattern \"%s\"", r->src);
        break;
      }
      if (strchr("]-^[", (int)lo) || strchr("]-^[", (int)hi)) {
        st = unsupported(r, "a range starting or ending at ']', '-', '^' or '['");
        break;
      }
      put_utf8(&c.body, (unsigned long)lo);
      fl_buf_putc(&c.body, '-');
      put_utf8(&c.body, (unsigned long)hi);
      continue;
    }
    cls_char(&c, (unsigned long)lo);
  }
  bool empty = !c.has_close && !c.body.len && !c.has_caret && !c.has_open && !c.has_dash;
  if (!st && empty) /* "[]" cannot be written in RE2 either: the ']' would be a member */
    st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "RegexFullMatch: empty character class in pattern \"%s\"", r->src);
  if (!st && !neg && c.has_caret && !c.has_close && !c.body.len && !c.has_open && !c.has_dash) {
    fl_buf_puts(&r->b, "\\^"); /* a class of only '^' is that character */
  } else if (!st) {
    /* POSIX placement: ']' first, '[' after the plain members (never before ':', '.' or '='),
     * '^' never first, '-' last, or first when '^' would otherwise lead. */
    bool caret_leads = c.has_caret && !c.has_close && !c.body.len && !c.has_open;
    fl_buf_putc(&r->b, '[');
    if (neg) fl_buf_putc(&r->b, '^');
    if (caret_leads && c.has_dash) fl_buf_putc(&r->b, '-');
    if (c.has_close) fl_buf_putc(&r->b, ']');
    if (c.body.len) fl_buf_append(&r->b, c.body.data, c.body.len);
    if (c.has_open) fl_buf_putc(&r->b, '[');
    if (c.has_caret) fl_buf_putc(&r->b, '^');
    if (c.has_dash && !caret_leads) fl_buf_putc(&r->b, '-');
    fl_buf_putc(&r->b, ']');
  }
  fl_buf_free(&c.body);
  return st;
}

/* A '{' starting a valid counted repetition ({n}, {n,}, {n,m}). */
static bool is_repeat(const char *p) {
  if (*p++ != '{' || !(*p >= '0' && *p <= '9')) return false;
  while (*p >= '0' && *p <= '9') p++;
  if (*p == ',') {
    p++;
    while (*p >= '0' && *p <= '9') p++;
  }
  return *p == '}';
}

static flagos_status_t translate(rx_t *r, bool *icase) {
  if (strncmp(r->p, "(?i)", 4) == 0) {
    *icase = true;
    r->p += 4;
  }
  bool after_quant = false;
  while (*r->p) {
    int ch = (unsigned char)*r->p;
    bool quant = false;
    if (ch == '\\') {
      r->p++;
      int e = (unsigned char)*r->p++;
      if (!e) return unsupported(r, "a trailing backslash");
      long v = char_escape(r, e);
      if (v == -1) return unsupported(r, "an unknown escape or a back-reference");
      if (v == -2) {
        switch (e) {
        case 'd': fl_buf_puts(&r->b, "[" DIGITS "]"); break;
        case 'D': fl_buf_puts(&r->b, "[^" DIGITS "]"); break;
        case 'w': fl_buf_puts(&r->b, "[" WORD "]"); break;
        case 'W': fl_buf_puts(&r->b, "[^" WORD "]"); break;
        case 's': fl_buf_puts(&r->b, "[" SPACE "]"); break;
        case 'S': fl_buf_puts(&r->b, "[^" SPACE "]"); break;
        case 'b': fl_buf_puts(&r->b, "\\b"); break;
        case 'B': fl_buf_puts(&r->b, "\\B"); break;
        case 'A': fl_buf_putc(&r->b, '^'); break;
        case 'z': fl_buf_putc(&r->b, '$'); break;
        default: return unsupported(r, "a Unicode class, \\Q...\\E, \\C or \\k escape");
        }
      } else {
        if (v < 0x80 && ere_special((int)v)) fl_buf_putc(&r->b, '\\');
        put_utf8(&r->b, (unsigned long)v);
      }
    } else if (ch == '[') {
      FL_TRY(bracket(r));
    } else if (ch == '(') {
      r->p++;
      if (*r->p == '?') {
        if (r->p[1] == ':') r->p += 2;
        else if (r->p[1] == 'P' && r->p[2] == '<') {
          const char *end = strchr(r->p, '>');
          if (!end) return unsupported(r, "an unterminated group name");
          r->p = end + 1;
        } else if (r->p[1] == '<' && r->p[2] != '=' && r->p[2] != '!') {
          const char *end = strchr(r->p, '>');
          if (!end) return unsupported(r, "an unterminated group name");
          r->p = end + 1;
        } else {
          return unsupported(r, "a flag group or look-around '(?'");
        }
      }
      fl_buf_putc(&r->b, '(');
    } else if (ch == '.') {
      r->p++;
      fl_buf_puts(&r->b, "[^\n]");
    } else if (ch == '*' || ch == '+' || ch == '?') {
      r->p++;
      if (ch == '?' && after_quant) continue; /* lazy: irrelevant to a full match */
      fl_buf_putc(&r->b, (char)ch);
      quant = true;
    } else if (ch == '{') {
      if (is_repeat(r->p)) {
        const char *end = strchr(r->p, '}');
        fl_buf_append(&r->b, r->p, (size_t)(end + 1 - r->p));
        r->p = end + 1;
        quant = true;
      } else {
        r->p++;
        fl_buf_puts(&r->b, "\\{");
      }
    } else if (ch == '}') {
      r->p++;
      fl_buf_puts(&r->b, "\\}");
    } else {
      r->p++;
      fl_buf_putc(&r->b, (char)ch);
    }
    after_quant = quant;
  }
  return NULL;
}

flagos_status_t ops_str_regex_to_posix(const char *re2, char **out, bool *icase) {
  rx_t r;
  memset(&r, 0, sizeof r);
  r.p = r.src = re2;
  *icase = false;
  *out = NULL;
  fl_buf_puts(&r.b, "^(");
  flagos_status_t st = translate(&r, icase);
  if (st) {
    fl_buf_free(&r.b);
    return st;
  }
  fl_buf_puts(&r.b, ")$");
  *out = fl_buf_take(&r.b);
  return NULL;
}

flagos_status_t ops_str_regex_compile(const char *pattern, ops_str_regex_t *r) {
  memset(r, 0, sizeof(*r));
  char *posix;
  bool icase;
  FL_TRY(ops_str_regex_to_posix(pattern, &posix, &icase));
  r->loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
  locale_t old = r->loc ? uselocale(r->loc) : (locale_t)0;
  int e = regcomp(&r->re, posix, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
  flagos_status_t st = NULL;
  if (e) {
    char msg[256];
    regerror(e, &r->re, msg, sizeof msg);
    st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "RegexFullMatch: pattern \"%s\" (as POSIX \"%s\") does not compile: %s",
                pattern, posix, msg);
  }
  if (r->loc) uselocale(old);
  free(posix);
  if (st) {
    if (r->loc) freelocale(r->loc);
    memset(r, 0, sizeof(*r));
    return st;
  }
  r->compiled = true;
  return NULL;
}

bool ops_str_regex_full_match(const ops_str_regex_t *r, const char *s) {
  locale_t old = r->loc ? uselocale(r->loc) : (locale_t)0;
  bool m = regexec(&r->re, s, 0, NULL, 0) == 0;
  if (r->loc) uselocale(old);
  return m;
}

void ops_str_regex_free(ops_str_regex_t *r) {
  if (r->compiled) regfree(&r->re);
  if (r->loc) freelocale(r->loc);
  memset(r, 0, sizeof(*r));
}
