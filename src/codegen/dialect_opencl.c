/* The OpenCL C dialect: one __kernel per kernel,
 *     __kernel void <name>(__global T *b0, ..., __global const long *fo_syms)
 * taking every kernel buffer in order (used or not) and then the symbol array,
 * which a kernel that reads no symbol goes without (on NVIDIA's OpenCL each
 * buffer argument costs about 0.5 us of host time a launch).
 *
 * One work-item per point: the main loop levels become one loop over the
 * linear point index, striding by the global size (so any NDRange covers the
 * space; the host launches about `work` work-items), with the loop variables
 * recovered by division; where loads and stores run along the innermost level a
 * work-item takes 4 points (one vector access), 8 in kernels with 16-bit buffers. Kernels dominated by reductions
 * over rows take the cooperative form (emit_coop.c): a work-group per row,
 * combining through a tree over local memory, or, where the program is built
 * with FO_WARP32 (the opencl plugin's define for NVIDIA GPUs), a warp per row
 * up to 1024 points combining through PTX shuffles, and a group per longer
 * row combining the warps' results in local memory. A reduction hoisted to an outer
 * level that the cooperative form does not share makes that level the one
 * spread over work-items (a work-item per row). Serial kernels, and rank-0
 * kernels (one point), declare reqd_work_group_size(1,1,1) and run on work-item
 * 0 only, with the main levels as plain nested loops; the host reads that
 * attribute back (CL_KERNEL_COMPILE_WORK_GROUP_SIZE) and launches one item.
 *
 * A program whose kernels hold f64 data starts with "//! requires cl_khr_fp64",
 * which the opencl backend checks against the device before building. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cg_internal.h"
#include "codegen/cgen.h"

#include "codegen/prelude_opencl.inc"

static const char *ocl_ctype(flagos_dtype_t dt) {
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

static const char *ocl_stype(flagos_dtype_t dt) {
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
  default: return ocl_ctype(dt);
  }
}

/* Bytes of statements main level `level` (-1: the function body) holds before
 * its nested level, as far as emission has got when level `cur` is being wrapped:
 * levels are wrapped innermost first, and a block's pre_len is set just before its
 * nested level is appended to it. These statements are hoisted reductions. */
static size_t level_pre(cg_t *g, int level, int cur) {
  cg_block_t *b = level < 0 ? g->levels[0]->parent : g->levels[level];
  return level + 1 >= cur ? b->pre_len : b->buf.len;
}

/* One work-item runs the whole kernel: serial and rank-0 kernels, and kernels
 * with a reduction hoisted to function level, which every work-item would
 * otherwise repeat (n points times an O(n) reduction). */
static bool single_item(cg_t *g, int cur) {
  const kir_kernel_t *k = g->k;
  if (g->coop_level != CG_NO_COOP) return false;
  return k->serial || k->rank == 0 || level_pre(g, -1, cur) > 0;
}

/* The main levels 0..split(g) are spread over work-items; the deeper ones are
 * loops inside each. The split is the outermost level holding a hoisted
 * reduction (softmax's row max and sum): a work-item per row computes them once,
 * where a work-item per point would repeat them for every point of the row. */
static int split_level(cg_t *g, int cur) {
  for (int l = 0; l < g->k->rank - 1; l++)
    if (level_pre(g, l, cur) > 0) return l;
  return g->k->rank - 1;
}

static void put_comment_name(fl_buf_t *b, const char *s) {
  for (int i = 0; s && s[i] && i < 48; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || c == ':';
    fl_buf_putc(b, ok ? c : '?');
  }
}

static void ocl_kernel_begin(cg_t *g, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  fl_buf_printf(out, "__kernel %svoid %s(",
                single_item(g, 0) ? "__attribute__((reqd_work_group_size(1, 1, 1))) " : "", k->name);
  bool syms = false;
  for (int i = 0; i < k->n_syms; i++) syms = syms || g->sym_used[i];
  for (int i = 0; i < k->n_bufs; i++) {
    const char *c = g->buf_stored[i] ? "" : "const ";
    fl_buf_printf(out, "\n    __global %s%s *restrict b%d%s /* ", c, ocl_stype(k->bufs[i].dtype), i,
                  i + 1 < k->n_bufs || syms ? "," : "");
    put_comment_name(out, k->bufs[i].name);
    fl_buf_printf(out, " %s%s */", flagos_dtype_name(k->bufs[i].dtype),
                  g->buf_loaded[i] || g->buf_stored[i] ? "" : ", unused");
  }
  fl_buf_puts(out, syms ? "\n    __global const int64_t *restrict fo_syms) {\n" : ") {\n");
  if (single_item(g, 0)) cg_line(out, 1, "if (get_global_id(0) != 0) return;");
  for (int i = 0; i < k->n_syms; i++)
    if (g->sym_used[i]) cg_line(out, 1, "const int64_t S%d = fo_syms[%d];", i, i);
}

