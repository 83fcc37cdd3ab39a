/* The compiler driver: ONNX -> FlagIR -> passes -> kernel IR -> code per target ->
 * one bundle. Manifest schema: docs/manifest.md. */
#ifndef FLAGOS_COMPILER_H
#define FLAGOS_COMPILER_H

#include "flagos/flagos.h"
#include "ir/ir.h"

#define FLAGOS_MANIFEST_FORMAT 1

#include "kernel/kir.h"

/* A code target (targets.c). build emits the kernels' source into src (may stay
 * empty) and returns the code blob (malloc'ed) for the backend's module_load. */
typedef struct compiler_target {
  const char *name;        /* "cpu"; also the backend plugin's name */
  const char *code_format; /* what the plugin's module_load takes: "elf-so" ... */
  flagos_status_t (*build)(kir_kernel_t *const *k, int n, const flagos_compile_options_t *o, fl_buf_t *src, void **code,
                           size_t *len);
} compiler_target_t;

const compiler_target_t *compiler_find_target(const char *name);
/* "cpu, ..." for messages. */
const char *compiler_target_names(void);

/* Compiles an imported model into a bundle image in memory (malloc'ed). */
flagos_status_t compiler_build_bundle(fir_model_t *m, const flagos_compile_options_t *opts, void **image, size_t *size);

/* Placement (docs/sla.md): with an SLA, the compiler plans which device of the
 * targets runs each kernel group and records the plan in section "plan". */
typedef struct compiler_plan_options {
  const char *sla_path;     /* NULL: no plan */
  const char *profile_path; /* device profiles; NULL: the default path, then defaults */
  fl_buf_t *explain;        /* non-NULL: receives the --explain text */
  const struct part_tune *tune; /* measured times (compile --tune); NULL: the model alone */
} compiler_plan_options_t;
flagos_status_t compiler_build_bundle_ex(fir_model_t *m, const flagos_compile_options_t *opts,
                                         const compiler_plan_options_t *plan, void **image, size_t *size);
/* plan.c: the plan of the main graph whose manifest node entries are `nodes`. */
struct cJSON;
flagos_status_t compiler_plan(const fir_graph_t *g, const struct cJSON *nodes, const char *const *targets, int n_targets,
                              const compiler_plan_options_t *po, char **plan_json, char **sla_json);
/* plan.c, for compile --tune: the image of a bundle built without a plan,
 * rewritten with po's plan made on its compiled main graph g (the model
 * compiler_build_bundle_ex left behind), or, without an SLA, with the measured
 * times alone in section "tune". *out is malloc'ed. */
flagos_status_t compiler_plan_image(const fir_graph_t *g, const void *image, size_t size, const compiler_plan_options_t *po,
                                    void **out, size_t *out_size);
/* Parses "cpu", "cpu,cuda" into a list; error names an unknown target. */
flagos_status_t compiler_parse_targets(const char *spec, const char **targets, int max, int *n);

#endif
