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
  int mark[2];       /* visit marks of the cooperative form's plan (walk, contiguity) */
} cg_info_t;

/* What the tiled form (emit_tile.c) spells per GPU dialect: the thread in the
 * group, the group's size, the group and the number of groups, a barrier over
 * the group, the qualifier of a group-shared array. */
typedef struct cg_tile_names {
  const char *lid, *lsz, *gid, *ngr, *barrier, *shared;
} cg_tile_names_t;

/* The row cache's slots in group-shared memory (emit_coop.c), past a thread's
 * register slots: `bytes` a group may take at most ($FLAGOS_CODEGEN_ROW_SHARED
 * replaces it; 0: none), the threads of a group sharing a long row and the C
 * text of a thread's index among them (slot s of thread t is element
 * (s / W * group + t) * W + s % W of its array, W = rc_w: a group's accesses of
 * one vector are consecutive). decl writes, at function scope, `unsigned char
 * *fo_rsm` (16-byte aligned, g->rc_smem bytes where the launch gave them) and
 * `int fo_rsm_ok` (whether it did; where not, those elements are read from
 * memory, as past the slots); kernel_end then tells the launcher g->rc_smem. */
typedef struct cg_coop_shared {
  int bytes, group;
  const char *tid;
  void (*decl)(cg_t *g, fl_buf_t *out);
} cg_coop_shared_t;

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
  /* Optional (GPU dialects): the cooperative form, where a group of threads (a
   * CUDA block or warp, an OpenCL work-group) shares one row (the main levels
   * 0..coop_level; -1: the whole space is one row). coop_setup writes, after the
   * extents, the int variables fo_gt (thread in the group), fo_gw (threads in
   * the group), fo_row0 and fo_rstep (the group's first row and the stride of
   * the row loop); `g->coop_rowsz` is C text of the row's size (NULL: unknown),
   * for dialects that size their groups by it. coop_combine writes the code that
   * combines `acc` over the group, leaving the result in `acc` in every thread;
   * every thread of the group runs it (it may synchronise the group). */
  /* Optional (GPU dialects): vector accesses. In the vector form each thread
   * takes g->vec_w (4 or 8) consecutive points of the innermost level
   * (cg_vec_point writes its body) and the plain loads and stores along it move
   * that many elements at once. vec_load declares `T arr[vec_w]` (T: the
   * buffer's element type) filled from elements off..off+vec_w-1 of buffer `buf`; vec_store writes arr there; vec_aligned
   * is the C condition those accesses need on the buffer's address (NULL:
   * none). Returns NULL / false for element types that stay scalar. */
  bool (*vec_load)(cg_t *g, int buf, const char *off, const char *arr, int depth, fl_buf_t *out);
  bool (*vec_store)(cg_t *g, int buf, const char *off, const char *arr, int depth, fl_buf_t *out);
  const char *(*vec_aligned)(cg_t *g, int buf);
  /* The dialect also has 8-wide vectors (g->vec_w == 8), which the base picks
   * for kernels with 16-bit buffers: 4 of them are only 8 bytes. */
  bool vec_wide;
  void (*coop_setup)(cg_t *g, fl_buf_t *out);
  void (*coop_combine)(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, int depth, fl_buf_t *out);
  /* Optional (the row cache of the cooperative form): how many elements of a
   * row of `row` points each thread keeps in registers, for `arrays` cached
   * loads together (0: none). Any answer is correct: elements past the slots
   * are read from memory again; it only sizes the register arrays. */
  int (*coop_slots)(int64_t row, int arrays);
  /* Optional: the row cache's second tier, in group-shared memory (NULL: none). */
  const cg_coop_shared_t *coop_shared;
  /* Optional: a thread's slots come in vectors of this many consecutive
   * elements (0 or 1: slot k of thread t is element t + k * group), and the
   * name of the builtin that declares a pointer aligned (`T *p =
   * builtin(q, bytes)`), through which the compiler moves those vectors. */
  int coop_vec;
  const char *assume_aligned;
  /* Optional: the tiled form (NULL: the dialect has none), and how many
   * elements of 4 bytes a thread moves as one vector in its plain copies (0
   * or 1: none; else CUDA's floatN, make_floatN and __stcg are written). */
  const cg_tile_names_t *tile;
  int tile_vec;
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
  /* The cooperative form (dialects with coop_setup): coop_level is the deepest
   * main level of a row (-1: the function body; CG_NO_COOP: not used), coop_blk
   * the row's block, whose reductions are shared by the group. */
  int coop_level;
  cg_block_t *coop_blk;
  const char *coop_rowsz;
  kir_expr_t *coop_rowsz_e; /* while emitting: the largest trip count seen (NULL: none yet) */
  bool coop_rowsz_unknown;  /* a trip count depends on more than symbols */
  int mark_gen[2];
  /* The vector form (dialects with vec_load): while `vec` is set the body is
   * emitted for vec_w points fo_vb..fo_vb+vec_w-1 of the innermost level (variable
   * vec_var); vec_pre / vec_post hold the vector loads and stores around them. */
  bool vec;
  int vec_w;             /* points per thread: 4, or 8 (vec_wide dialects, 16-bit buffers) */
  int vec_var;
  bool vec_base;         /* print vec_var as fo_vb (offsets of vector accesses) */
  int n_vec;             /* vector accesses emitted */
  bool *vec_buf;         /* [buf]: accessed by vectors (its alignment is checked) */
  fl_buf_t vec_pre, vec_post;
  int n_coop;            /* cooperative reductions emitted */
  /* The row cache (emit_coop.c): loads of a row that several of its loops read
   * (softmax's x in the max, the sum and the output) are read once into
   * register arrays fo_rcI[rc_k]; slot k of a thread holds the element at
   * fo_gt + k * fo_gw of the row's loop variable, of extent rc_n. */
  int n_rc;
  const kir_expr_t **rc_load; /* a representative load of each array */
  int *rc_lvar;               /* the loop variable that load uses */
  int64_t rc_n;
  int rc_k;
  int rc_w;                   /* slots come in vectors of rc_w consecutive elements (1: strided) */
  int rc_sk;                  /* slots past rc_k a thread keeps in group-shared memory (coop_shared; 0: none) */
  int *rc_soff;               /* [array]: its byte offset in that memory */
  int rc_smem;                /* bytes of that memory a group takes (a multiple of 256) */
  bool rc_smem_decl;          /* fo_rsm is declared: the kernel takes rc_smem bytes */
  int rc_var;                 /* while emitting a row loop's body: its variable (-1: none) */
  int rc_inner_var;           /* the row's inner level variable when it may use the cache (-1: none) */
  int rc_hits;                /* loads that used the cache, counting */
  bool rc_ready;              /* the arrays are declared and filled */
  bool rc_inner_hit;          /* the inner level's body used the cache */
  fl_buf_t decls;        /* function-scope declarations (shared / local arrays), written after the signature */
  /* The tiled form (emit_tile.c): the main level whose variable is the last
   * index of a load that reads across the store (-1: not used); the store's
   * buffer and offset text, which the tile's second pass writes. */
  int tile_lw;
  int tile_sh;           /* log2 of the tile's side */
  int tile_v;            /* elements a thread moves side by side in a pass */
  int tile_buf;
  const char *tile_at;
};

