/* The CUDA C dialect: one `extern "C" __global__` function per kernel, taking
 * its buffers and symbols as individual kernel parameters (docs/kernel-ir.md,
 * "The CUDA kernel ABI"). One thread per point: the main loops become one
 * grid-stride loop over the flattened iteration space whose index is decomposed
 * into the loop variables; a level's hoisted statements are then evaluated per
 * point, which is correct (they depend only on outer variables) if not minimal.
 * Where loads and stores run along the innermost level, a thread takes 4 points
 * and moves them as vectors (float4...), or 8 in kernels with 16-bit buffers
 * (16-byte accesses). Kernels dominated by reductions over
 * rows take the cooperative form (emit_coop.c): a block, or a warp for short
 * rows, per row, combining through warp shuffles and shared memory. Serial and
 * rank-0 kernels without shared reductions run in one thread. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cg_internal.h"
#include "codegen/cgen.h"

#include "codegen/prelude_c.inc"
#include "codegen/prelude_cuda.inc"

/* Threads per block the plugin launches; kernels declare it as their bound so
 * that the compiler budgets registers for it. */
#define CG_CUDA_BLOCK 256
/* Kernel parameters are limited to 32764 bytes (CUDA 12.1+ on Volta and newer):
 * 8 bytes per buffer pointer and per symbol. */
#define CG_CUDA_MAX_PARAMS 4095

static const char *cuda_ctype(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT32: return "float";
  case FLAGOS_FLOAT64: return "double";
  case FLAGOS_INT8: return "int8_t";
  case FLAGOS_UINT8: return "uint8_t";
  case FLAGOS_INT16: return "int16_t";
  case FLAGOS_UINT16: return "uint16_t";
  case FLAGOS_INT32: return "int32_t";
  case FLAGOS_UINT32: return "uint32_t";
  case FLAGOS_INT64: return "int64_t";
  case FLAGOS_UINT64: return "uint64_t";
  case FLAGOS_BOOL: return "int";
  default: return NULL;
  }
}

static const char *cuda_stype(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT16:
  case FLAGOS_BFLOAT16: return "uint16_t";
  case FLAGOS_FLOAT8E4M3FN:
  case FLAGOS_FLOAT8E4M3FNUZ:
  case FLAGOS_FLOAT8E5M2:
  case FLAGOS_FLOAT8E5M2FNUZ:
  case FLAGOS_FLOAT4E2M1:
  case FLAGOS_FLOAT8E8M0:
  case FLAGOS_UINT4:
  case FLAGOS_UINT2:
  case FLAGOS_BOOL: return "uint8_t";
  case FLAGOS_INT4:
  case FLAGOS_INT2: return "int8_t";
  default: return cuda_ctype(dt);
  }
}

/* Rows of a block's cache (docs/kernel-ir.md, the row cache).
 * FLAGOS_CODEGEN_WIDE_BLOCK=512 (or 1024), for measurements: a kernel whose
 * rows need more than CG_CUDA_ROW_SLOTS register slots a thread at
 * CG_CUDA_BLOCK threads runs blocks of that many threads instead (one block
 * an SM either way, more warps to hide each phase's latency). */
#define CG_CUDA_WARP_ROW 1024
#define CG_CUDA_ROW_SLOTS 64
static int row_block(int64_t row, int arrays) {
  const char *e = getenv("FLAGOS_CODEGEN_WIDE_BLOCK"), *t = getenv("FLAGOS_CODEGEN_ROW_SHARED");
  int wb = e && *e ? atoi(e) : 0;
  if (t && *t && atoi(t) > 0) return CG_CUDA_BLOCK; /* the tier lays its slots out for CG_CUDA_BLOCK */
  if ((wb != 512 && wb != 1024) || arrays <= 0 || row <= CG_CUDA_WARP_ROW) return CG_CUDA_BLOCK;
  return (row + CG_CUDA_BLOCK - 1) / CG_CUDA_BLOCK > CG_CUDA_ROW_SLOTS / arrays ? wb : CG_CUDA_BLOCK;
}

/* The block of a kernel: CG_CUDA_BLOCK, or row_block's for a cached row. */
static int kernel_block(cg_t *g) {
  const char *rs = getenv("FLAGOS_CODEGEN_ROW_SLOTS");
  /* the shared-memory tier lays its slots out for CG_CUDA_BLOCK threads */
  if (g->coop_level == CG_NO_COOP || g->n_rc <= 0 || g->rc_sk > 0 || (rs && *rs)) return CG_CUDA_BLOCK;
  return row_block(g->rc_n, g->n_rc);
}

