/* Graph passes over FlagIR. Each returns a status naming the node it failed on. */
#ifndef FLAGOS_PASSES_H
#define FLAGOS_PASSES_H

#include "ir/ir.h"

/* Turns Constant nodes into initializers. */
flagos_status_t pass_constants_to_initializers(fir_model_t *m);
/* Fixes symbolic input dims from a "name=1x3x224x224;other=..." spec ("N=4" also
 * binds every dim named N). Errors name the input or symbol that does not exist. */
flagos_status_t pass_apply_shapes(fir_model_t *m, const char *spec);
/* Infers every value's type with the operators' shape rules. Fails on unsupported
 * operators with op type, domain, opset and node name. */
flagos_status_t pass_infer_types(fir_model_t *m);
/* Replaces Shape and Size of statically shaped tensors by constants. */
flagos_status_t pass_fold_shapes(fir_model_t *m, bool *changed);
/* Removes nodes none of whose outputs is used by a node or a graph output. */
flagos_status_t pass_dce(fir_model_t *m);
/* Infers one node (used by passes that change a node and by tests). */
flagos_status_t pass_infer_node(fir_model_t *m, fir_node_t *n);
/* Infers the nodes of n's subgraphs (If branches, Loop/Scan bodies), whose outer
 * values are already typed; called by pass_infer_node before n itself. */
flagos_status_t pass_infer_subgraphs(fir_model_t *m, fir_node_t *n);
/* The standard pipeline: constants, shapes, inference, folding, DCE. */
flagos_status_t pass_run_default(fir_model_t *m, const char *shape_spec);

#endif
