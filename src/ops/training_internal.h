/* Members of the training family defined outside training.c (which holds the
 * table). Internal to src/ops. */
#ifndef FLAGOS_OPS_TRAINING_INTERNAL_H
#define FLAGOS_OPS_TRAINING_INTERNAL_H

#include "ops/ops.h"

/* Gradient (training_grad.c). */
flagos_status_t ops_tr_grad_infer(ops_ctx_t *c);
flagos_status_t ops_tr_grad_lower(ops_ctx_t *c);

#endif