static bool one_thread(cg_t *g) { return g->k->serial || (g->k->rank == 0 && g->coop_level == CG_NO_COOP); }

static void cuda_kernel_begin(cg_t *g, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  /* The plugin reads the bound back (CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK):
   * a bound of 1 makes it launch a single thread. */
  fl_buf_printf(out, "extern \"C\" __global__ void __launch_bounds__(%d) %s(", one_thread(g) ? 1 : kernel_block(g),
                k->name);
  for (int i = 0; i < k->n_bufs; i++) {
    const char *sep = i ? ", " : "";
    if (!g->buf_loaded[i] && !g->buf_stored[i]) {
      fl_buf_printf(out, "%sconst void *fo_b%d", sep, i);
      continue;
    }
    const char *t = cuda_stype(k->bufs[i].dtype), *c = g->buf_stored[i] ? "" : "const ";
    fl_buf_printf(out, "%s%s%s *__restrict__ b%d", sep, c, t, i);
  }
  for (int i = 0; i < k->n_syms; i++)
    fl_buf_printf(out, "%sint64_t %sS%d", i || k->n_bufs ? ", " : "", g->sym_used[i] ? "" : "fo_", i);
  fl_buf_puts(out, ") {\n");
  for (int i = 0; i < k->n_bufs; i++) {
    if (!g->buf_loaded[i] && !g->buf_stored[i]) continue;
    fl_buf_printf(out, "  /* b%d: %s */\n", i, flagos_dtype_name(k->bufs[i].dtype));
  }
  if (one_thread(g)) cg_line(out, 1, "if (blockIdx.x != 0 || threadIdx.x != 0) return;");
}

static void cuda_kernel_end(cg_t *g, fl_buf_t *out) {
  fl_buf_puts(out, "}\n");
  /* The dynamic shared memory the kernel takes (the row cache's second tier),
   * in units of 256 bytes as this array's size: the plugin reads the size of
   * the global (cuModuleGetGlobal), with no copy from the device. */
  if (g->rc_smem_decl)
    fl_buf_printf(out, "extern \"C\" __device__ unsigned char fo_dynsmem_%s[%d];\n", g->k->name, g->rc_smem / 256);
  fl_buf_puts(out, "\n");
}

/* The flat index's decomposition into the loop variables, last fastest, in
 * integer type T (32-bit when the space is small: 64-bit division is slow). In
 * the vector form the innermost level counts groups of 4 points, from fo_vb. */
static void decompose(cg_t *g, const char *T, int depth, fl_buf_t *out) {
  int rank = g->k->rank;
  cg_line(out, depth, "%s fo_q = (%s)fo_i;", T, T);
  for (int l = rank - 1; l > 0; l--) {
    if (g->vec && l == rank - 1) {
      cg_line(out, depth, "fo_vb = (int64_t)(fo_q %% (%s)(E%d / %d)) * %d;", T, l, g->vec_w, g->vec_w);
      cg_line(out, depth, "fo_q /= (%s)(E%d / %d);", T, l, g->vec_w);
      continue;
    }
    cg_line(out, depth, "v%d = (int64_t)(fo_q %% (%s)E%d);", g->levels[l]->var, T, l);
    cg_line(out, depth, "fo_q /= (%s)E%d;", T, l);
  }
  cg_line(out, depth, "v%d = (int64_t)fo_q;", g->levels[0]->var);
}

/* ---- blocked order ----
 * A copy that keeps the innermost axis but swaps two outer ones (Transpose
 * perm [0,2,1,3]: y[a,b,c,:] = x[a,c,b,:]) reads rows of x a stride apart
 * when its threads follow y's order: each row of x is read alone. Where a
 * load of every level (each index a loop variable) reads along the innermost
 * level with its second-to-last index the variable of an outer level A (not
 * the store's second-to-last level B), the
 * flat index walks blocks of CG_CUDA_BLK x CG_CUDA_BLK rows of levels A and B
 * (B fastest), so the threads in flight read and write runs of CG_CUDA_BLK
 * consecutive rows on both sides. Only for constant extents of A and B that
 * are multiples of the block. $FLAGOS_CODEGEN_BLOCK_ROWS replaces the block's
 * side (0 turns it off), for measurements. */