static void ocl_kernel_end(cg_t *g, fl_buf_t *out) {
  FL_UNUSED(g);
  fl_buf_puts(out, "}\n\n");
}

static void put_body(cg_t *g, cg_block_t *blk, int depth, fl_buf_t *out) {
  if (g->vec && blk->level == g->k->rank - 1) cg_vec_point(g, blk, depth + 1, out);
  else if (blk->buf.len) fl_buf_append(out, blk->buf.data, blk->buf.len);
}

static void ocl_main_loop(cg_t *g, cg_block_t *blk, fl_buf_t *out) {
  int lv = blk->level, depth = blk->parent->depth;
  int split = single_item(g, lv) ? -1 : split_level(g, lv);
  if (lv > split) { /* a loop inside the work-item */
    int v = blk->var;
    cg_line(out, depth, "for (int64_t v%d = 0; v%d < E%d; v%d++) {", v, v, lv, v);
    if (blk->buf.len) fl_buf_append(out, blk->buf.data, blk->buf.len);
    cg_line(out, depth, "}");
    return;
  }
  if (lv > 0) { /* its variable was recovered at level 0 */
    cg_line(out, depth, "{");
    put_body(g, blk, depth, out);
    cg_line(out, depth, "}");
    return;
  }
  /* in the vector form (split is then the innermost level) a work-item takes
   * vec_w (4 or 8) points of the innermost level, from fo_vb */
  bool vec = g->vec;
  fl_buf_t n = {0};
  for (int i = 0; i <= split; i++) {
    if (vec && i == split) fl_buf_printf(&n, "%s(E%d / %d)", i ? " * " : "", i, g->vec_w);
    else fl_buf_printf(&n, "%sE%d", i ? " * " : "", i);
  }
  cg_line(out, depth, "const int64_t fo_n = %s;", n.data ? n.data : "1");
  fl_buf_free(&n);
  cg_line(out, depth, "for (int64_t fo_p = (int64_t)get_global_id(0); fo_p < fo_n; fo_p += (int64_t)get_global_size(0)) {");
  if (split == 0) {
    if (vec) cg_line(out, depth + 1, "const int64_t fo_vb = fo_p * %d;", g->vec_w);
    else cg_line(out, depth + 1, "const int64_t v%d = fo_p;", g->levels[0]->var);
  } else {
    /* 64-bit division is slow on GPUs (emulated): spaces below 2^32 points
     * (the same branch for every work-item) divide in 32 bits */
    fl_buf_t decl = {0};
    for (int i = 0; i <= split; i++)
      if (vec && i == split) fl_buf_puts(&decl, ", fo_vb");
      else fl_buf_printf(&decl, "%sv%d", i ? ", " : "", g->levels[i]->var);
    cg_line(out, depth + 1, "int64_t %s;", decl.data ? decl.data : "fo_unused");
    fl_buf_free(&decl);
    for (int wide = 0; wide < 2; wide++) {
      const char *T = wide ? "int64_t" : "uint32_t";
      cg_line(out, depth + 1, wide ? "} else {" : "if (fo_n <= (int64_t)UINT32_MAX) {");
      cg_line(out, depth + 2, "%s fo_q = (%s)fo_p;", T, T);
      for (int i = split; i > 0; i--) {
        if (vec && i == split) {
          cg_line(out, depth + 2, "fo_vb = (int64_t)(fo_q %% (%s)(E%d / %d)) * %d;", T, i, g->vec_w, g->vec_w);
          cg_line(out, depth + 2, "fo_q /= (%s)(E%d / %d);", T, i, g->vec_w);
          continue;
        }
        cg_line(out, depth + 2, "v%d = fo_q %% (%s)E%d;", g->levels[i]->var, T, i);
        cg_line(out, depth + 2, "fo_q /= (%s)E%d;", T, i);
      }
      cg_line(out, depth + 2, "v%d = fo_q;", g->levels[0]->var);
    }
    cg_line(out, depth + 1, "}");
  }
  put_body(g, blk, depth, out);
  cg_line(out, depth, "}");
}

/* Through the prelude's FO_VLD/FO_VST (FO_VLDW/FO_VSTW): one access of the
 * vector's alignment (vloadN/vstoreN where the device's buffers may start on
 * less). Narrow floats are stored as bits. Vectors of 1- and 2-byte elements
 * move as 32-bit words (uint, uint2, uint4: 8 halves in one 16-byte access),
 * each element shifted out of or into its word, as in the CUDA dialect: a
 * vector of ushort reached NVIDIA's PTX as 8-byte pieces. */
