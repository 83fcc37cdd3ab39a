/* FlagOS public API: compile models into bundles, open bundles, run them.
 * Only this header, status.h and backend.h are public. */
#ifndef FLAGOS_FLAGOS_H
#define FLAGOS_FLAGOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flagos/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FLAGOS_VERSION_STRING "0.1.0"
#define FLAGOS_MAX_RANK 16

typedef struct flagos_bundle_s flagos_bundle_t;
typedef struct flagos_session_s flagos_session_t;

/* ---- compiling ---- */
typedef struct flagos_compile_options {
  const char *targets;      /* comma-separated: "cpu" (default when NULL) */
  /* Fixes symbolic input dims: "x=1x3x224x224;y=..." (NULL: none). */
  const char *shapes;
  int opt_level;            /* C compiler optimisation level, default 2 */
  const char *cache_dir;    /* kernel cache; NULL: $FLAGOS_CACHE_DIR or ~/.cache/flagos */
  bool verbose;
} flagos_compile_options_t;

/* Compiles an ONNX model file into a bundle written to out_path. */
FLAGOS_API flagos_status_t flagos_compile_file(const char *onnx_path, const char *out_path,
                                               const flagos_compile_options_t *opts);
/* Compiles an ONNX model into a bundle held in memory (what `flagos run model.onnx` does). */
FLAGOS_API flagos_status_t flagos_compile_to_bundle(const char *onnx_path, const flagos_compile_options_t *opts,
                                                    flagos_bundle_t **out);

/* ---- bundles ---- */
FLAGOS_API flagos_status_t flagos_bundle_open(const char *path, flagos_bundle_t **out);
FLAGOS_API void flagos_bundle_close(flagos_bundle_t *b);

typedef enum flagos_value_kind {
  FLAGOS_VALUE_TENSOR = 0,
  FLAGOS_VALUE_SEQUENCE = 1,
  FLAGOS_VALUE_OPTIONAL = 2
} flagos_value_kind_t;

typedef struct flagos_io_info {
  const char *name;
  flagos_value_kind_t kind;
  flagos_dtype_t dtype;     /* of the tensor (or of the elements) */
  int rank;                 /* -1 unknown */
  int64_t dims[FLAGOS_MAX_RANK]; /* -1 for a dim not fixed at compile time */
  const char *dim_names[FLAGOS_MAX_RANK]; /* symbolic dim names, or NULL */
} flagos_io_info_t;

FLAGOS_API int flagos_bundle_num_inputs(const flagos_bundle_t *b);
FLAGOS_API int flagos_bundle_num_outputs(const flagos_bundle_t *b);
FLAGOS_API flagos_status_t flagos_bundle_input(const flagos_bundle_t *b, int i, flagos_io_info_t *out);
FLAGOS_API flagos_status_t flagos_bundle_output(const flagos_bundle_t *b, int i, flagos_io_info_t *out);

/* ---- values passed in and out of a run ---- */
/* A tensor in host memory. For FLAGOS_STRING, data is `char **`. Sub-byte types
 * are one element per byte. */
typedef struct flagos_tensor {
  flagos_dtype_t dtype;
  int rank;
  int64_t dims[FLAGOS_MAX_RANK];
  void *data;
  size_t nbytes;
} flagos_tensor_t;

/* A value: a tensor, a sequence of tensors, or an optional (present or not). */
typedef struct flagos_value {
  flagos_value_kind_t kind;
  flagos_tensor_t tensor;          /* TENSOR, and OPTIONAL holding a tensor */
  int n_items;                     /* SEQUENCE */
  struct flagos_value *items;      /* SEQUENCE: n_items values; OPTIONAL holding a sequence: 1 */
  bool present;                    /* OPTIONAL */
  flagos_dtype_t elem_dtype;       /* SEQUENCE/OPTIONAL: element dtype, also when empty */
} flagos_value_t;

/* Frees what a value returned by FlagOS owns (its data and items), not the struct. */
FLAGOS_API void flagos_value_clear(flagos_value_t *v);
FLAGOS_API int64_t flagos_tensor_numel(const flagos_tensor_t *t);

/* ---- sessions ---- */
typedef struct flagos_session_options {
  /* Where the session runs (docs/sla.md "Running a plan"):
   * - a device, "cpu", "cpu:0", "cuda:0", "opencl:NVIDIA": that device alone,
   *   whatever the bundle's plan says;
   * - NULL or "": the bundle's plan when it has one (each kernel group on the
   *   device the plan names, values copied between devices where needed),
   *   otherwise "cpu" (one device, as before plans existed);
   * - "plan": a session placed by plans, also for a bundle without one (it then
   *   starts with everything on the bundle's first target, cpu where it has
   *   cpu kernels); flagos_session_set_sla() re-plans it. */
  const char *device;
  int num_threads;      /* 0: the backend's default */
} flagos_session_options_t;

FLAGOS_API flagos_status_t flagos_session_create(flagos_bundle_t *b, const flagos_session_options_t *opts,
                                                 flagos_session_t **out);
FLAGOS_API void flagos_session_destroy(flagos_session_t *s);
/* Runs the model. inputs are in the bundle's input order (n_inputs of them; an
 * optional graph input may be given as an OPTIONAL value that is not present).
 * Input memory stays the caller's and is only read.
 *
 * outputs holds n_outputs values, each either zeroed or a caller-owned buffer:
 * - zeroed (data NULL): FlagOS allocates the output, which the caller releases
 *   with flagos_value_clear();
 * - kind FLAGOS_VALUE_TENSOR with data set: FlagOS writes the tensor there. nbytes
 *   is the buffer's capacity, dtype may be FLAGOS_UNDEFINED or must match; on
 *   return dtype, rank and dims describe the output. The buffer stays the
 *   caller's (do not pass it to flagos_value_clear). A buffer too small is an
 *   error naming the output and the bytes it needs.
 * On error, outputs FlagOS allocated are released again. */
