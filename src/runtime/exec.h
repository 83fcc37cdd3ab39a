/* The executor's internals, shared by the kernel path (exec.c) and the host
 * operators (host_ops.c). */
#ifndef FLAGOS_EXEC_H
#define FLAGOS_EXEC_H

#include "runtime/profile.h"
#include "runtime/runtime.h"

/* A runtime value: a tensor in device memory, a sequence of tensors, or an
 * optional holding a tensor or a sequence (items[0]) or nothing. A string tensor
 * is never in device memory: ptr is a host array of `char *` (each malloc'ed and
 * NUL-terminated when owned; nbytes counts the pointers' bytes). */
typedef struct rt_val {
  bool present;
  flagos_value_kind_t kind;
  flagos_dtype_t dtype;         /* tensor dtype; element dtype for sequences/optionals */
  int rank;
  int64_t dims[OPS_MAX_RANK];
  flagos_devptr_t ptr;
  size_t nbytes;
  bool owned;                   /* tensor: ptr was allocated by this run */
  int n_items;                  /* sequence items; optional: 1 when it holds a value */
  struct rt_val *items;         /* malloc'ed array, always owned by the value */
  int uses_left;
  bool pinned;                  /* never freed early: graph outputs, inputs, weights */
  const void *host;             /* a host copy of the data (weights: the bundle's bytes), or NULL */
} rt_val_t;

#define RT_MAX_SLOTS 8

typedef struct rt_frame {
  const rt_plan_t *plan;
  rt_val_t *vals; /* by value id of plan->graph */
  struct rt_frame *parent;
  /* Multi-device runs only (src/runtime/multi.c; NULL otherwise): the device
   * slot each value of vals lives on (-1: a weight, which lives in the mirrors
   * only), the copies of values on the other slots (by slot, then value id;
   * NULL for slots the plan does not use), and the slot running now. A lookup
   * of a value whose home is not `cur` returns its mirror on `cur`. */
  int *home;
  rt_val_t *mirror[RT_MAX_SLOTS];
  int cur;
} rt_frame_t;

typedef struct rt_exec {
  const flagos_backend_t *api;
  void *bst;
  int device;
  bool host_visible;
  flagos_bkernel_t *kernels; /* by kernel id */
  bool trace;
  /* Non-NULL while the session profiles (src/runtime/profile.h); api and bst are
   * then the profiler's forwarding table and the profiler itself. */
  struct rt_prof *prof;
  /* Launches and library calls go to this stream (NULL: the device's default
   * stream, where copies go too); a stream only while a graph is captured. */
  flagos_bstream_t stream;
  /* The session's device copies of the weights (NULL: uploaded per frame). */
  struct rt_weights *weights;
  /* Non-NULL while a run's buffers are kept for a captured graph: device
   * tensors and temps come from and go back to this set (src/runtime/graph.c). */
  struct rt_hold *hold;
  /* Multi-device sessions (tests, reports; updated atomically): kernel nodes
   * this slot ran, values copied onto it from other slots, and of those the
   * copies started before the node just ahead of the first reader ran. */
  int64_t nodes_run, copies_in, copies_ahead;
} rt_exec_t;

/* Device memory for the executor: from x->hold while it is set, else the plugin. */
flagos_status_t rt_dev_alloc(rt_exec_t *x, size_t bytes, flagos_devptr_t *out);
void rt_dev_free(rt_exec_t *x, flagos_devptr_t p);

rt_val_t *rt_lookup(rt_frame_t *f, const fir_value_t *v);
/* Runs one kernel node (its outputs go to f->vals; node index ni is for traces). */
flagos_status_t rt_exec_kernels(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn, int ni);
flagos_status_t rt_frame_init(rt_exec_t *x, const rt_plan_t *p, rt_frame_t *parent, rt_frame_t *f);
void rt_frame_free(rt_exec_t *x, rt_frame_t *f);
flagos_status_t rt_exec_graph(rt_exec_t *x, rt_frame_t *f);

int64_t rt_numel(int rank, const int64_t *dims);
void rt_val_release(rt_exec_t *x, rt_val_t *v);
flagos_status_t rt_val_alloc_tensor(rt_exec_t *x, rt_val_t *v, flagos_dtype_t dt, int rank, const int64_t *dims);
/* Deep copy into dst (dst must be released already). */
flagos_status_t rt_val_copy(rt_exec_t *x, const rt_val_t *src, rt_val_t *dst);
/* Moves src into dst when src owns all its memory (src is left empty), copies
 * otherwise. Only for values nothing else will read (a finished frame's outputs). */
flagos_status_t rt_val_take(rt_exec_t *x, rt_val_t *src, rt_val_t *dst);
/* Reads `bytes` from the start of a tensor into host memory. */
flagos_status_t rt_read(rt_exec_t *x, const rt_val_t *v, void *dst, size_t bytes);
/* Reads element 0 of an integer or bool tensor. */
flagos_status_t rt_read_int(rt_exec_t *x, const rt_val_t *v, int64_t *out);
/* A tensor made from host data (copied to the device; strings are duplicated). */
flagos_status_t rt_val_from_host(rt_exec_t *x, rt_val_t *v, flagos_dtype_t dt, int rank, const int64_t *dims,
                                 const void *data);
/* Copies `count` chunks of `chunk` bytes: dst[dst_off + i*dst_stride] <- src[src_off + i*src_stride]. For
 * dt == FLAGOS_STRING the bytes are those of the pointer arrays and the strings are duplicated. */
flagos_status_t rt_copy_chunks(rt_exec_t *x, flagos_dtype_t dt, flagos_devptr_t dst, size_t dst_off, size_t dst_stride,
                               flagos_devptr_t src, size_t src_off, size_t src_stride, size_t chunk, int64_t count);
