/* FusedElementwise (domain ai.flagos): a chain of pointwise nodes run as one
 * kernel. The elementwise fusion pass (src/passes/fuse.c) builds these nodes;
 * this header is what it needs from src/ops. */
#ifndef FLAGOS_OPS_FUSED_H
#define FLAGOS_OPS_FUSED_H

#include "ops/ops.h"

#define OPS_FUSED_DOMAIN "ai.flagos"
#define OPS_FUSED_OP "FusedElementwise"
#define OPS_FUSED_BODY "body"

/* True when node n (its values typed and static) can be a body node: its
 * operator's lowering goes through ops_ew_lower_map, so a trial lowering in
 * capture mode yields an expression and makes no kernel or temp. a holds the
 * trial's allocations. */
bool ops_fused_can_fuse(fl_arena_t *a, const fir_node_t *n);

#endif
