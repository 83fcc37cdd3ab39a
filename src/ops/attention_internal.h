/* Operators of the attention family defined outside attention.c (which holds
 * the family table). Private to src/ops/attention*.c. */
#ifndef FLAGOS_OPS_ATTENTION_INTERNAL_H
#define FLAGOS_OPS_ATTENTION_INTERNAL_H

#include "ops/ops.h"

/* attention_linear.c */
flagos_status_t ops_at_linear_infer(ops_ctx_t *c);
flagos_status_t ops_at_linear_lower(ops_ctx_t *c);

#endif