FLAGOS_API flagos_status_t flagos_session_run(flagos_session_t *s, const flagos_value_t *inputs, int n_inputs,
                                              flagos_value_t *outputs, int n_outputs);
/* Milliseconds the last run took (wall time, inputs uploaded to outputs downloaded). */
FLAGOS_API double flagos_session_last_run_ms(const flagos_session_t *s);

/* ---- placement at run time (issue 6; docs/sla.md "Running a plan") ---- */
/* Re-plans a session placed by plans (created with device NULL on a bundle with
 * a plan, or with device "plan") for a new SLA (the JSON text of an SLA file,
 * docs/sla.md): the partition solver runs again on the bundle's graph with the
 * saved device profiles ($FLAGOS_CACHE_DIR/profiles.json, else the documented
 * defaults), the candidates being device 0 of each target the bundle carries
 * kernels for that this machine has. The new plan replaces the old one between
 * runs: runs already started finish on the old plan, runs started after the
 * call returns use the new one; devices the new plan adds are opened (kernels
 * loaded) inside this call, weights are placed on them by their first run.
 * Safe to call while other threads run the session; calls are serialised.
 * Errors (the old plan stays): the SLA's parse error naming the field, an SLA
 * that cannot be met (FLAGOS_ERR_INVALID_ARGUMENT, each violated limit and the
 * best achievable value), a device that cannot be opened, and
 * FLAGOS_ERR_UNSUPPORTED for a session created for one device. */
FLAGOS_API flagos_status_t flagos_session_set_sla(flagos_session_t *s, const char *sla_json);

/* ---- profiling (added for issue 7; docs/profiling.md, docs/eaf.md) ---- */
/* Starts (enable true) or stops recording a profile of this session's runs:
 * kernel and copy events timed by the device's own events, host overhead spans,
 * device memory in use, and each node's useful FLOPs and bytes. Off by default;
 * a session that never enables it pays nothing. Stopping keeps what was
 * recorded until flagos_session_profile_reset() or the session's destruction. */
FLAGOS_API flagos_status_t flagos_session_enable_profiling(flagos_session_t *s, bool enable);
/* Forgets what was recorded (recording goes on if enabled). */
FLAGOS_API void flagos_session_profile_reset(flagos_session_t *s);

typedef struct flagos_profile_summary {
  char device[64];          /* "cpu:0" */
  char device_name[128];    /* the plugin's device name */
  int runs;                 /* completed runs recorded */
  double wall_ms;           /* their wall time (flagos_session_last_run_ms), summed */
  double kernel_ms;         /* device time inside kernel events, summed */
  double copy_ms;           /* device time inside copies, summed */
  double host_ms;           /* host time preparing nodes (shape rules, allocation, symbols), summed */
  double flops;             /* useful FLOPs executed, summed over the runs */
  double kernel_bytes;      /* bytes the nodes read and wrote (inputs + outputs), summed */
  double copy_bytes;        /* bytes copied, all directions, summed */
  double copy_bytes_h2d, copy_bytes_d2h, copy_bytes_d2d;
  uint64_t peak_mem_bytes;  /* most device memory the runtime held at once during the runs */
  int64_t kernel_events, copy_events;
} flagos_profile_summary_t;
FLAGOS_API flagos_status_t flagos_session_profile_summary(const flagos_session_t *s, flagos_profile_summary_t *out);

/* Per kernel group (a node today; a fused group when fusion lands), summed over the runs. */
typedef struct flagos_profile_node {
  const char *group;        /* kernel group name (valid while the session lives) */
  const char *op;           /* operator of the (first) ONNX node it covers */
  const char *onnx_name;    /* name of the (first) ONNX node it covers */
  int64_t calls;
  double device_ms;
  double flops;
  double bytes;
} flagos_profile_node_t;
/* Fills up to max entries, slowest first; returns how many groups there are. */
FLAGOS_API int flagos_session_profile_nodes(const flagos_session_t *s, flagos_profile_node_t *out, int max);

/* Writes the recorded profiles of n sessions as one Chrome trace-event JSON file
 * (chrome://tracing, Perfetto): one process per device and one thread per
 * stream, "X" events for kernels and copies, "C" counters for device memory, and
 * a host process with the runtime's own spans. */
FLAGOS_API flagos_status_t flagos_profile_write_trace(const char *path, flagos_session_t *const *sessions, int n);

/* Power of the session's device, for EAF per watt. */
typedef struct flagos_device_power {
  bool measured;            /* energy_j is a live cumulative counter (RAPL, NVML) */
  double energy_j;          /* cumulative energy, when measured */
  double energy_range_j;    /* where the counter wraps (0: never) */
  double declared_watts;    /* the plugin's declared power under load; 0 unknown */
  char energy_source[32];   /* "rapl", "nvml" */
  char declared_source[64]; /* where declared_watts comes from */
} flagos_device_power_t;
FLAGOS_API flagos_status_t flagos_session_power(const flagos_session_t *s, flagos_device_power_t *out);

#ifdef __cplusplus
}
#endif
#endif
