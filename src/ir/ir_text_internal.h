/* Internals shared by the FlagIR printer (ir_text_print.c), parser
 * (ir_text_parse*.c) and verifier (ir_verify.c). Not for use outside src/ir. */
#ifndef FLAGOS_IR_TEXT_INTERNAL_H
#define FLAGOS_IR_TEXT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"

/* Version written on the first line (`flagir 1`); the parser refuses others. */
#define FIR_TEXT_VERSION 1
/* Deepest nesting (graphs in attributes, seq<...> types, lists) the parser
 * accepts, so hostile input cannot exhaust the stack. */
#define FIR_TEXT_MAX_DEPTH 64
/* Most `opset` lines the parser accepts (real models have a handful). */
#define FIR_TEXT_MAX_OPSETS 1024

/* ---- name table: (scope pointer, NUL-terminated name) -> pointer ----
 * Open addressing on the heap (not the model arena), so the verifier leaves no
 * garbage in the model. Keys are borrowed: they must outlive the table. */
typedef struct fir_nmap_entry {
  const void *scope;
  const char *name;
  void *val;
  uint64_t hash;
} fir_nmap_entry_t;

typedef struct fir_nmap {
  fir_nmap_entry_t *e;
  size_t cap, n;
} fir_nmap_t;

void *fir_nmap_get(const fir_nmap_t *t, const void *scope, const char *name);
/* Inserts or replaces. */
void fir_nmap_put(fir_nmap_t *t, const void *scope, const char *name, void *val);
void fir_nmap_free(fir_nmap_t *t);

/* ---- lexical classes shared by printer and parser ---- */
/* Bare value names after '%': [A-Za-z0-9_./-] and "::" (a single ':' starts a
 * type, so `%onnx::Add_1:f32[3]` reads as name onnx::Add_1). Returns how many
 * bytes of s[0..n) form the longest bare name. */
size_t fir_text_value_bare_len(const char *s, size_t n);
bool fir_text_value_name_bare(const char *s);
/* A word (op type, domain, attribute name, symbolic dim) may be printed bare:
 * [A-Za-z_][A-Za-z0-9_.]* and not a reserved word. */
bool fir_text_word_bare(const char *s);
bool fir_text_is_word_start(int c);
bool fir_text_is_word_char(int c);
bool fir_text_is_value_char(int c);

/* ---- printing helpers ---- */
/* "..." with \\ \" \n \t \r and \xHH for every other byte outside 0x20..0x7e. */
void fir_text_put_string(fl_buf_t *b, const char *s, size_t n);
/* Exact spellings: %.9g / %.17g with ".0" added when the result looks like an
 * integer, inf, -inf, nan (the canonical quiet NaN) or nan:0x<bits>. */
void fir_text_put_f32(fl_buf_t *b, float f);
void fir_text_put_f64(fl_buf_t *b, double d);
/* "node 'name' (Op)" or "node #3 (Op)" when unnamed, plus the graph name. */
void fir_text_describe_node(fl_buf_t *b, const fir_node_t *n);

#endif
