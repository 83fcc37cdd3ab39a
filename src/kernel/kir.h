/* Kernel IR: the backend-neutral description of one kernel.
 *
 * A kernel iterates over a rectangular index space (loop variables v0..v(r-1),
 * row-major, the last varies fastest) and, for each point, evaluates scalar
 * expressions and stores them into buffers. Expressions are trees of constants,
 * loop variables, runtime integer symbols, loads from buffers at computed
 * indices, arithmetic, selects and reductions over further index ranges. This is
 * enough to write pointwise/broadcast maps, reductions, index remaps (transpose,
 * slice, gather, pad) and the generic form of GEMM and convolution; a kernel may
 * also carry a library call (GEMM, convolution...) that a backend may run instead
 * of the generic body.
 *
 * Semantics every emitter must keep (docs/kernel-ir.md):
 * - Integer index arithmetic is int64. DIV and MOD on integers truncate toward
 *   zero (C); FLOORDIV/FLOORMOD round toward negative infinity.
 * - Float types narrower than f32 (f16, bf16, float8, float4, e8m0) are computed
 *   as f32; values are rounded to the narrow type at CAST and at stores.
 * - Sub-byte integers (i4, u4, i2, u2) are stored one per byte, computed as int32.
 * - BOOL is stored as one byte (0/1).
 * - SELECT evaluates only the chosen operand, so a guarded out-of-range load is safe.
 * - MIN/MAX (binary and reduction) propagate NaN.
 * - A store with a condition writes only where the condition is true.
 * - Iterations may run in any order and in parallel unless the kernel is serial.
 */
#ifndef FLAGOS_KIR_H
#define FLAGOS_KIR_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

typedef enum kir_kind {
  KIR_CONST,   /* ci (integer/bool types) or cf (float types) */
  KIR_VAR,     /* loop or reduction variable `var` (int64) */
  KIR_SYM,     /* runtime int64 symbol `sym` (int64) */
  KIR_LOAD,    /* buffer `buf` at indices a[0..n-1] (one per buffer dim) */
  KIR_UNARY,   /* op(a[0]) */
  KIR_BINARY,  /* op(a[0], a[1]) */
  KIR_SELECT,  /* a[0] ? a[1] : a[2]; a[0] is BOOL; lazy */
  KIR_CAST,    /* a[0] converted to dtype; `sat` saturates float8 targets */
  KIR_BITCAST, /* reinterpret the bits of a[0] as dtype (same storage size) */
  KIR_REDUCE   /* op over vars rvars[0..nr-1] in [0, rext[i]) of body a[0]; init = identity */
} kir_kind_t;

typedef enum kir_op {
  /* unary */
  KIR_NEG, KIR_ABS, KIR_NOT /* bool */, KIR_BITNOT, KIR_EXP, KIR_LOG, KIR_SQRT, KIR_SIN, KIR_COS,
  KIR_TAN, KIR_ASIN, KIR_ACOS, KIR_ATAN, KIR_SINH, KIR_COSH, KIR_TANH, KIR_ASINH, KIR_ACOSH,
  KIR_ATANH, KIR_ERF, KIR_FLOOR, KIR_CEIL, KIR_ROUND /* half to even */, KIR_SIGN, KIR_ISNAN /* ->bool */,
  KIR_ISINF_POS /* ->bool */, KIR_ISINF_NEG /* ->bool */, KIR_LOG1P, KIR_EXPM1,
  /* binary */
  KIR_ADD, KIR_SUB, KIR_MUL, KIR_DIV, KIR_MOD /* C %, fmod */, KIR_FLOORDIV, KIR_FLOORMOD /* sign of divisor */,
  KIR_POW, KIR_MIN, KIR_MAX, KIR_ATAN2,
  KIR_EQ, KIR_NE, KIR_LT, KIR_LE, KIR_GT, KIR_GE, /* -> bool */
  KIR_AND, KIR_OR, KIR_XOR,                       /* bool */
  KIR_BITAND, KIR_BITOR, KIR_BITXOR, KIR_SHL, KIR_SHR,
  /* reductions */
  KIR_RSUM, KIR_RPROD, KIR_RMIN, KIR_RMAX, KIR_RANY, KIR_RALL,
  KIR_OP_COUNT
} kir_op_t;

typedef struct kir_expr kir_expr_t;
struct kir_expr {
  kir_kind_t kind;
  flagos_dtype_t dtype; /* result type; int64 for index expressions, BOOL for predicates */
  kir_op_t op;
  int64_t ci;
  double cf;
  int var;
  int sym;
  int buf;
  bool sat;
  int n;            /* operand count */
  kir_expr_t **a;   /* operands (LOAD: indices; REDUCE: a[0] is the body) */
  int nr;           /* REDUCE: number of reduction vars */
  int *rvars;
  kir_expr_t **rext;
};

typedef struct kir_buf {
  const char *name;     /* for readable code: "x", "w", "y", "t0"... */
  flagos_dtype_t dtype;
  int rank;
  kir_expr_t **dims;    /* int64 exprs: size of each dim (row-major, contiguous) */
  bool written;         /* the kernel stores into it */
} kir_buf_t;

typedef struct kir_store {
  int buf;
  kir_expr_t **idx;   /* one per buffer dim */
  kir_expr_t *value;  /* converted to the buffer's dtype on store */
  kir_expr_t *cond;   /* NULL: always */
} kir_store_t;

