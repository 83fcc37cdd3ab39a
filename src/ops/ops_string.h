/* String tensors. Kernel IR cannot hold strings, so every node that reads or
 * writes a string tensor runs in the runtime (src/runtime/host_strings.c), where
 * a string tensor is a host array of malloc'ed NUL-terminated `char *` on every
 * backend. This header gives the compiler and the runtime one answer to "does
 * this node touch strings, and can the runtime run it", plus the shape rules
 * that the families owning Equal, Cast, CastLike and LabelEncoder delegate to
 * when a string is involved. The string operators' own table is in string.c. */
#ifndef FLAGOS_OPS_STRING_H
#define FLAGOS_OPS_STRING_H

#include <locale.h>
#include <regex.h>

#include "ops/ops.h"

/* True when an input or output of n is a string tensor (or a sequence/optional of them). */
bool ops_str_node_has_strings(const fir_node_t *n);
/* True when the runtime executes n itself because of strings: the string
 * operators always, and Equal, Cast, CastLike and LabelEncoder when n touches a
 * string tensor. (Sequence operators on strings are host operators anyway; shape
 * operators such as Reshape or Gather refuse strings in their shape rules.) */
bool ops_str_runtime_runs(const fir_node_t *n);
/* True when an input of c is a string tensor. */
bool ops_str_any_input(const ops_ctx_t *c);

/* Shape rules for string inputs/outputs of operators that live in other families. */
flagos_status_t ops_str_infer_equal(ops_ctx_t *c);
flagos_status_t ops_str_infer_cast(ops_ctx_t *c, flagos_dtype_t to);
/* LabelEncoder maps strings when its input is a string tensor, when a keys/values/
 * classes attribute holds strings, or for opset 1 (classes_strings). */
bool ops_str_label_encoder_uses_strings(const ops_ctx_t *c);
flagos_status_t ops_str_infer_label_encoder(ops_ctx_t *c);

/* Dtypes a Cast to or from STRING supports (bool, the integers, float16,
 * bfloat16, float32, float64). */
bool ops_str_cast_supported(flagos_dtype_t dt);

/* Rewrites an RE2 pattern as a POSIX extended regular expression that accepts
 * the same whole strings (RegexFullMatch needs full matches only, so greedy and
 * lazy quantifiers are interchangeable). *out is malloc'ed; *icase is set for a
 * leading (?i). Syntax POSIX cannot express (Unicode classes \p, \Q...\E,
 * negated classes inside brackets, look-around...) is refused with an error
 * naming it. */
flagos_status_t ops_str_regex_to_posix(const char *re2, char **out, bool *icase);
/* A compiled RegexFullMatch pattern; it carries the UTF-8 locale it runs under. */
typedef struct ops_str_regex {
  regex_t re;
  locale_t loc;
  bool compiled;
} ops_str_regex_t;
flagos_status_t ops_str_regex_compile(const char *re2, ops_str_regex_t *r);
bool ops_str_regex_full_match(const ops_str_regex_t *r, const char *s);
void ops_str_regex_free(ops_str_regex_t *r);

#endif
