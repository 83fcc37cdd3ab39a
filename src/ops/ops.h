/* Operators, written once.
 *
 * Each operator is an ops_def_t: a shape rule (`infer`) that computes output
 * types and the integer parameters the kernels need, a lowering (`lower`) to
 * kernel IR, and a FLOP count. infer runs at compile time on what is known then
 * (unknown dims are -1, unknown values NULL) and again at run time on concrete
 * shapes (and on the host values of the inputs named in value_inputs) when the
 * node's shapes were not all static at compile time. The lowering refers to dims
 * and parameters through ops_in_dim/ops_out_dim/ops_param, which give constants
 * where compile time knew them and runtime symbols otherwise, so one lowering
 * serves static and dynamic shapes.
 *
 * The node's symbol array (what KIR_SYM indexes) is laid out as:
 *   [dims of input 0][dims of input 1]...[dims of output 0]...[params]
 * with each tensor's rank taken from compile time (absent inputs take none). */
#ifndef FLAGOS_OPS_H
#define FLAGOS_OPS_H

#include "ir/ir.h"
#include "kernel/kir.h"

#define OPS_MAX_RANK 16
#define OPS_MAX_PARAMS 1024

/* For a SEQUENCE or OPTIONAL, dtype/rank/dims describe the element tensor (rank -1
 * when unknown); elem_kind says whether an OPTIONAL holds a tensor or a sequence. */
typedef struct ops_tensor_info {
  bool present;          /* false for an omitted optional input/output */
  fir_type_kind_t kind;  /* TENSOR, SEQUENCE, OPTIONAL */
  fir_type_kind_t elem_kind;
  flagos_dtype_t dtype;
  int rank;              /* -1 unknown (compile time only) */
  int64_t dims[OPS_MAX_RANK]; /* -1 unknown (compile time only) */
  /* Host data (row-major, dtype layout as in fir_tensor_t) when known: constants
   * at compile time; at run time, inputs listed in value_inputs. NULL otherwise. */
  const void *value;
  int64_t numel;         /* -1 unknown */
  int sym_base;          /* first slot of its dims in the symbol array */
} ops_tensor_info_t;

typedef struct ops_ctx ops_ctx_t;

/* Where a kernel buffer's memory comes from. */
typedef enum ops_bind_kind { OPS_BIND_INPUT, OPS_BIND_OUTPUT, OPS_BIND_TEMP } ops_bind_kind_t;
typedef struct ops_bind {
  ops_bind_kind_t kind;
  int index;
} ops_bind_t;

typedef struct ops_step {
  kir_kernel_t *kernel;
  ops_bind_t *binds; /* one per kernel buffer */
} ops_step_t;

typedef struct ops_temp {
  flagos_dtype_t dtype;
  int rank;
  kir_expr_t **dims;  /* int64 expressions over symbols */
  kir_expr_t *numel;  /* product of dims */
} ops_temp_t;

struct ops_ctx {
  fl_arena_t *arena;     /* everything a lowering makes is allocated here */
  const fir_node_t *node;
  int opset;             /* node->opset, for version-specific behaviour */
  bool runtime;          /* false at compile time */
  int n_in;
  ops_tensor_info_t *in;
  int n_out;
  ops_tensor_info_t *out; /* infer fills present/kind/dtype/rank/dims */
  int n_params;
  int64_t params[OPS_MAX_PARAMS]; /* set by infer, read by the lowering */
  /* Set by the framework after infer: all input/output dims and the params are
   * known, so the lowering may fold them into constants. */
  bool is_static;
  /* lowering output */
  int n_steps, cap_steps;
  ops_step_t *steps;
  int n_temps, cap_temps;
  ops_temp_t *temps;
  const char *kernel_prefix; /* unique per node, e.g. "n12" */
  int param_base;            /* first params slot in the symbol array */
  int n_syms;                /* param_base + n_params */
  /* Capture mode (FusedElementwise, src/ops/fused.c): when capture_in is set,
   * ops_ew_lower_map makes no kernel but sets capture_out to the element of
   * output 0 built from capture_in (one expression per input, NULL for omitted
   * ones), so a fused kernel computes each node with the node's own formula. */
  kir_expr_t *const *capture_in;
  kir_expr_t *capture_out;
};

typedef struct ops_def {
  const char *op_type;
  const char *domain; /* "" default, "ai.onnx.ml", "ai.onnx.preview.training"... */
  /* Bit i set: infer needs the value of input i (it decides shapes or params). */
  uint64_t value_inputs;
  flagos_status_t (*infer)(ops_ctx_t *c);
  flagos_status_t (*lower)(ops_ctx_t *c);
  double (*flops)(const ops_ctx_t *c); /* useful FLOPs; NULL means one per output element */
  /* Runs in the runtime itself instead of as kernels (control flow, sequences,
   * optionals): lower is NULL and src/runtime/host_ops.c implements it once for
   * every backend through the plugin ABI's copies. */
  bool host;
} ops_def_t;