static const char *ocl_vec_type(flagos_dtype_t dt) { return cg_vec_elem(ocl_stype(dt)); }

/* The 32-bit words of a vector of w elements of type V (NULL for 4-byte
 * elements, which move as V itself); *per: elements a word, *ue: the unsigned
 * element type. */
static const char *ocl_vec_words(const char *V, int w, int *per, const char **ue) {
  bool b16 = strstr(V, "short") != NULL, b8 = !b16 && strstr(V, "char") != NULL;
  if (!b16 && !b8) return NULL;
  *per = b16 ? 2 : 4;
  *ue = b16 ? "ushort" : "uchar";
  int n = w / *per;
  return n == 1 ? "uint" : n == 2 ? "uint2" : "uint4";
}

static bool ocl_vec_load(cg_t *g, int buf, const char *off, const char *arr, int depth, fl_buf_t *out) {
  flagos_dtype_t dt = g->k->bufs[buf].dtype;
  const char *V = ocl_vec_type(dt), *S = ocl_stype(dt), *ue;
  if (!V) return false;
  int w = g->vec_w, per;
  const char *W = ocl_vec_words(V, w, &per, &ue);
  fl_buf_t init = {0};
  if (!W) {
    cg_line(out, depth, "const %s%d %s_v = FO_VLD(%s%d, %d, b%d + %s);", V, w, arr, V, w, w, buf, off);
    for (int j = 0; j < w; j++) fl_buf_printf(&init, "%s%s_v.s%d", j ? ", " : "", arr, j);
  } else {
    cg_line(out, depth, "const %s %s_v = FO_VLDW(%s, %s, %d, b%d + %s);", W, arr, W, ue, w, buf, off);
    bool one = w == per; /* a single uint: no components */
    for (int j = 0; j < w; j++)
      fl_buf_printf(&init, "%s(%s)(%s_v%s%s >> %d)", j ? ", " : "", S, arr, one ? "" : ".s",
                    one ? "" : cg_fmt(g, "%d", j / per), 32 / per * (j % per));
  }
  cg_line(out, depth, "const %s %s[%d] = {%s};", S, arr, w, init.data);
  fl_buf_free(&init);
  return true;
}

static bool ocl_vec_store(cg_t *g, int buf, const char *off, const char *arr, int depth, fl_buf_t *out) {
  const char *V = ocl_vec_type(g->k->bufs[buf].dtype), *ue;
  if (!V) return false;
  int w = g->vec_w, per;
  const char *W = ocl_vec_words(V, w, &per, &ue);
  fl_buf_t v = {0};
  if (!W) {
    for (int j = 0; j < w; j++) fl_buf_printf(&v, "%s%s[%d]", j ? ", " : "", arr, j);
    cg_line(out, depth, "FO_VST(%s%d, %d, b%d + %s, (%s%d)(%s));", V, w, w, buf, off, V, w, v.data);
  } else {
    /* each element through its unsigned type, so that a negative one fills only its own bits */
    for (int j = 0; j < w; j++)
      fl_buf_printf(&v, "%s(uint)(%s)%s[%d] << %d", j % per ? " | " : j ? ", " : "", ue, arr, j, 32 / per * (j % per));
    cg_line(out, depth, "FO_VSTW(%s, %s, %d, b%d + %s, (%s)(%s));", W, ue, w, buf, off, W, v.data);
  }
  fl_buf_free(&v);
  return true;
}

/* Work-groups sharing a row have at most this many work-items (the size of
 * their local arrays; the plugin launches them so). */
#define CG_OCL_GROUP_MAX 256
/* Rows up to this many points are shared by a warp where the device has warps
 * of 32 (FO_WARP32: the plugin defines it for NVIDIA GPUs), as in the CUDA
 * dialect: a group holds several rows and combines with shuffles, no barrier. */
#define CG_OCL_WARP_ROW 1024

/* A work-group per row; with FO_WARP32, a warp per row for rows up to
 * CG_OCL_WARP_ROW (fo_team). The plugin launches such kernels in groups of
 * whole warps on those devices, so on a row of known size fo_team and fo_gw
 * are constants and the row cache's guards vanish (as in the CUDA dialect).
 * fo_team is the same for every work-item of a group: barriers stay uniform. */
