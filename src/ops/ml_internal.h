/* Helpers shared by the ai.onnx.ml family files (ml.c holds the table, ml_tree.c
 * the tree ensembles). Internal to src/ops. */
#ifndef FLAGOS_OPS_ML_INTERNAL_H
#define FLAGOS_OPS_ML_INTERNAL_H

#include "ops/ops.h"

/* Kernel IR has no constant arrays, so the operators whose parameters are long
 * attribute lists (label maps, tree nodes) copy them into a temporary buffer of
 * n entries (at least one) of dtype dt with a fill kernel of one store per
 * entry, and then index it. Returns the temp's index. Values come from `f`
 * (converted to dt) or, when f is NULL, from `i` (exact for int64). */
int ops_ml_table(ops_ctx_t *c, const char *suffix, flagos_dtype_t dt, int64_t n, const double *f, const int64_t *i);

/* Reads an attribute tensor (or a float/int list attribute) as doubles / int64s
 * into arena memory. *n = -1 when the attribute is absent. */
flagos_status_t ops_ml_attr_doubles(const ops_ctx_t *c, const char *name, int64_t *n, const double **out,
                                    flagos_dtype_t *dtype);
flagos_status_t ops_ml_attr_ints(const ops_ctx_t *c, const char *name, int64_t *n, const int64_t **out);

/* TreeEnsemble (ml_tree.c). */
flagos_status_t ops_ml_tree_infer(ops_ctx_t *c);
flagos_status_t ops_ml_tree_lower(ops_ctx_t *c);
double ops_ml_tree_flops(const ops_ctx_t *c);

#endif