#define CG_NO_COOP (-2)

/* ---- base (emit_base.c) ---- */
void cg_fail(cg_t *g, flagos_code_t code, const char *fmt, ...) FLAGOS_PRINTF(3, 4);
const char *cg_fmt(cg_t *g, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
void cg_line(fl_buf_t *b, int depth, const char *fmt, ...) FLAGOS_PRINTF(3, 4);
cg_info_t *cg_info(cg_t *g, const kir_expr_t *e);
/* Counts e's references and its free variables and loaded buffers, once per node
 * (emit_analyze.c). */
void cg_analyze(cg_t *g, const kir_expr_t *e);

/* Bitsets of variables and buffers, in the arena. */
static inline uint64_t *cg_bits_new(cg_t *g, int words) {
  return fl_arena_alloc(g->a, sizeof(uint64_t) * (size_t)(words ? words : 1));
}
static inline bool cg_bit_get(const uint64_t *b, int i) { return (b[i >> 6] >> (i & 63)) & 1u; }
static inline void cg_bit_set(uint64_t *b, int i) { b[i >> 6] |= 1ull << (i & 63); }
static inline void cg_bits_or(uint64_t *d, const uint64_t *s, int words) {
  for (int i = 0; i < words; i++) d[i] |= s[i];
}
/* Emits one kernel through dialect d (appending to out). */
flagos_status_t cg_emit_kernel(const cg_dialect_t *d, const kir_kernel_t *k, fl_buf_t *out);
bool cg_dtype_supported(flagos_dtype_t dt);
/* The element name of a 4-wide vector over storage type `stype` ("float",
 * "int", "ushort", ...: CUDA's float4/int4... and OpenCL's vload4 types), NULL
 * for storage types the dialects do not vectorise (8-byte elements). */
const char *cg_vec_elem(const char *stype);
/* The innermost main level's body in the vector form: vector loads, the body
 * for fo_u in 0..vec_w-1 (the level's variable bound to fo_vb + fo_u), vector stores. */
void cg_vec_point(cg_t *g, cg_block_t *blk, int depth, fl_buf_t *out);

/* ---- the base's pieces the cooperative form uses (emit_base.c) ---- */
cg_block_t *cg_blk_new(cg_t *g, cg_block_t *parent, cg_block_kind_t kind);
/* Appends a child block's statements to its parent's, wrapped in `open`/"}" (open NULL: unwrapped). */
void cg_blk_close(cg_block_t *b, const char *open);
void cg_memo_add(cg_t *g, cg_block_t *b, const kir_expr_t *e, const char *name);
const char *cg_tmp_name(cg_t *g, const char *prefix);
/* C text of an expression, statements it needs appended to block b. */
const char *cg_ex(cg_t *g, const kir_expr_t *e, cg_block_t *b);
const char *cg_ex_index(cg_t *g, const kir_expr_t *e, cg_block_t *b); /* int64 index arithmetic */
bool cg_loads_written(cg_t *g, const cg_info_t *in); /* loads a buffer the kernel stores into */

/* ---- the cooperative form (emit_coop.c) ---- */
/* Chooses g->coop_level (CG_NO_COOP where the dialect or the kernel has no use for it). */
void cg_plan_coop(cg_t *g);
/* Whether a reduction's extents are independent of its own variables (it can be flattened). */
bool cg_flat_extents(cg_t *g, const kir_expr_t *e);
/* Emits reduction e, hosted by the row's block t, shared by the group; returns its accumulator. */
const char *cg_reduce_coop(cg_t *g, const kir_expr_t *e, cg_block_t *t);
/* The row cache: C text of load e (normal: its text without the cache) where
 * the loop being emitted can read it from the cache, else NULL. */
const char *cg_rc_load(cg_t *g, const kir_expr_t *e, const char *normal);
/* Bytes of group-shared memory the row cache may take per group: $FLAGOS_CODEGEN_ROW_SHARED, else s->bytes (0 without s). */
int cg_row_shared_bytes(const cg_coop_shared_t *s);
/* Wraps main level blk->level in the cooperative form (instead of the dialect's main_loop). */
void cg_coop_main_loop(cg_t *g, cg_block_t *blk, fl_buf_t *out);
/* Appends the function body's statements (root) to out: in the cooperative
 * form with vector slots, twice, the first for aligned buffers. */
void cg_coop_put(cg_t *g, const fl_buf_t *root, fl_buf_t *out);
/* The combining step of dialects whose groups run as warps of 32: a
 * butterfly of `shfl` (C text of acc's value from lane own ^ fo_o) over the
 * warp, every lane ending with the same value (the steps are commutative);
 * then, where `wide` (C condition) holds, the warps' results through the
 * group-shared array `sh`, read back by every thread in the same order. `lane`
 * and `size` are C text of the thread's index in the group and the group's
 * size, `sync` a group barrier statement. */
typedef struct {
  const char *lane, *size, *sync;
} cg_warp_names_t;
void cg_coop_warp_combine(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, const char *shfl, const char *sh,
                          const char *wide, const cg_warp_names_t *n, int depth, fl_buf_t *out);

/* ---- the tiled form (emit_tile.c) ---- */
/* Chooses g->tile_lw (-1 where the form does not apply). */
void cg_plan_tile(cg_t *g);
/* The main loops in the tiled form around the point block's statements, into out. */
void cg_tile_loops(cg_t *g, cg_block_t *point, fl_buf_t *out);
/* The tile's entry the first pass writes for the point (C text). */
const char *cg_tile_slot(cg_t *g);

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