/* ---- registry ----
 * Each operator family file defines one table `const ops_def_t ops_family_<name>[]`
 * ended by an entry with op_type NULL; src/ops/registry.c lists the families. */
const ops_def_t *ops_find(const char *op_type, const char *domain);
/* Calls fn for every registered operator (for docs and tests). */
void ops_each(void (*fn)(const ops_def_t *d, void *user), void *user);

/* ---- helpers for infer ---- */
flagos_status_t ops_err(const ops_ctx_t *c, flagos_code_t code, const char *fmt, ...) FLAGOS_PRINTF(3, 4);
/* Sets output k to a tensor of dtype and rank/dims (dims may hold -1). */
void ops_set_out(ops_ctx_t *c, int k, flagos_dtype_t dt, int rank, const int64_t *dims);
/* Numpy-style broadcast of the shapes of inputs [first, first+n): output rank/dims. */
flagos_status_t ops_broadcast_shape(ops_ctx_t *c, int first, int n, int *rank, int64_t *dims);
/* Value of element i of input k as int64 / double (requires in[k].value). */
int64_t ops_in_int(const ops_ctx_t *c, int k, int64_t i);
double ops_in_float(const ops_ctx_t *c, int k, int64_t i);
/* Normalises a possibly negative axis against rank; error naming the attribute if out of range. */
flagos_status_t ops_axis(const ops_ctx_t *c, int64_t axis, int rank, int *out);
bool ops_has_in(const ops_ctx_t *c, int k); /* input k given (not omitted) */

/* ---- helpers for lowering ---- */
/* Starts a kernel (a new step); its name is the node prefix plus `suffix`. */
kir_kernel_t *ops_kernel(ops_ctx_t *c, const char *suffix);
/* Adds a buffer bound to node input / output / temp k to kernel kk; returns the buffer index. */
int ops_buf_in(ops_ctx_t *c, kir_kernel_t *kk, int k);
int ops_buf_out(ops_ctx_t *c, kir_kernel_t *kk, int k);
int ops_buf_temp(ops_ctx_t *c, kir_kernel_t *kk, int t);
/* Binds a node input/output/temp under another row-major shape of the same number
 * of elements (a view: im2col matrices, flattened batches...). */
int ops_buf_view(ops_ctx_t *c, kir_kernel_t *kk, ops_bind_kind_t kind, int k, int rank, kir_expr_t *const *dims);
/* Declares a temporary buffer of rank dims; returns its index. */
int ops_temp(ops_ctx_t *c, flagos_dtype_t dt, int rank, kir_expr_t *const *dims);
kir_expr_t *ops_temp_dim(ops_ctx_t *c, int t, int d);
/* Dims as constants when known at compile time, else symbols (a dim known at
 * compile time is checked at run time, so folding it is safe). Params are
 * constants only when is_static. */
kir_expr_t *ops_in_dim(ops_ctx_t *c, int k, int d);
kir_expr_t *ops_out_dim(ops_ctx_t *c, int k, int d);
kir_expr_t *ops_param(ops_ctx_t *c, int i);
/* A kernel whose iteration space is output k's shape; vars receives the loop vars. */
kir_kernel_t *ops_out_kernel(ops_ctx_t *c, int k, const char *suffix, kir_expr_t **vars);
/* Loads input k broadcast (numpy rules) onto an index space of `rank` vars. */
kir_expr_t *ops_load_bcast(ops_ctx_t *c, kir_kernel_t *kk, int buf, int k, int rank, kir_expr_t *const *vars);


/* ---- driving an operator (compiler and runtime) ---- */
/* Prepares a context for node n. in/out arrays are owned by the caller; out is cleared. */
void ops_ctx_init(ops_ctx_t *c, fl_arena_t *a, const fir_node_t *n, ops_tensor_info_t *in, ops_tensor_info_t *out,
                  bool runtime);
/* Runs d->infer, then lays out the symbol array and decides is_static. */
flagos_status_t ops_ctx_infer(ops_ctx_t *c, const ops_def_t *d);
/* Fills the symbol array (c->n_syms entries) from concrete dims and params. */
void ops_ctx_fill_syms(const ops_ctx_t *c, int64_t *syms);
/* Describes value v's type as an ops_tensor_info_t (value data from a constant initializer, if any). */
void ops_info_from_value(ops_tensor_info_t *t, const fir_value_t *v);

/* ---- FLOP accounting (added for profiling and EAF, issue 7; docs/eaf.md) ----
 * Useful FLOPs of the node c describes, after ops_ctx_infer: d->flops(c), or one
 * per element of its tensor outputs when d->flops is NULL; 0 for host operators.
 * Returns -1 when c does not know every dim it needs (compile time, dynamic
 * shapes): the runtime then computes it on the concrete shapes. */
double ops_node_flops(const ops_def_t *d, const ops_ctx_t *c);
/* Bytes the node reads and writes: its tensor inputs plus outputs (-1 unknown). */
double ops_node_bytes(const ops_ctx_t *c);
#endif
