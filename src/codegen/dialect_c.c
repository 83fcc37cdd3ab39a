/* The C dialect: one exported function per kernel,
 *     void <name>(void *const *bufs, const int64_t *syms);
 * main loops as nested for loops, the outer ones shared among OpenMP threads
 * when the kernel is not serial and has enough work, the innermost one marked
 * `omp simd` (iterations are independent unless the kernel is serial, which is
 * exactly what simd asserts). */
#include <stdlib.h>
#include <string.h>

#include "codegen/cg_internal.h"
#include "codegen/cgen.h"

#include "codegen/prelude_c.inc"

/* Below this many units of work (points times per-point cost) a kernel runs on
 * the calling thread: waking a thread team costs a few microseconds. */
#define CG_C_PARALLEL_MIN_WORK 32768

static const char *c_ctype(flagos_dtype_t dt) {
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

static const char *c_stype(flagos_dtype_t dt) {
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
  default: return c_ctype(dt);
  }
}

/* Buffer names go into comments: keep them printable and comment-safe. */
static void put_comment_name(fl_buf_t *b, const char *s) {
  for (int i = 0; s && s[i] && i < 48; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || c == ':';
    fl_buf_putc(b, ok ? c : '?');
  }
}

static void c_kernel_begin(cg_t *g, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  fl_buf_printf(out, "void %s(void *const *bufs, const int64_t *syms) {\n", k->name);
  cg_line(out, 1, "(void)bufs;");
  cg_line(out, 1, "(void)syms;");
  for (int i = 0; i < k->n_bufs; i++) {
    if (!g->buf_loaded[i] && !g->buf_stored[i]) continue;
    const char *t = c_stype(k->bufs[i].dtype), *c = g->buf_stored[i] ? "" : "const ";
    fl_buf_printf(out, "  %s%s *restrict b%d = (%s%s *)bufs[%d]; /* ", c, t, i, c, t, i);
    put_comment_name(out, k->bufs[i].name);
    fl_buf_printf(out, " %s */\n", flagos_dtype_name(k->bufs[i].dtype));
  }
  for (int i = 0; i < k->n_syms; i++)
    if (g->sym_used[i]) cg_line(out, 1, "const int64_t S%d = syms[%d];", i, i);
}

static void c_kernel_end(cg_t *g, fl_buf_t *out) {
  FL_UNUSED(g);
  fl_buf_puts(out, "}\n\n");
}

static void c_main_loop(cg_t *g, cg_block_t *blk, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  int lv = blk->level, depth = blk->parent->depth, rank = k->rank;
  bool par = !k->serial, inner = lv == rank - 1;
  bool simd = par && inner && !g->point->has_loop;
  if (lv == 0 && par) {
    /* Collapse the perfectly nested outer loops; the innermost stays a plain
     * loop so that it vectorises. */
    int c = 1;
    while (c < rank - 1 && g->levels[c - 1]->pre_len == 0) c++;
    g->work_used = true;
    if (rank == 1)
      cg_line(out, depth, "#pragma omp parallel for%s if(parallel: fo_work >= %d)", simd ? " simd" : "",
              CG_C_PARALLEL_MIN_WORK);
    else if (c > 1)
      cg_line(out, depth, "#pragma omp parallel for collapse(%d) if(fo_work >= %d)", c, CG_C_PARALLEL_MIN_WORK);
    else
      cg_line(out, depth, "#pragma omp parallel for if(fo_work >= %d)", CG_C_PARALLEL_MIN_WORK);
  } else if (simd) {
    cg_line(out, depth, "#pragma omp simd");
  }
  int v = blk->var;
  cg_line(out, depth, "for (int64_t v%d = 0; v%d < E%d; v%d++) {", v, v, lv, v);
  if (blk->buf.len) fl_buf_append(out, blk->buf.data, blk->buf.len);
  cg_line(out, depth, "}");
}

/* The OpenMP reduction operator for a kernel-IR reduction, or NULL (float
 * min/max: OpenMP's combiners would drop NaNs). */
static const char *omp_reduction_op(kir_op_t op, flagos_dtype_t dt) {
  flagos_dtype_t c = kir_compute_dtype(dt);
  bool fl = c == FLAGOS_FLOAT32 || c == FLAGOS_FLOAT64, bl = c == FLAGOS_BOOL;
  switch (op) {
  case KIR_RSUM: return bl ? "|" : "+";
  case KIR_RPROD: return bl ? "&" : "*";
  case KIR_RANY: return "|";
  case KIR_RALL: return "&";
  case KIR_RMIN: return fl ? NULL : bl ? "&" : "min";
  case KIR_RMAX: return fl ? NULL : bl ? "|" : "max";
  default: return NULL;
  }
}

static bool c_reduce_parallel(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, bool simd, const char *work,
                              int depth, fl_buf_t *out) {
  FL_UNUSED(g);
  const char *r = omp_reduction_op(op, dt);
  if (!r) return false;
  cg_line(out, depth, "#pragma omp parallel for%s reduction(%s:%s) if(parallel: (%s) >= %d)", simd ? " simd" : "", r,
          acc, work, CG_C_PARALLEL_MIN_WORK);
  return true;
}

static void c_reduce_pragma(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, int depth, fl_buf_t *out) {
  FL_UNUSED(g);
  const char *r = omp_reduction_op(op, dt);
  if (r) cg_line(out, depth, "#pragma omp simd reduction(%s:%s)", r, acc);
}

const cg_dialect_t cg_dialect_c = {
    .name = "C",
    .prelude = cg_c_prelude,
    .ctype = c_ctype,
    .stype = c_stype,
    .f32_math_suffix = "f",
    .kernel_begin = c_kernel_begin,
    .kernel_end = c_kernel_end,
    .main_loop = c_main_loop,
    .reduce_pragma = c_reduce_pragma,
    .reduce_parallel = c_reduce_parallel,
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

flagos_status_t cgen_c_emit(kir_kernel_t *const *kernels, int n, fl_buf_t *out) {
  if (n < 0 || (n > 0 && !kernels)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cgen_c_emit: bad kernel list");
  for (int i = 0; i < n; i++) {
    const char *nm = kernels[i]->name;
    if (!is_identifier(nm)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kernel name '%s' is not a C identifier", nm ? nm : "");
    if (strncmp(nm, "fo_", 3) == 0)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kernel name '%s' uses the prefix reserved for helpers (fo_)", nm);
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
  fl_buf_puts(out, "/* Generated by FlagOS (C dialect). */\n#include <math.h>\n#include <stdint.h>\n#include <string.h>\n");
  fl_buf_puts(out, cg_dialect_c.prelude);
  fl_buf_putc(out, '\n');
  for (int i = 0; i < n; i++) FL_TRY(cg_emit_kernel(&cg_dialect_c, kernels[i], out));
  return NULL;
}