/* Element i of a string tensor ("" for an entry not yet filled), and setting it to a copy of s[0..len). */
const char *rt_str_get(const rt_val_t *v, int64_t i);
flagos_status_t rt_str_set(rt_val_t *v, int64_t i, const char *s, size_t len);

/* ---- weights placed once per session (src/runtime/weights.c) ---- */
typedef struct rt_weights rt_weights_t;
/* `api`/`bst` are the plugin's own table and state (never the profiler's). */
flagos_status_t rt_weights_create(const flagos_backend_t *api, void *bst, int device, rt_weights_t **out);
void rt_weights_destroy(rt_weights_t *w);
/* The device copies of plan p's initializers, by value id (NULL where a value is
 * no initializer or a string tensor, or was not asked for), uploaded on the first
 * call that needs them. need (by value id; NULL: every initializer) says which:
 * a multi-device session places on each device the weights of its nodes only. */
flagos_status_t rt_weights_get(rt_weights_t *w, const rt_plan_t *p, const bool *need, flagos_devptr_t const **out);
/* How many initializers were uploaded (tests). */
int64_t rt_weights_uploads(const rt_weights_t *w);

/* ---- captured graphs (src/runtime/graph.c) ---- */
typedef struct rt_graphs rt_graphs_t;
/* NULL in *out when the session cannot use graphs (host-visible device, plugin
 * without capture, FLAGOS_GRAPHS=0, a plan with host steps or data-dependent shapes). */
flagos_status_t rt_graphs_create(const rt_exec_t *x, const rt_plan_t *main, rt_graphs_t **out);
void rt_graphs_destroy(rt_graphs_t *gs);
/* Runs the main plan through a captured graph when it can: *done false means it
 * did nothing and the caller runs the plan plainly. */
flagos_status_t rt_graphs_run(rt_graphs_t *gs, const rt_exec_t *x, const flagos_value_t *inputs, int n_inputs,
                              flagos_value_t *outputs, int n_outputs, bool *done);
/* Counters for tests and reports. */
typedef struct rt_graph_stats {
  int64_t captures, replays, fallbacks;
} rt_graph_stats_t;
void rt_graphs_stats(const rt_graphs_t *gs, rt_graph_stats_t *out);

/* ---- session.c, shared with graph.c ---- */
flagos_status_t rt_import_value(rt_exec_t *x, const char *name, const fir_type_t *t, const flagos_value_t *in,
                                rt_val_t *rv);
/* Writes the graph's outputs from `vals` (by output index) into the caller's values
 * (allocating those left zeroed); on error releases what it allocated. */
flagos_status_t rt_export_outputs(rt_exec_t *x, rt_val_t *const *vals, flagos_value_t *outputs, int n_outputs,
                                  const fir_graph_t *g);
/* The same with each output read through its own device's executor xs[i]. */
flagos_status_t rt_export_outputs_on(rt_exec_t *const *xs, rt_val_t *const *vals, flagos_value_t *outputs, int n_outputs,
                                     const fir_graph_t *g);

/* ---- multi-device execution and hot-swapped plans (src/runtime/multi.c) ---- */
/* A placement of the main plan's nodes on the session's device slots,
 * reference-counted: a run holds a reference from its start to its end, so a
 * plan swapped out meanwhile is freed by the last run that uses it. */
typedef struct rt_mplan {
  int refs;            /* atomic */
  int n_nodes;
  int *node_slot;      /* per node of the main plan */
  int *input_slot;     /* per graph input: the slot it is uploaded to (its first consumer's) */
  int *uses_on[RT_MAX_SLOTS]; /* per slot (NULL: unused), by value id: consumers of the value on the slot */
  int *first_on[RT_MAX_SLOTS]; /* per slot, by value id: the first node of the slot that reads it (n_nodes: none) */
  bool *weights_on[RT_MAX_SLOTS]; /* per slot, by value id: an initializer the slot's nodes read */
  int default_slot;    /* host operators, graph outputs that are weights */
  int single_slot;     /* >= 0: every node on this slot (the run takes the single-device path) */
  int n_used;          /* slots running at least one node */
  char *json;          /* the plan (docs/sla.md "The plan in the bundle"), for flagos_session_plan */
} rt_mplan_t;
void rt_mplan_free(rt_mplan_t *mp);
/* Runs the main plan on several devices: xs[slot] is each slot's executor. */
flagos_status_t rt_multi_run(rt_exec_t *const *xs, const rt_mplan_t *mp, const flagos_bundle_t *b,
                             const flagos_value_t *inputs, int n_inputs, flagos_value_t *outputs, int n_outputs);

/* A planned session's device slot i (false past the last): its id, kernel
 * nodes it ran, values copied onto it from other devices (copies_ahead: those
 * that ran while other nodes were issued), weights uploaded. */
typedef struct rt_slot_stats {
  char id[96];
  int64_t nodes_run, copies_in, copies_ahead, weight_uploads;
} rt_slot_stats_t;
bool rt_session_slot_stats(const flagos_session_t *s, int i, rt_slot_stats_t *out);

/* Weights uploaded and graph counters of a session (tests, `flagos bench`). */
void rt_session_stats(const flagos_session_t *s, int64_t *weight_uploads, rt_graph_stats_t *graphs);

/* Executes a host operator (control flow, sequences, optionals). */
flagos_status_t rt_host_op(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn);
/* Executes a node on string tensors (src/runtime/host_strings*.c): the nodes ops_str_runtime_runs() accepts. */
flagos_status_t rt_host_strings(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn);

#endif