/* A library call that computes the same thing as the kernel body. Buffers are
 * the kernel's own (by index); ints are int64 expressions over symbols only.
 * With ends_node, the call computes the whole node's outputs (not just this
 * kernel's), so when a backend takes it the node's later kernels are skipped;
 * when it is declined, the body and the later kernels run as usual. With
 * skip > 0 (and not ends_node), a taken call skips the node's next `skip`
 * kernels only: the ones that compute what the call computed, the kernels
 * after them running as usual (ProductActivation: the product's call taken,
 * its activation's kernel still runs). */
typedef struct kir_libcall {
  const char *name; /* "gemm", "conv" ... see docs/kernel-ir.md for each signature */
  int n_bufs;
  int *bufs;
  int n_ints;
  kir_expr_t **ints;
  int n_floats;
  double *floats;
  bool ends_node;
  int skip; /* taken: the next `skip` kernels are not run (0: none; ends_node skips all) */
} kir_libcall_t;

typedef struct kir_kernel {
  fl_arena_t *arena;  /* not owned: the lowering's arena */
  const char *name;
  int n_bufs, cap_bufs;
  kir_buf_t *bufs;
  int n_syms;         /* symbols are slots of the node's symbol array (see ops.h) */
  int rank;           /* iteration space */
  int *vars;
  kir_expr_t **extents;
  int n_stores, cap_stores;
  kir_store_t *stores;
  bool serial;        /* iterations must run in order */
  kir_libcall_t *libcall;
  int next_var;
} kir_kernel_t;

/* ---- building ---- */
kir_kernel_t *kir_kernel_create(fl_arena_t *a, const char *name);
int kir_add_buf(kir_kernel_t *k, const char *name, flagos_dtype_t dt, int rank, kir_expr_t *const *dims);
int kir_new_var(kir_kernel_t *k);
/* Sets the iteration space; returns the loop variables as expressions in vars_out (rank entries). */
void kir_set_space(kir_kernel_t *k, int rank, kir_expr_t *const *extents, kir_expr_t **vars_out);
void kir_store(kir_kernel_t *k, int buf, kir_expr_t *const *idx, kir_expr_t *value, kir_expr_t *cond);

/* Expression constructors fold constants and trivial identities (x+0, x*1, ...).
 * Operand dtypes must agree where the op requires it; mismatches are bugs in the
 * lowering and abort with a message naming the kernel op. */
kir_expr_t *kir_i64(fl_arena_t *a, int64_t v);
kir_expr_t *kir_const(fl_arena_t *a, flagos_dtype_t dt, double v); /* numeric constant of any type */
kir_expr_t *kir_const_int(fl_arena_t *a, flagos_dtype_t dt, int64_t v);
kir_expr_t *kir_bool(fl_arena_t *a, bool v);
kir_expr_t *kir_var(fl_arena_t *a, int var);
kir_expr_t *kir_sym(fl_arena_t *a, int sym);
kir_expr_t *kir_load(kir_kernel_t *k, int buf, kir_expr_t *const *idx);
kir_expr_t *kir_un(fl_arena_t *a, kir_op_t op, kir_expr_t *x);
kir_expr_t *kir_bin(fl_arena_t *a, kir_op_t op, kir_expr_t *x, kir_expr_t *y);
kir_expr_t *kir_select(fl_arena_t *a, kir_expr_t *c, kir_expr_t *x, kir_expr_t *y);
kir_expr_t *kir_cast(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x);
kir_expr_t *kir_cast_sat(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x, bool saturate);
kir_expr_t *kir_bitcast(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x);
/* Reduction: `vars` must come from kir_new_var and appear in body. */
kir_expr_t *kir_reduce(fl_arena_t *a, kir_op_t op, int nr, const int *vars, kir_expr_t *const *ext, kir_expr_t *body);
/* Shorthands for int64 index arithmetic. */
kir_expr_t *kir_add(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y);
kir_expr_t *kir_sub(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y);
kir_expr_t *kir_mul(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y);
bool kir_is_const(const kir_expr_t *e, int64_t v); /* integer constant equal to v */

void kir_set_libcall(kir_kernel_t *k, const char *name, int n_bufs, const int *bufs, int n_ints,
                     kir_expr_t *const *ints, int n_floats, const double *floats);

/* ---- queries ---- */
bool kir_op_is_compare(kir_op_t op); /* result BOOL */
const char *kir_op_name(kir_op_t op);
/* The dtype expressions of `dt` are computed in: f32 for narrow floats, int32 for sub-byte ints. */
flagos_dtype_t kir_compute_dtype(flagos_dtype_t dt);

/* ---- evaluation of integer expressions (symbols only) on the host ---- */
/* Returns false if the expression holds a load, a variable or a non-integer node. */
bool kir_eval_int(const kir_expr_t *e, const int64_t *syms, int n_syms, int64_t *out);

/* ---- text form (for debugging and for the bundle manifest) ---- */
/* S-expression text: (add (sym 3) 1). print_kernel prints a whole kernel. */
void kir_print_expr(fl_buf_t *b, const kir_expr_t *e);
void kir_print_kernel(fl_buf_t *b, const kir_kernel_t *k);
/* Parses an integer expression as printed by kir_print_expr (consts, syms, int ops). */
flagos_status_t kir_parse_int_expr(fl_arena_t *a, const char *text, kir_expr_t **out);

#endif
