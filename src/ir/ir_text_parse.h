/* Private to the FlagIR parser: ir_text_lex.c reads tokens and literals (strings,
 * numbers, types, tensors); ir_text_parse.c reads the grammar above them. */
#ifndef FLAGOS_IR_TEXT_PARSE_H
#define FLAGOS_IR_TEXT_PARSE_H

#include "ir/ir_text_internal.h"

/* A value reference whose definition may come later in the text (graphs need
 * not be sorted, and subgraphs see outer values), resolved after the whole
 * model is read. */
typedef struct fir_pending {
  fir_graph_t *scope;
  const char *name;
  fir_value_t **slot;
  size_t pos;
  fir_node_t *node;       /* user of the value, or NULL for a graph output */
  int index;              /* input or output position */
  fir_type_t *declared;   /* graph outputs: the type written there, if any */
} fir_pending_t;

typedef struct fir_parser {
  const char *s;
  size_t n, pos;
  fir_model_t *m;
  flagos_status_t err; /* first error only */
  int depth;
  fir_nmap_t defs;   /* (graph, name) -> fir_value_t */
  fir_nmap_t inputs; /* (graph, name) -> fir_value_t, graph inputs only */
  fir_pending_t *pend;
  size_t n_pend, cap_pend;
} fir_parser_t;

/* A number as written; converted once the wanted type is known. */
typedef struct fir_num {
  size_t pos, len;
  bool is_float;
} fir_num_t;

/* All return false after recording an error in p->err. */
bool fir_p_error(fir_parser_t *p, size_t pos, const char *fmt, ...) FLAGOS_PRINTF(3, 4);
/* "expected <what>, found <token>" at the current position. */
bool fir_p_expected(fir_parser_t *p, const char *what);
/* Skips blanks and `#` comments; returns the next byte or -1 at the end. */
int fir_p_peek(fir_parser_t *p);
bool fir_p_accept(fir_parser_t *p, char c);
bool fir_p_expect(fir_parser_t *p, char c, const char *context);
/* True when the next token is the word `w` (not merely a prefix of a word). */
bool fir_p_peek_word(fir_parser_t *p, const char *w);
bool fir_p_accept_word(fir_parser_t *p, const char *w);
bool fir_p_word(fir_parser_t *p, const char **out, const char *what);
bool fir_p_string(fir_parser_t *p, const char **out, size_t *len, const char *what);
bool fir_p_word_or_string(fir_parser_t *p, const char **out, const char *what);
/* `%name` or `%"any name"`. */
bool fir_p_value_name(fir_parser_t *p, const char **out, const char *what);
bool fir_p_int64(fir_parser_t *p, int64_t *out, const char *what);
bool fir_p_number(fir_parser_t *p, fir_num_t *out, const char *what);
bool fir_p_num_f32(fir_parser_t *p, const fir_num_t *n, float *out);
bool fir_p_num_f64(fir_parser_t *p, const fir_num_t *n, double *out);
bool fir_p_num_i64(fir_parser_t *p, const fir_num_t *n, int64_t *out);
bool fir_p_type(fir_parser_t *p, fir_type_t **out);
/* `tensor<["name":] dtype[dims]> payload` */
bool fir_p_tensor(fir_parser_t *p, fir_tensor_t **out);
/* Payload for a tensor whose dtype, rank, dims and numel are already set. */
bool fir_p_tensor_payload(fir_parser_t *p, fir_tensor_t *t);
/* Tensor with the dtype and dims of a static tensor type (short initializer form). */
fir_tensor_t *fir_p_tensor_from_type(fir_parser_t *p, const fir_type_t *ty);
bool fir_p_enter(fir_parser_t *p);
void fir_p_leave(fir_parser_t *p);
/* Arena array growth; false (with an error) past INT_MAX/2 entries. */
bool fir_p_grow(fir_parser_t *p, void **arr, int n, int *cap, size_t elem);

#endif