#define CG_CUDA_BLK 8

static int block_rows(void) {
  const char *env = getenv("FLAGOS_CODEGEN_BLOCK_ROWS");
  return env && *env ? atoi(env) : CG_CUDA_BLK;
}

static bool is_var(const kir_expr_t *e, int v) { return e->kind == KIR_VAR && e->var == v; }

static void across_walk(cg_t *g, const kir_expr_t *e, int *lvl) {
  cg_info_t *in = cg_info(g, e);
  if (!in || in->mark[0] == g->mark_gen[0] || *lvl >= 0) return;
  in->mark[0] = g->mark_gen[0];
  const kir_kernel_t *k = g->k;
  int r = k->rank;
  /* a load of every level, each index a loop variable: a permuted copy */
  bool perm = e->kind == KIR_LOAD && e->n == r && !k->bufs[e->buf].written && is_var(e->a[r - 1], k->vars[r - 1]);
  for (int d = 0; perm && d < r; d++) {
    int l = 0;
    while (l < r && !is_var(e->a[d], k->vars[l])) l++;
    perm = l < r;
  }
  for (int l = 0; perm && l + 2 < r; l++)
    if (is_var(e->a[r - 2], k->vars[l])) *lvl = l;
  for (int i = 0; i < e->n && *lvl < 0; i++) across_walk(g, e->a[i], lvl);
}

/* The level A of the blocked order, or -1. */
static int blocked_level(cg_t *g) {
  const kir_kernel_t *k = g->k;
  int r = k->rank, lvl = -1;
  int n = block_rows();
  if (n <= 0 || k->serial || r < 3) return -1;
  int64_t eb;
  if (!kir_eval_int(k->extents[r - 2], NULL, 0, &eb) || eb % n) return -1;
  for (int s = 0; s < k->n_stores; s++) {
    const kir_store_t *st = &k->stores[s];
    if (k->bufs[st->buf].rank != r) return -1;
    for (int d = 0; d < r; d++)
      if (!is_var(st->idx[d], k->vars[d])) return -1;
  }
  g->mark_gen[0]++;
  for (int s = 0; s < k->n_stores && lvl < 0; s++) across_walk(g, k->stores[s].value, &lvl);
  int64_t ea;
  if (lvl < 0 || !kir_eval_int(k->extents[lvl], NULL, 0, &ea) || ea % n) return -1;
  return lvl;
}

/* decompose() in the blocked order (A = level a, B = the level above the innermost). */
static void decompose_blocked(cg_t *g, const char *T, int a, int depth, fl_buf_t *out) {
  int r = g->k->rank, b = r - 2, n = block_rows();
  cg_line(out, depth, "%s fo_q = (%s)fo_i;", T, T);
  if (g->vec) {
    cg_line(out, depth, "fo_vb = (int64_t)(fo_q %% (%s)(E%d / %d)) * %d;", T, r - 1, g->vec_w, g->vec_w);
    cg_line(out, depth, "fo_q /= (%s)(E%d / %d);", T, r - 1, g->vec_w);
  } else {
    cg_line(out, depth, "v%d = (int64_t)(fo_q %% (%s)E%d);", g->levels[r - 1]->var, T, r - 1);
    cg_line(out, depth, "fo_q /= (%s)E%d;", T, r - 1);
  }
  cg_line(out, depth, "const int64_t fo_ib = (int64_t)(fo_q %% %d);", n);
  cg_line(out, depth, "fo_q /= %d;", n);
  cg_line(out, depth, "const int64_t fo_ia = (int64_t)(fo_q %% %d);", n);
  cg_line(out, depth, "fo_q /= %d;", n);
  cg_line(out, depth, "v%d = (int64_t)(fo_q %% (%s)(E%d / %d)) * %d + fo_ib;", g->levels[b]->var, T, b, n, n);
  cg_line(out, depth, "fo_q /= (%s)(E%d / %d);", T, b, n);
  for (int l = b - 1; l >= 0; l--) {
    const char *ext = l == a ? cg_fmt(g, "(E%d / %d)", l, n) : cg_fmt(g, "E%d", l);
    const char *val = l == 0 ? "(int64_t)fo_q" : cg_fmt(g, "(int64_t)(fo_q %% (%s)%s)", T, ext);
    if (l == a) cg_line(out, depth, "v%d = %s * %d + fo_ia;", g->levels[l]->var, val, n);
    else cg_line(out, depth, "v%d = %s;", g->levels[l]->var, val);
    if (l > 0) cg_line(out, depth, "fo_q /= (%s)%s;", T, ext);
  }
}

