/* Shared by the runtime's string operators: host_strings.c (the string family,
 * Equal, shape-only operators, dispatch) and host_strings_num.c (Cast/CastLike
 * between strings and numbers, LabelEncoder). Internal to src/runtime. */
#ifndef FLAGOS_RUNTIME_HOST_STRINGS_H
#define FLAGOS_RUNTIME_HOST_STRINGS_H

#include "runtime/exec.h"

/* Input k of n, or NULL when omitted or absent. */
rt_val_t *rt_hs_in(rt_frame_t *f, const fir_node_t *n, int k);
/* Moves v into output k of n (v is left empty). */
void rt_hs_set_out(rt_exec_t *x, rt_frame_t *f, const fir_node_t *n, int k, rt_val_t *v);
/* Checks v is present and a tensor (of strings when strings is true). */
flagos_status_t rt_hs_need(const rt_val_t *v, bool strings, const char *what);
/* A malloc'ed host copy of a numeric tensor's elements (never NULL on success). */
flagos_status_t rt_hs_host_data(rt_exec_t *x, const rt_val_t *v, void **out);
/* Stores a number into element i of a host buffer of dtype dt (integers wrap to
 * the type's width; sub-byte types are one element per byte). */
void rt_hs_store_int(flagos_dtype_t dt, void *buf, int64_t i, int64_t v);
void rt_hs_store_float(flagos_dtype_t dt, void *buf, int64_t i, double v);

flagos_status_t rt_hs_cast(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn);
flagos_status_t rt_hs_label_encoder(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn);

#endif
