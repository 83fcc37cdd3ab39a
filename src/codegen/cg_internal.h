/* The shared emitter's internals: what the base (emit_base.c, emit_expr.c) and
 * the dialects (dialect_c.c; later CUDA C and OpenCL C) share.
 *
 * The base walks a kernel and produces C-family statements into a tree of
 * blocks (the function body, one block per main loop level, reduction loops,
 * the branches of lazy selects and conditional stores). A dialect decides what
 * is dialect-specific: the kernel signature and buffer pointers, how the main
 * loop levels become loops or thread indices (and pragmas), type names, the math
 * function spelling and the helper prelude, whose fo_* functions every dialect
 * must define with the same meaning (see prelude_c.inc). */
#ifndef FLAGOS_CG_INTERNAL_H
#define FLAGOS_CG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "kernel/kir.h"

typedef struct cg cg_t;
typedef struct cg_block cg_block_t;

typedef enum cg_block_kind {
  CG_ROOT,  /* the function body, before the main loops */
  CG_LOOP,  /* body of main loop level `level` (the innermost one is the per-point block) */
  CG_RLOOP, /* body of one reduction loop over `var` in [0, ext) */
  CG_LAZY   /* a branch that may not run: select branch, conditional store, guarded hoist */
} cg_block_kind_t;

typedef struct cg_memo {
  const kir_expr_t *e;
  const char *name;
} cg_memo_t;

struct cg_block {
  cg_block_t *parent;
  cg_block_kind_t kind;
  int depth;              /* indentation */
  fl_buf_t buf;           /* statements, in order */
  int var;                /* LOOP/RLOOP: the variable the loop binds, else -1 */
  const kir_expr_t *ext;  /* RLOOP: its extent (a guard when code is hoisted past it) */
  int level;              /* LOOP: main loop level */
  size_t pre_len;         /* LOOP: bytes of statements before the nested main loop */
  bool has_loop;          /* a reduction loop was emitted inside (directly or nested) */
  cg_memo_t *memo;
  int n_memo, cap_memo;
};

/* Analysis of one expression node (kernels are DAGs: a node may have several parents). */
typedef struct cg_info {
  const kir_expr_t *e;
  int refs;          /* parents referring to it (stores count as parents) */
  uint64_t *vars;    /* free variables (bitset over kernel vars) */
  uint64_t *loads;   /* buffers loaded in the subtree (bitset) */
  kir_expr_t *cost;  /* per-point work estimate (int64 expression), once computed */
} cg_info_t;

typedef struct cg_dialect {
  const char *name;
  const char *prelude;
  /* C type holding values of a compute dtype (kir_compute_dtype applied), and the
   * element type of a buffer of dtype dt. NULL: not representable. */
  const char *(*ctype)(flagos_dtype_t dt);
  const char *(*stype)(flagos_dtype_t dt);
  const char *f32_math_suffix; /* "f": expf for f32 values; "" where math functions are overloaded */
  /* Writes the kernel's signature, buffer pointers and symbol loads. */
  void (*kernel_begin)(cg_t *g, fl_buf_t *out);
  void (*kernel_end)(cg_t *g, fl_buf_t *out);
  /* Wraps main loop level `blk->level` around blk's statements, appended to out. */
  void (*main_loop)(cg_t *g, cg_block_t *blk, fl_buf_t *out);
  /* Line(s) placed before the innermost loop of a reduction whose body is a
   * plain expression (C: an OpenMP simd reduction); may write nothing. */
  void (*reduce_pragma)(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, int depth, fl_buf_t *out);
  /* Optional: line(s) placed before the outermost loop of a reduction that runs
   * at function level (outside every main loop), to share it among threads when
   * `work` (C text) is large; `simd` says that loop is also the innermost one and
   * its body a plain expression. Returns false when it wrote nothing. */
  bool (*reduce_parallel)(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, bool simd, const char *work,
                          int depth, fl_buf_t *out);
} cg_dialect_t;

struct cg {
  const cg_dialect_t *d;
  const kir_kernel_t *k;
  fl_arena_t *a;         /* scratch for this kernel */
  flagos_status_t err;   /* first error; emission carries on with placeholders */
  int nw_var, nw_buf;    /* bitset words */
  cg_info_t *info;       /* open-addressing table keyed by node pointer */
  size_t info_cap, info_n;
  int next_tmp;
  bool inline_only;      /* dims/extents: no statements, no memo */
  bool index_ctx;        /* emitting an index: int64 arithmetic may assume no overflow */
  bool *sym_used;        /* [k->n_syms] */
  bool *buf_loaded, *buf_stored;
  bool **stride_used;    /* [buf][dim] */
  const char ***stride;  /* [buf][dim]: C text of each stride */
  cg_block_t **levels;   /* main loop blocks by level */
  cg_block_t *point;     /* the per-point block (innermost main loop, or the root) */
  const char *work;      /* C text of the work estimate, for parallel thresholds */
  bool work_used;
};

/* ---- base (emit_base.c) ---- */
void cg_fail(cg_t *g, flagos_code_t code, const char *fmt, ...) FLAGOS_PRINTF(3, 4);
const char *cg_fmt(cg_t *g, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
void cg_line(fl_buf_t *b, int depth, const char *fmt, ...) FLAGOS_PRINTF(3, 4);
cg_info_t *cg_info(cg_t *g, const kir_expr_t *e);
/* Emits one kernel through dialect d (appending to out). */
flagos_status_t cg_emit_kernel(const cg_dialect_t *d, const kir_kernel_t *k, fl_buf_t *out);
bool cg_dtype_supported(flagos_dtype_t dt);

/* ---- expression pieces (emit_expr.c): each returns C text ---- */
const char *cg_ctype(cg_t *g, flagos_dtype_t dt);   /* of the compute dtype of dt */
const char *cg_sfx(flagos_dtype_t dt);              /* helper suffix: f32 f64 i8 ... u64 */
const char *cg_const(cg_t *g, const kir_expr_t *e);
const char *cg_unary(cg_t *g, const kir_expr_t *e, const char *x);
const char *cg_binary(cg_t *g, const kir_expr_t *e, const char *x, const char *y);
const char *cg_cast(cg_t *g, flagos_dtype_t from, flagos_dtype_t to, bool sat, const char *x);
const char *cg_bitcast(cg_t *g, flagos_dtype_t from, flagos_dtype_t to, const char *x);
const char *cg_decode(cg_t *g, flagos_dtype_t dt, const char *elem);  /* buffer element -> value */
const char *cg_store_value(cg_t *g, flagos_dtype_t vdt, flagos_dtype_t bdt, const char *x); /* value -> element */
const char *cg_reduce_init(cg_t *g, kir_op_t op, flagos_dtype_t dt);
const char *cg_reduce_step(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, const char *x);

/* ---- dialects ---- */
extern const cg_dialect_t cg_dialect_c;

#endif