static void put_body(cg_t *g, cg_block_t *blk, int depth, fl_buf_t *out) {
  if (g->vec && blk->level == g->k->rank - 1) cg_vec_point(g, blk, depth + 1, out);
  else if (blk->buf.len) fl_buf_append(out, blk->buf.data, blk->buf.len);
}

static void cuda_main_loop(cg_t *g, cg_block_t *blk, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  int lv = blk->level, depth = blk->parent->depth, rank = k->rank, v = blk->var;
  if (k->serial) {
    cg_line(out, depth, "for (int64_t v%d = 0; v%d < E%d; v%d++) {", v, v, lv, v);
  } else if (lv > 0) {
    cg_line(out, depth, "{");
  } else {
    const char *n = rank == 1 && g->vec ? cg_fmt(g, "(E0 / %d)", g->vec_w) : "E0";
    for (int l = 1; l < rank; l++)
      n = g->vec && l == rank - 1 ? cg_fmt(g, "%s * (E%d / %d)", n, l, g->vec_w) : cg_fmt(g, "%s * E%d", n, l);
    cg_line(out, depth, "const int64_t fo_n = %s;", n);
    cg_line(out, depth, "const int64_t fo_step = (int64_t)gridDim.x * blockDim.x;");
    cg_line(out, depth, "for (int64_t fo_i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; fo_i < fo_n; fo_i += fo_step) {");
    if (rank == 1) {
      if (g->vec) cg_line(out, depth + 1, "const int64_t fo_vb = fo_i * %d;", g->vec_w);
      else cg_line(out, depth + 1, "const int64_t v%d = fo_i;", v);
    } else {
      const char *vars = cg_fmt(g, "v%d", g->levels[0]->var);
      for (int l = 1; l < rank; l++)
        vars = g->vec && l == rank - 1 ? cg_fmt(g, "%s, fo_vb", vars) : cg_fmt(g, "%s, v%d", vars, g->levels[l]->var);
      cg_line(out, depth + 1, "int64_t %s;", vars);
      int a = blocked_level(g);
      cg_line(out, depth + 1, "if (fo_n <= 2147483647) {");
      if (a >= 0) decompose_blocked(g, "uint32_t", a, depth + 2, out);
      else decompose(g, "uint32_t", depth + 2, out);
      cg_line(out, depth + 1, "} else {");
      if (a >= 0) decompose_blocked(g, "int64_t", a, depth + 2, out);
      else decompose(g, "int64_t", depth + 2, out);
      cg_line(out, depth + 1, "}");
    }
  }
  put_body(g, blk, depth, out);
  cg_line(out, depth, "}");
}

/* Vectors of 4-byte elements move as float4 / int4 / uint4 (16 bytes), of
 * 16-bit ones as uint4 holding 8 (16 bytes; 8-wide kernels) or ushort4 (4-wide),
 * of bytes as uchar4 / char4; a wider access is several of those, in order. */
static const char *cuda_vec_chunk(cg_t *g, flagos_dtype_t dt, int *n) {
  const char *e = cg_vec_elem(cuda_stype(dt));
  if (!e) return NULL;
  bool wide16 = g->vec_w == 8 && strstr(e, "short");
  *n = wide16 ? 8 : 4;
  return wide16 ? "uint4" : cg_fmt(g, "%s4", e);
}

