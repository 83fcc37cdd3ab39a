/* Spatial geometry shared by the conv and pool families: kernel, strides,
 * dilations, pads and auto_pad, and the output size they give. Private to
 * src/ops/conv*.c and src/ops/pool*.c. */
#ifndef FLAGOS_OPS_CONV_COMMON_H
#define FLAGOS_OPS_CONV_COMMON_H

#include "ops/ops.h"

typedef enum ops_sp_pad { OPS_SP_NOTSET, OPS_SP_SAME_UPPER, OPS_SP_SAME_LOWER, OPS_SP_VALID } ops_sp_pad_t;

typedef struct ops_sp {
  int nd; /* spatial dims */
  int64_t k[OPS_MAX_RANK], s[OPS_MAX_RANK], d[OPS_MAX_RANK];
  int64_t pb[OPS_MAX_RANK], pe[OPS_MAX_RANK]; /* pads at the start / end of each dim */
  ops_sp_pad_t auto_pad;
  bool ceil_mode; /* pools only */
} ops_sp_t;

/* Reads kernel_shape (falling back to `kernel`, whose entries may be -1 for
 * unknown, when the attribute is absent and kernel is non-NULL), strides, dilations, pads, auto_pad and (for pools)
 * ceil_mode, checking list lengths against nd. */
flagos_status_t ops_sp_read(const ops_ctx_t *c, int nd, const int64_t *kernel, bool pool, ops_sp_t *g);

/* Output size along spatial dim i for input size `in` (-1 when unknown: the
 * result is then -1). Sets g->pb[i]/pe[i] when auto_pad decides them. */
int64_t ops_sp_out(ops_sp_t *g, int i, int64_t in);

/* Records pb[0..nd) as params [first, first+nd). */
void ops_sp_params(ops_ctx_t *c, const ops_sp_t *g, int first);

/* Number of an integer attribute list with a default for absent entries. */
flagos_status_t ops_sp_ints(const ops_ctx_t *c, const char *name, int n, int64_t dflt, int64_t *out);

/* Lowest value of a dtype (-inf for floats), for max reductions over padding. */
kir_expr_t *ops_sp_lowest(fl_arena_t *a, flagos_dtype_t dt);

/* AND of 0 <= pos[i] < dim[i] over n positions. */
kir_expr_t *ops_sp_inside(fl_arena_t *a, int n, kir_expr_t *const *pos, kir_expr_t *const *dim);

#endif
