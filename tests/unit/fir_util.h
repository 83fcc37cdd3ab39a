/* Small helpers of the unit tests that build models from FlagIR text (the
 * fusion tests). Include after check.h: a text that does not parse is a
 * failed check. */
#ifndef FLAGOS_TESTS_FIR_UTIL_H
#define FLAGOS_TESTS_FIR_UTIL_H
#include <string.h>

#include "ir/ir.h"
#include "passes/passes.h"

/* The model of FlagIR text, or NULL (a failed check). */
static inline fir_model_t *parse(const char *text) {
  fir_model_t *m = NULL;
  CHECK_OK(fir_parse(text, strlen(text), &m));
  return m;
}

/* The model of FlagIR text after the compiler's passes (pass_run_default), or
 * NULL (a failed check). */
static inline fir_model_t *parse_passed(const char *text) {
  fir_model_t *m = parse(text);
  if (m) CHECK_OK(pass_run_default(m, NULL));
  return m;
}

/* The first node of m's main graph whose operator is op, or NULL. */
static inline const fir_node_t *find_op(const fir_model_t *m, const char *op) {
  for (int i = 0; i < m->graph->n_nodes; i++)
    if (strcmp(m->graph->nodes[i]->op_type, op) == 0) return m->graph->nodes[i];
  return NULL;
}

/* Nodes of m's main graph whose operator is op. */
static inline int count_op(const fir_model_t *m, const char *op) {
  int n = 0;
  for (int i = 0; i < m->graph->n_nodes; i++) n += strcmp(m->graph->nodes[i]->op_type, op) == 0;
  return n;
}

#endif