static bool cuda_vec_load(cg_t *g, int buf, const char *off, const char *arr, int depth, fl_buf_t *out) {
  flagos_dtype_t dt = g->k->bufs[buf].dtype;
  int n;
  const char *V = cuda_vec_chunk(g, dt, &n), *S = cuda_stype(dt);
  if (!V) return false;
  fl_buf_t init = {0};
  for (int c = 0; c < g->vec_w / n; c++) {
    cg_line(out, depth, "const %s %s_v%d = *(const %s *)(b%d + %s + %d);", V, arr, c, V, buf, off, c * n);
    static const char xyzw[] = "xyzw";
    for (int j = 0; j < n; j++) {
      const char *sep = c || j ? ", " : "";
      if (n == 8) /* little-endian: the lower half holds the lower element */
        fl_buf_printf(&init, "%s(%s)(%s_v%d.%c%s)", sep, S, arr, c, xyzw[j / 2], j % 2 ? " >> 16" : "");
      else
        fl_buf_printf(&init, "%s%s_v%d.%c", sep, arr, c, xyzw[j]);
    }
  }
  cg_line(out, depth, "const %s %s[%d] = {%s};", S, arr, g->vec_w, init.data);
  fl_buf_free(&init);
  return true;
}

/* Vector stores go through __stcg: written as `*(float4 *)p = v`, a store
 * of values just loaded (a permuted copy) reached the PTX as four scalar
 * stores (NVRTC 13.0), where __stcg stays one st.global.cg.v4 (L2 only: an
 * output is not read back by the kernel). $FLAGOS_CODEGEN_VEC_STCG=0 writes the
 * plain form, for measurements. */
static bool vec_stcg(void) {
  const char *env = getenv("FLAGOS_CODEGEN_VEC_STCG");
  return !(env && *env && atoi(env) == 0);
}

static bool cuda_vec_store(cg_t *g, int buf, const char *off, const char *arr, int depth, fl_buf_t *out) {
  int n;
  const char *V = cuda_vec_chunk(g, g->k->bufs[buf].dtype, &n);
  if (!V) return false;
  bool cg = vec_stcg();
  for (int c = 0; c < g->vec_w / n; c++) {
    int b = c * n;
    const char *at = cg_fmt(g, "(%s *)(b%d + %s + %d)", n == 8 ? "uint4" : V, buf, off, b), *val;
    if (n == 8)
      /* through uint16_t, so that a negative int16 fills only its own half */
      val = cg_fmt(g,
                   "make_uint4((uint16_t)%s[%d] | ((uint32_t)%s[%d] << 16), (uint16_t)%s[%d] | ((uint32_t)%s[%d] << "
                   "16), (uint16_t)%s[%d] | ((uint32_t)%s[%d] << 16), (uint16_t)%s[%d] | ((uint32_t)%s[%d] << 16))",
                   arr, b, arr, b + 1, arr, b + 2, arr, b + 3, arr, b + 4, arr, b + 5, arr, b + 6, arr, b + 7);
    else
      val = cg_fmt(g, "make_%s(%s[%d], %s[%d], %s[%d], %s[%d])", V, arr, b, arr, b + 1, arr, b + 2, arr, b + 3);
    if (cg) cg_line(out, depth, "__stcg(%s, %s);", at, val);
    else cg_line(out, depth, "*%s = %s;", at, val);
  }
  return true;
}

static const char *cuda_vec_aligned(cg_t *g, int buf) {
  int n;
  const char *V = cuda_vec_chunk(g, g->k->bufs[buf].dtype, &n);
  int bytes = !V ? 1 : strstr(V, "char") ? 4 : strstr(V, "short") ? 8 : 16;
  return cg_fmt(g, "((uint64_t)(const void *)b%d & %d) == 0", buf, bytes - 1);
}

/* Rows up to CG_CUDA_WARP_ROW are shared by a warp (a block holds several
 * rows); longer ones by the whole block. */

static void cuda_coop_setup(cg_t *g, fl_buf_t *out) {
  if (g->coop_rowsz)
    cg_line(out, 1, "const int fo_wide = (%s) > %d;", g->coop_rowsz, CG_CUDA_WARP_ROW);
  else
    cg_line(out, 1, "const int fo_wide = 1;");
  cg_line(out, 1, "const int fo_gt = fo_wide ? (int)threadIdx.x : (int)(threadIdx.x & 31);");
  /* blocks have exactly the kernel's bound of threads (the ABI; CG_CUDA_BLOCK
   * unless FLAGOS_CODEGEN_WIDE_BLOCK widened it): a constant group size
   * lets the row cache's slots address memory with immediate offsets (a 4k
   * softmax row: 80 registers with blockDim.x here, 40 with the constant) */
  cg_line(out, 1, "const int fo_gw = fo_wide ? %d : 32;", kernel_block(g));
  cg_line(out, 1, "const int64_t fo_row0 = fo_wide ? (int64_t)blockIdx.x : (int64_t)blockIdx.x * (blockDim.x >> 5) + "
                  "(threadIdx.x >> 5);");
  cg_line(out, 1, "const int64_t fo_rstep = fo_wide ? (int64_t)gridDim.x : (int64_t)gridDim.x * (blockDim.x >> 5);");
}

