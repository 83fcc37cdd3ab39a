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
} rt_val_t;

typedef struct rt_frame {
  const rt_plan_t *plan;
  rt_val_t *vals; /* by value id of plan->graph */
  struct rt_frame *parent;
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
} rt_exec_t;

rt_val_t *rt_lookup(rt_frame_t *f, const fir_value_t *v);
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

/* Executes a host operator (control flow, sequences, optionals). */
flagos_status_t rt_host_op(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn);
/* Executes a node on string tensors (src/runtime/host_strings*.c): the nodes ops_str_runtime_runs() accepts. */
flagos_status_t rt_host_strings(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn);

#endif