static void ocl_coop_setup(cg_t *g, fl_buf_t *out) {
  cg_line(out, 0, "#ifdef FO_WARP32");
  if (g->coop_rowsz)
    cg_line(out, 1, "const int fo_team = (%s) <= %d;", g->coop_rowsz, CG_OCL_WARP_ROW);
  else
    cg_line(out, 1, "const int fo_team = 0;");
  cg_line(out, 0, "#else");
  cg_line(out, 1, "const int fo_team = 0;");
  cg_line(out, 0, "#endif");
  cg_line(out, 1, "const int fo_gt = fo_team ? (int)(get_local_id(0) & 31) : (int)get_local_id(0);");
  cg_line(out, 1, "const int fo_gw = fo_team ? 32 : (int)get_local_size(0);");
  cg_line(out, 1, "const int64_t fo_row0 = fo_team ? (int64_t)get_group_id(0) * (int64_t)(get_local_size(0) >> 5) + "
                  "(int64_t)(get_local_id(0) >> 5) : (int64_t)get_group_id(0);");
  cg_line(out, 1, "const int64_t fo_rstep = (int64_t)get_num_groups(0) * (fo_team ? (int64_t)(get_local_size(0) >> 5) : 1);");
  cg_line(out, 0, "#ifndef FO_WARP32");
  cg_line(out, 1, "int fo_p2 = 1;");
  cg_line(out, 1, "while (fo_p2 < fo_gw) fo_p2 <<= 1;");
  cg_line(out, 0, "#endif");
}

/* A value of C type T from lane (own ^ fo_o) of the warp. */
static const char *ocl_shfl(cg_t *g, const char *T, const char *v) {
  if (!strcmp(T, "float")) return cg_fmt(g, "as_float(fo_shfl_b32(as_uint(%s), fo_o))", v);
  if (!strcmp(T, "double")) return cg_fmt(g, "fo_shfl_f64(%s, fo_o)", v);
  if (strstr(T, "64")) return cg_fmt(g, "(%s)fo_shfl_b64((ulong)(%s), fo_o)", T, v);
  return cg_fmt(g, "(%s)fo_shfl_b32((uint)(%s), fo_o)", T, v);
}

/* With warps (FO_WARP32): the shared warp step (emit_coop.c), the warps'
 * results combined for a group-wide row. Without: a tree over local memory
 * (OpenCL 1.2 has no group reductions), for any group size up to
 * CG_OCL_GROUP_MAX; every work-item reads the root. */
static void ocl_coop_combine(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, int depth, fl_buf_t *out) {
  static const cg_warp_names_t names = {"get_local_id(0)", "get_local_size(0)", "barrier(CLK_LOCAL_MEM_FENCE);"};
  const char *T = cg_ctype(g, dt), *sh = cg_fmt(g, "fo_sh%d", g->n_coop);
  cg_line(&g->decls, 1, "__local %s %s[%d];", T, sh, CG_OCL_GROUP_MAX);
  cg_line(out, 0, "#ifdef FO_WARP32");
  cg_coop_warp_combine(g, op, dt, acc, ocl_shfl(g, T, acc), sh, "!fo_team", &names, depth, out);
  cg_line(out, 0, "#else");
  cg_line(out, depth, "%s[fo_gt] = %s;", sh, acc);
  cg_line(out, depth, "barrier(CLK_LOCAL_MEM_FENCE);");
  cg_line(out, depth, "for (int fo_s = fo_p2 >> 1; fo_s > 0; fo_s >>= 1) {");
  const char *a = cg_fmt(g, "%s[fo_gt]", sh);
  cg_line(out, depth + 1, "if (fo_gt < fo_s && fo_gt + fo_s < fo_gw) %s = %s;", a,
          cg_reduce_step(g, op, dt, a, cg_fmt(g, "%s[fo_gt + fo_s]", sh)));
  cg_line(out, depth + 1, "barrier(CLK_LOCAL_MEM_FENCE);");
  cg_line(out, depth, "}");
  cg_line(out, depth, "%s = %s[0];", acc, sh);
  cg_line(out, depth, "barrier(CLK_LOCAL_MEM_FENCE);");
  cg_line(out, 0, "#endif");
}

/* The row cache: slots sized for a warp on rows up to CG_OCL_WARP_ROW, else
 * for groups of CG_OCL_GROUP_MAX (what the plugin gives GPUs; smaller groups,
 * and devices without warps on short rows, use fewer and read the rest of a
 * row again), at most 32 a work-item. */
static int ocl_coop_slots(int64_t row, int arrays) {
  int64_t w = row <= CG_OCL_WARP_ROW ? 32 : CG_OCL_GROUP_MAX;
  int64_t k = (row + w - 1) / w, cap = 32 / arrays;
  return (int)(k < cap ? k : cap);
}