/* Butterfly over the warp (every lane ends with the same value: the combining
 * steps are commutative), then, for a block-wide row, over the warps' partial
 * results in shared memory, read back by every thread in the same order. */
static void cuda_coop_combine(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, int depth, fl_buf_t *out) {
  const char *T = cg_ctype(g, dt), *sh = cg_fmt(g, "fo_sh%d", g->n_coop);
  static const cg_warp_names_t names = {"threadIdx.x", "blockDim.x", "__syncthreads();"};
  cg_line(&g->decls, 1, "__shared__ %s %s[32];", T, sh);
  cg_coop_warp_combine(g, op, dt, acc, cg_fmt(g, "fo_shfl_xor(%s, fo_o)", acc), sh, "fo_wide", &names, depth, out);
}

/* Row elements a thread keeps in registers at most (the row cache): up to 64
 * floats a thread keep two 256-thread blocks on an SM (about 128 registers);
 * a row that needs more takes up to 128 (about 200 registers, one block on an
 * SM): on an H100 a 32k-float softmax row ran at 81% of copy bandwidth so, and
 * at 61% with 64 slots, whose other half of the row is read three times. A
 * longer row's rest is read again.
 * The shared-memory tier (64 register slots, the rest of the row in dynamic
 * shared memory, two blocks on an SM) is off: that 32k row ran at 1.02-1.06 ms
 * with 56 to 64 KB a block against 0.86 ms with 128 register slots (H100, one
 * call). $FLAGOS_CODEGEN_ROW_SHARED=BYTES turns it on, for measurements. */
#define CG_CUDA_ROW_SLOTS_LONG 128
#define CG_CUDA_ROW_SHARED 0

/* fo_rsm is the dynamic shared memory; the launch's size is read back from
 * %dynamic_smem_size, so a launcher that gives less (a driver without
 * cuFuncSetAttribute, a device with less shared memory) still runs correctly. */
static void cuda_row_shared_decl(cg_t *g, fl_buf_t *out) {
  cg_line(out, 1, "extern __shared__ __align__(16) unsigned char fo_rsm[];");
  cg_line(out, 1, "uint32_t fo_rsm_have;");
  cg_line(out, 1, "asm(\"mov.u32 %%0, %%%%dynamic_smem_size;\" : \"=r\"(fo_rsm_have));");
  cg_line(out, 1, "const int fo_rsm_ok = fo_rsm_have >= %du;", g->rc_smem);
}

static const cg_coop_shared_t cuda_row_shared = {CG_CUDA_ROW_SHARED, CG_CUDA_BLOCK, "(int)threadIdx.x",
                                                 cuda_row_shared_decl};

static int cuda_coop_slots(int64_t row, int arrays) {
  int64_t w = row > CG_CUDA_WARP_ROW ? row_block(row, arrays) : 32, k = (row + w - 1) / w, cap = CG_CUDA_ROW_SLOTS / arrays;
  if (k > cap && cg_row_shared_bytes(&cuda_row_shared) == 0) cap = CG_CUDA_ROW_SLOTS_LONG / arrays;
  return (int)(k < cap ? k : cap);
}

/* The tiled form's names; the group size is the constant CG_CUDA_BLOCK (blocks
 * have exactly that many threads), so each pass unrolls into independent loads. */
#define CG_XSTR(x) #x
#define CG_STR(x) CG_XSTR(x)
static const cg_tile_names_t cuda_tile = {"(int)threadIdx.x",  CG_STR(CG_CUDA_BLOCK), "(int64_t)blockIdx.x",
                                          "(int64_t)gridDim.x", "__syncthreads();",    "__shared__"};