static const cg_tile_names_t ocl_tile = {"(int)get_local_id(0)",      "(int)get_local_size(0)",
                                         "(int64_t)get_group_id(0)",  "(int64_t)get_num_groups(0)",
                                         "barrier(CLK_LOCAL_MEM_FENCE);", "__local"};

static const cg_dialect_t cg_dialect_opencl = {
    .name = "OpenCL C",
    .prelude = cg_opencl_prelude,
    .ctype = ocl_ctype,
    .stype = ocl_stype,
    .f32_math_suffix = "", /* OpenCL's math built-ins are overloaded */
    .kernel_begin = ocl_kernel_begin,
    .kernel_end = ocl_kernel_end,
    .main_loop = ocl_main_loop,
    .reduce_pragma = NULL,
    .reduce_parallel = NULL,
    .vec_load = ocl_vec_load,
    .vec_store = ocl_vec_store,
    .vec_aligned = NULL,
    .vec_wide = true,
    .coop_setup = ocl_coop_setup,
    .coop_combine = ocl_coop_combine,
    .coop_slots = ocl_coop_slots,
    .tile = &ocl_tile,
};

/* ---- does a kernel compute in f64? (a DAG walk with a visited set) ---- */
typedef struct {
  const kir_expr_t **slot;
  size_t cap, n;
} seen_t;

static bool seen_add(seen_t *s, const kir_expr_t *e) {
  if ((s->n + 1) * 2 > s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 256;
    const kir_expr_t **ns = calloc(nc, sizeof(*ns));
    if (!ns) return false; /* out of memory: stop walking (the answer errs on "no f64") */
    for (size_t i = 0; i < s->cap; i++) {
      if (!s->slot[i]) continue;
      size_t j = ((uintptr_t)s->slot[i] >> 4) & (nc - 1);
      while (ns[j]) j = (j + 1) & (nc - 1);
      ns[j] = s->slot[i];
    }
    free(s->slot);
    s->slot = ns;
    s->cap = nc;
  }
  size_t j = ((uintptr_t)e >> 4) & (s->cap - 1);
  for (; s->slot[j]; j = (j + 1) & (s->cap - 1))
    if (s->slot[j] == e) return false;
  s->slot[j] = e;
  s->n++;
  return true;
}

static bool expr_uses_f64(seen_t *s, const kir_expr_t *e) {
  if (!e || !seen_add(s, e)) return false;
  if (e->dtype == FLAGOS_FLOAT64) return true;
  for (int i = 0; i < e->n; i++)
    if (expr_uses_f64(s, e->a[i])) return true;
  if (e->kind == KIR_REDUCE)
    for (int i = 0; i < e->nr; i++)
      if (expr_uses_f64(s, e->rext[i])) return true;
  return false;
}

static bool kernel_uses_f64(const kir_kernel_t *k) {
  for (int i = 0; i < k->n_bufs; i++)
    if (k->bufs[i].dtype == FLAGOS_FLOAT64) return true;
  seen_t s = {0};
  bool f64 = false;
  for (int i = 0; i < k->n_stores && !f64; i++) {
    const kir_store_t *st = &k->stores[i];
    f64 = expr_uses_f64(&s, st->value) || expr_uses_f64(&s, st->cond);
  }
  free(s.slot);
  return f64;
}

static bool is_identifier(const char *s) {
  if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  return true;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(kir_kernel_t *const *)a)->name, (*(kir_kernel_t *const *)b)->name);
}

flagos_status_t cgen_opencl_emit(kir_kernel_t *const *kernels, int n, fl_buf_t *out) {
  if (n < 0 || (n > 0 && !kernels)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cgen_opencl_emit: bad kernel list");
  bool f64 = false;
  for (int i = 0; i < n; i++) {
    const char *nm = kernels[i]->name;
    if (!is_identifier(nm)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kernel name '%s' is not a C identifier", nm ? nm : "");
    if (strncmp(nm, "fo_", 3) == 0)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "kernel name '%s' uses the prefix reserved for helpers (fo_)", nm);
    f64 = f64 || kernel_uses_f64(kernels[i]);
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
  fl_buf_puts(out, "/* Generated by FlagOS (OpenCL C dialect). */\n");
  if (f64) fl_buf_puts(out, "//! requires cl_khr_fp64\n");
  fl_buf_puts(out, cg_dialect_opencl.prelude);
  fl_buf_putc(out, '\n');
  for (int i = 0; i < n; i++) FL_TRY(cg_emit_kernel(&cg_dialect_opencl, kernels[i], out));
  return NULL;
}