static const cg_dialect_t cg_dialect_cuda = {
    .name = "CUDA C",
    .prelude = cg_cuda_head,
    .ctype = cuda_ctype,
    .stype = cuda_stype,
    .f32_math_suffix = "f",
    .kernel_begin = cuda_kernel_begin,
    .kernel_end = cuda_kernel_end,
    .main_loop = cuda_main_loop,
    .reduce_pragma = NULL,
    .reduce_parallel = NULL,
    .vec_load = cuda_vec_load,
    .vec_store = cuda_vec_store,
    .vec_aligned = cuda_vec_aligned,
    .vec_wide = true,
    .coop_setup = cuda_coop_setup,
    .coop_combine = cuda_coop_combine,
    .coop_slots = cuda_coop_slots,
    .coop_shared = &cuda_row_shared,
    .coop_vec = 4,
    .assume_aligned = "__builtin_assume_aligned",
    .tile = &cuda_tile,
    .tile_vec = 4,
};

static bool is_identifier(const char *s) {
  if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  return true;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(kir_kernel_t *const *)a)->name, (*(kir_kernel_t *const *)b)->name);
}

/* Whether the C prelude's function whose definition starts at q (its name
 * followed by '(' on that line) is one cg_cuda_head defines instead. */
static bool replaced_helper(const char *q) {
  const char *paren = strchr(q, '('), *nl = strchr(q, '\n');
  if (!paren || (nl && nl < paren)) return false;
  const char *b = paren;
  while (b > q && (b[-1] == '_' || (b[-1] >= 'a' && b[-1] <= 'z') || (b[-1] >= '0' && b[-1] <= '9'))) b--;
  for (size_t i = 0; i < FL_ARRAY_LEN(cg_cuda_hw_cvt); i++)
    if (strlen(cg_cuda_hw_cvt[i]) == (size_t)(paren - b) && !strncmp(b, cg_cuda_hw_cvt[i], (size_t)(paren - b)))
      return true;
  return false;
}

/* The C prelude's helpers as device functions: one definition of every
 * conversion for both targets, but for those cg_cuda_head defines with the
 * hardware's instructions (a one-line definition, or one ending at a "}" line). */
static void put_device_prelude(fl_buf_t *out) {
  static const char from[] = "static inline ", to[] = "static __device__ __forceinline__ ";
  const char *p = cg_c_prelude;
  for (const char *q; (q = strstr(p, from));) {
    fl_buf_append(out, p, (size_t)(q - p));
    if (replaced_helper(q)) {
      const char *nl = strchr(q, '\n'), *end = nl && nl > q && nl[-1] == '}' ? nl : strstr(q, "\n}\n");
      p = end ? end + (*end == '\n' && end != nl ? 3 : 1) : q + strlen(q);
      continue;
    }
    fl_buf_puts(out, to);
    p = q + sizeof from - 1;
  }
  fl_buf_puts(out, p);
}

flagos_status_t cgen_cuda_emit(kir_kernel_t *const *kernels, int n, fl_buf_t *out) {
  if (n < 0 || (n > 0 && !kernels)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cgen_cuda_emit: bad kernel list");
  for (int i = 0; i < n; i++) {
    const kir_kernel_t *k = kernels[i];
    const char *nm = k->name;
    if (!is_identifier(nm)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kernel name '%s' is not a C identifier", nm ? nm : "");
    if (strncmp(nm, "fo_", 3) == 0)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kernel name '%s' uses the prefix reserved for helpers (fo_)", nm);
    if (k->n_bufs + k->n_syms > CG_CUDA_MAX_PARAMS)
      return FL_ERR(FLAGOS_ERR_UNSUPPORTED,
                    "kernel '%s': %d buffers and %d symbols exceed the %d kernel parameters CUDA can pass", nm,
                    k->n_bufs, k->n_syms, CG_CUDA_MAX_PARAMS);
  }
  if (n > 1) {
    kir_kernel_t **sorted = malloc(sizeof(*sorted) * (size_t)n);
    if (!sorted) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(sorted, kernels, sizeof(*sorted) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(*sorted), cmp_name);
    for (int i = 1; i < n; i++)
      if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
        flagos_status_t st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "two kernels are named '%s'", sorted[i]->name);
        free(sorted);
        return st;
      }
    free(sorted);
  }
  fl_buf_puts(out, "/* Generated by FlagOS (CUDA C dialect). */\n");
  fl_buf_puts(out, cg_dialect_cuda.prelude);
  put_device_prelude(out);
  fl_buf_putc(out, '\n');
  for (int i = 0; i < n; i++) FL_TRY(cg_emit_kernel(&cg_dialect_cuda, kernels[i], out));
  return NULL;
}
