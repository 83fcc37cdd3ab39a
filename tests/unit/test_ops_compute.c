/* Values of the compute families (linalg, conv, pool, attention) on ONNX's
 * conformance models, independently of any code generator: every model made
 * only of these operators is imported and each node is lowered to kernel IR,
 * which a small reference interpreter (below) runs; graph outputs must match
 * ONNX's reference outputs. Each model runs three ways:
 *   static  - lowered with the model's static shapes, generic kernel bodies;
 *   blas    - the same, but kernels carrying a "gemm" library call run the call;
 *   dynamic - lowered with every graph input's dims unknown (so dims and params
 *             are runtime symbols), then run with the symbols the runtime shape
 *             rule produces.
 * FLAGOS_OPS_TEST_FILTER=<substring> restricts the models; FLAGOS_OPS_TEST_ANY=1
 * also runs models that use other families' operators (the *_expanded tests). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cgen.h"
#include "frontend/onnx/onnx_import.h"
#include "ops/ops.h"
#include "passes/passes.h"

extern const ops_def_t ops_family_linalg[], ops_family_conv[], ops_family_pool[], ops_family_attention[];

/* ------------------------------------------------------------------ */
/* Reference interpreter for kernel IR (docs: src/kernel/kir.h).       */

typedef struct ival {
  double f;
  int64_t i;
} ival_t;

typedef struct ibuf {
  flagos_dtype_t dt;
  int rank;
  int64_t dims[OPS_MAX_RANK];
  int64_t numel;
  unsigned char *data;
} ibuf_t;

typedef struct interp {
  const kir_kernel_t *k;
  ibuf_t **bufs;
  const int64_t *syms;
  int n_syms;
  int64_t env[256];
  char err[256];
} interp_t;

static bool fdt(flagos_dtype_t dt) { return flagos_dtype_is_float(dt) != 0; }

static double round_to(flagos_dtype_t dt, double x) {
  switch (dt) {
  case FLAGOS_FLOAT64: return x;
  case FLAGOS_FLOAT16: return fl_f16_to_f32(fl_f32_to_f16((float)x));
  case FLAGOS_BFLOAT16: return fl_bf16_to_f32(fl_f32_to_bf16((float)x));
  default: return (double)(float)x;
  }
}

/* Arithmetic results live in the compute dtype (f32 for narrow floats). */
static double round_ct(flagos_dtype_t dt, double x) { return dt == FLAGOS_FLOAT64 ? x : (double)(float)x; }

static int64_t norm_int(flagos_dtype_t dt, int64_t x) {
  switch (dt) {
  case FLAGOS_BOOL: return x != 0;
  case FLAGOS_INT8: return (int8_t)x;
  case FLAGOS_UINT8: return (uint8_t)x;
  case FLAGOS_INT16: return (int16_t)x;
  case FLAGOS_UINT16: return (uint16_t)x;
  case FLAGOS_INT32: return (int32_t)x;
  case FLAGOS_UINT32: return (uint32_t)x;
  case FLAGOS_INT4: return ((int64_t)((uint64_t)x << 60)) >> 60;
  case FLAGOS_UINT4: return x & 15;
  case FLAGOS_INT2: return ((int64_t)((uint64_t)x << 62)) >> 62;
  case FLAGOS_UINT2: return x & 3;
  default: return x;
  }
}

static void store_elem(ibuf_t *b, int64_t i, ival_t v) {
  unsigned char *p = b->data + (size_t)i * flagos_dtype_size(b->dt);
  switch (b->dt) {
  case FLAGOS_FLOAT32: *(float *)p = (float)v.f; break;
  case FLAGOS_FLOAT64: *(double *)p = v.f; break;
  case FLAGOS_FLOAT16: *(uint16_t *)p = fl_f32_to_f16((float)v.f); break;
  case FLAGOS_BFLOAT16: *(uint16_t *)p = fl_f32_to_bf16((float)v.f); break;
  case FLAGOS_BOOL:
  case FLAGOS_INT8:
  case FLAGOS_UINT8:
  case FLAGOS_INT4:
  case FLAGOS_UINT4:
  case FLAGOS_INT2:
  case FLAGOS_UINT2: *(uint8_t *)p = (uint8_t)norm_int(b->dt, v.i); break;
  case FLAGOS_INT16:
  case FLAGOS_UINT16: *(uint16_t *)p = (uint16_t)v.i; break;
  case FLAGOS_INT32:
  case FLAGOS_UINT32: *(uint32_t *)p = (uint32_t)v.i; break;
  default: *(int64_t *)p = v.i; break;
  }
}

static ival_t load_elem(const ibuf_t *b, int64_t i) {
  ival_t v = {0, 0};
  if (fdt(b->dt)) v.f = fl_load_as_double(b->dt, b->data, (size_t)i);
  else v.i = fl_load_as_int64(b->dt, b->data, (size_t)i);
  return v;
}

static ival_t eval(interp_t *in, const kir_expr_t *e);

static int64_t eval_i(interp_t *in, const kir_expr_t *e) { return eval(in, e).i; }

static void reduce_rec(interp_t *in, const kir_expr_t *e, int d, const int64_t *ext, ival_t *acc, bool *first) {
  if (in->err[0]) return;
  if (d == e->nr) {
    ival_t x = eval(in, e->a[0]);
    flagos_dtype_t dt = e->dtype;
    if (fdt(dt)) {
      double a = acc->f, y = x.f;
      switch (e->op) {
      case KIR_RSUM: a = a + y; break;
      case KIR_RPROD: a = a * y; break;
      case KIR_RMIN: a = (isnan(a) || isnan(y)) ? NAN : (y < a ? y : a); break;
      case KIR_RMAX: a = (isnan(a) || isnan(y)) ? NAN : (y > a ? y : a); break;
      default: snprintf(in->err, sizeof in->err, "bad float reduction"); return;
      }
      acc->f = round_ct(dt, a);
    } else {
      int64_t a = acc->i, y = x.i;
      switch (e->op) {
      case KIR_RSUM: a = a + y; break;
      case KIR_RPROD: a = a * y; break;
      case KIR_RMIN: a = y < a ? y : a; break;
      case KIR_RMAX: a = y > a ? y : a; break;
      case KIR_RANY: a = a || y; break;
      case KIR_RALL: a = a && y; break;
      default: break;
      }
      acc->i = norm_int(kir_compute_dtype(dt), a);
    }
    *first = false;
    return;
  }
  for (int64_t i = 0; i < ext[d]; i++) {
    in->env[e->rvars[d]] = i;
    reduce_rec(in, e, d + 1, ext, acc, first);
  }
}

static ival_t eval_unary(interp_t *in, const kir_expr_t *e, ival_t x) {
  ival_t r = {0, 0};
  flagos_dtype_t xt = e->a[0]->dtype;
  if (fdt(xt)) {
    double v = x.f, y;
    switch (e->op) {
    case KIR_NEG: y = -v; break;
    case KIR_ABS: y = fabs(v); break;
    case KIR_EXP: y = exp(v); break;
    case KIR_LOG: y = log(v); break;
    case KIR_SQRT: y = sqrt(v); break;
    case KIR_SIN: y = sin(v); break;
    case KIR_COS: y = cos(v); break;
    case KIR_TAN: y = tan(v); break;
    case KIR_ASIN: y = asin(v); break;
    case KIR_ACOS: y = acos(v); break;
    case KIR_ATAN: y = atan(v); break;
    case KIR_SINH: y = sinh(v); break;
    case KIR_COSH: y = cosh(v); break;
    case KIR_TANH: y = tanh(v); break;
    case KIR_ASINH: y = asinh(v); break;
    case KIR_ACOSH: y = acosh(v); break;
    case KIR_ATANH: y = atanh(v); break;
    case KIR_ERF: y = erf(v); break;
    case KIR_FLOOR: y = floor(v); break;
    case KIR_CEIL: y = ceil(v); break;
    case KIR_ROUND: y = nearbyint(v); break;
    case KIR_SIGN: y = v > 0 ? 1 : v < 0 ? -1 : v; break;
    case KIR_LOG1P: y = log1p(v); break;
    case KIR_EXPM1: y = expm1(v); break;
    case KIR_ISNAN: r.i = isnan(v); return r;
    case KIR_ISINF_POS: r.i = isinf(v) && v > 0; return r;
    case KIR_ISINF_NEG: r.i = isinf(v) && v < 0; return r;
    default: snprintf(in->err, sizeof in->err, "unary %s on float", kir_op_name(e->op)); return r;
    }
    r.f = round_ct(xt, y);
    return r;
  }
  int64_t v = x.i, y;
  switch (e->op) {
  case KIR_NEG: y = -v; break;
  case KIR_ABS: y = v < 0 ? -v : v; break;
  case KIR_NOT: y = !v; break;
  case KIR_BITNOT: y = ~v; break;
  case KIR_SIGN: y = v > 0 ? 1 : v < 0 ? -1 : 0; break;
  case KIR_ISNAN:
  case KIR_ISINF_POS:
  case KIR_ISINF_NEG: y = 0; break;
  default: snprintf(in->err, sizeof in->err, "unary %s on int", kir_op_name(e->op)); return r;
  }
  r.i = norm_int(kir_compute_dtype(e->dtype), y);
  return r;
}

static ival_t eval_binary(interp_t *in, const kir_expr_t *e, ival_t x, ival_t y) {
  ival_t r = {0, 0};
  flagos_dtype_t t = e->a[0]->dtype;
  if (fdt(t)) {
    double a = x.f, b = y.f, z;
    switch (e->op) {
    case KIR_ADD: z = a + b; break;
    case KIR_SUB: z = a - b; break;
    case KIR_MUL: z = a * b; break;
    case KIR_DIV: z = a / b; break;
    case KIR_MOD: z = fmod(a, b); break;
    case KIR_FLOORDIV: z = floor(a / b); break;
    case KIR_FLOORMOD: z = a - floor(a / b) * b; break;
    case KIR_POW: z = pow(a, b); break;
    case KIR_MIN: z = (isnan(a) || isnan(b)) ? NAN : (a < b ? a : b); break;
    case KIR_MAX: z = (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b); break;
    case KIR_ATAN2: z = atan2(a, b); break;
    case KIR_EQ: r.i = a == b; return r;
    case KIR_NE: r.i = a != b; return r;
    case KIR_LT: r.i = a < b; return r;
    case KIR_LE: r.i = a <= b; return r;
    case KIR_GT: r.i = a > b; return r;
    case KIR_GE: r.i = a >= b; return r;
    default: snprintf(in->err, sizeof in->err, "binary %s on float", kir_op_name(e->op)); return r;
    }
    r.f = round_ct(t, z);
    return r;
  }
  int64_t a = x.i, b = y.i, z;
  bool u = t == FLAGOS_UINT64;
  switch (e->op) {
  case KIR_ADD: z = (int64_t)((uint64_t)a + (uint64_t)b); break;
  case KIR_SUB: z = (int64_t)((uint64_t)a - (uint64_t)b); break;
  case KIR_MUL: z = (int64_t)((uint64_t)a * (uint64_t)b); break;
  case KIR_DIV:
  case KIR_MOD:
  case KIR_FLOORDIV:
  case KIR_FLOORMOD:
    if (b == 0) {
      snprintf(in->err, sizeof in->err, "integer %s by zero", kir_op_name(e->op));
      return r;
    }
    if (e->op == KIR_DIV) z = a / b;
    else if (e->op == KIR_MOD) z = a % b;
    else if (e->op == KIR_FLOORDIV) z = a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
    else {
      z = a % b;
      if (z != 0 && ((z < 0) != (b < 0))) z += b;
    }
    break;
  case KIR_MIN: z = u ? ((uint64_t)a < (uint64_t)b ? a : b) : (a < b ? a : b); break;
  case KIR_MAX: z = u ? ((uint64_t)a > (uint64_t)b ? a : b) : (a > b ? a : b); break;
  case KIR_POW: z = (int64_t)pow((double)a, (double)b); break;
  case KIR_EQ: r.i = a == b; return r;
  case KIR_NE: r.i = a != b; return r;
  case KIR_LT: r.i = u ? (uint64_t)a < (uint64_t)b : a < b; return r;
  case KIR_LE: r.i = u ? (uint64_t)a <= (uint64_t)b : a <= b; return r;
  case KIR_GT: r.i = u ? (uint64_t)a > (uint64_t)b : a > b; return r;
  case KIR_GE: r.i = u ? (uint64_t)a >= (uint64_t)b : a >= b; return r;
  case KIR_AND: z = a && b; break;
  case KIR_OR: z = a || b; break;
  case KIR_XOR: z = (a != 0) != (b != 0); break;
  case KIR_BITAND: z = a & b; break;
  case KIR_BITOR: z = a | b; break;
  case KIR_BITXOR: z = a ^ b; break;
  case KIR_SHL: z = b >= 64 ? 0 : (int64_t)((uint64_t)a << b); break;
  case KIR_SHR: z = b >= 64 ? 0 : (int64_t)((uint64_t)a >> b); break;
  default: snprintf(in->err, sizeof in->err, "binary %s on int", kir_op_name(e->op)); return r;
  }
  r.i = norm_int(kir_compute_dtype(e->dtype), z);
  return r;
}

static ival_t cast_val(flagos_dtype_t from, flagos_dtype_t to, ival_t x) {
  ival_t r = {0, 0};
  if (fdt(to)) {
    double v = fdt(from) ? x.f : from == FLAGOS_UINT64 ? (double)(uint64_t)x.i : (double)x.i;
    r.f = round_to(to, v);
    return r;
  }
  if (to == FLAGOS_BOOL) {
    r.i = fdt(from) ? x.f != 0 : x.i != 0;
    return r;
  }
  if (fdt(from)) {
    double v = x.f;
    if (isnan(v)) v = 0;
    if (v > 9.2e18) v = 9.2e18;
    if (v < -9.2e18) v = -9.2e18;
    r.i = norm_int(to, (int64_t)trunc(v));
  } else {
    r.i = norm_int(to, x.i);
  }
  return r;
}

static ival_t eval(interp_t *in, const kir_expr_t *e) {
  ival_t r = {0, 0};
  if (in->err[0]) return r;
  switch (e->kind) {
  case KIR_CONST:
    if (fdt(e->dtype)) r.f = e->cf;
    else r.i = e->ci;
    return r;
  case KIR_VAR: r.i = in->env[e->var]; return r;
  case KIR_SYM:
    if (e->sym < 0 || e->sym >= in->n_syms) {
      snprintf(in->err, sizeof in->err, "symbol %d out of range", e->sym);
      return r;
    }
    r.i = in->syms[e->sym];
    return r;
  case KIR_LOAD: {
    ibuf_t *b = in->bufs[e->buf];
    int64_t flat = 0;
    for (int d = 0; d < e->n; d++) {
      int64_t ix = eval_i(in, e->a[d]);
      if (ix < 0 || ix >= b->dims[d]) {
        snprintf(in->err, sizeof in->err, "load out of bounds: buffer %d (%s) dim %d index %lld of %lld", e->buf,
                 in->k->bufs[e->buf].name, d, (long long)ix, (long long)b->dims[d]);
        return r;
      }
      flat = flat * b->dims[d] + ix;
    }
    return load_elem(b, flat);
  }
  case KIR_UNARY: return eval_unary(in, e, eval(in, e->a[0]));
  case KIR_BINARY: {
    ival_t x = eval(in, e->a[0]), y = eval(in, e->a[1]);
    return eval_binary(in, e, x, y);
  }
  case KIR_SELECT: return eval_i(in, e->a[0]) ? eval(in, e->a[1]) : eval(in, e->a[2]);
  case KIR_CAST: return cast_val(e->a[0]->dtype, e->dtype, eval(in, e->a[0]));
  case KIR_BITCAST: {
    ival_t x = eval(in, e->a[0]);
    unsigned char tmp[8] = {0};
    ibuf_t b = {.dt = e->a[0]->dtype, .data = tmp};
    store_elem(&b, 0, x);
    b.dt = e->dtype;
    return load_elem(&b, 0);
  }
  case KIR_REDUCE: {
    int64_t ext[OPS_MAX_RANK * 2];
    for (int d = 0; d < e->nr; d++) ext[d] = eval_i(in, e->rext[d]);
    ival_t acc = {0, 0};
    bool f = fdt(e->dtype);
    switch (e->op) {
    case KIR_RSUM: break;
    case KIR_RPROD: acc.f = 1, acc.i = 1; break;
    case KIR_RMIN: acc.f = INFINITY, acc.i = INT64_MAX; break;
    case KIR_RMAX: acc.f = -INFINITY, acc.i = INT64_MIN; break;
    case KIR_RANY: acc.i = 0; break;
    case KIR_RALL: acc.i = 1; break;
    default: break;
    }
    if (!f && (e->op == KIR_RMIN || e->op == KIR_RMAX)) {
      /* identity of the integer type */
      flagos_dtype_t dt = e->dtype;
      bool mn = e->op == KIR_RMIN;
      if (dt == FLAGOS_UINT8 || dt == FLAGOS_UINT16 || dt == FLAGOS_UINT32 || dt == FLAGOS_BOOL)
        acc.i = mn ? (dt == FLAGOS_UINT8 || dt == FLAGOS_BOOL ? 255 : dt == FLAGOS_UINT16 ? 65535 : 4294967295LL) : 0;
      else if (dt == FLAGOS_INT8) acc.i = mn ? 127 : -128;
      else if (dt == FLAGOS_INT16) acc.i = mn ? 32767 : -32768;
      else if (dt == FLAGOS_INT32) acc.i = mn ? INT32_MAX : INT32_MIN;
    }
    bool first = true;
    reduce_rec(in, e, 0, ext, &acc, &first);
    return acc;
  }
  }
  return r;
}

static void run_gemm(interp_t *in, const kir_libcall_t *lc) {
  int64_t iv[9];
  for (int q = 0; q < 9; q++) iv[q] = eval_i(in, lc->ints[q]);
  ibuf_t *A = in->bufs[lc->bufs[0]], *B = in->bufs[lc->bufs[1]], *Y = in->bufs[lc->bufs[2]];
  int64_t batch = iv[0], M = iv[1], N = iv[2], K = iv[3], ta = iv[4], tb = iv[5];
  double alpha = lc->floats[0], beta = lc->floats[1];
  for (int64_t b = 0; b < batch; b++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) {
          int64_t ia = b * iv[6] + (ta ? k * M + m : m * K + k), ib = b * iv[7] + (tb ? n * K + k : k * N + n);
          if (ia >= A->numel || ib >= B->numel) {
            snprintf(in->err, sizeof in->err, "gemm reads out of bounds");
            return;
          }
          acc += load_elem(A, ia).f * load_elem(B, ib).f;
        }
        int64_t iy = b * iv[8] + m * N + n;
        if (iy >= Y->numel) {
          snprintf(in->err, sizeof in->err, "gemm writes out of bounds");
          return;
        }
        ival_t v = {alpha * acc + (beta != 0 ? beta * load_elem(Y, iy).f : 0), 0};
        store_elem(Y, iy, v);
      }
}

static bool run_kernel(const kir_kernel_t *k, ibuf_t **bufs, const int64_t *syms, int n_syms, bool use_lib,
                       char *err, size_t errlen) {
  static interp_t in;
  memset(&in, 0, sizeof in);
  in.k = k;
  in.bufs = bufs;
  in.syms = syms;
  in.n_syms = n_syms;
  for (int b = 0; b < k->n_bufs; b++) {
    for (int d = 0; d < k->bufs[b].rank; d++) {
      int64_t v = eval_i(&in, k->bufs[b].dims[d]);
      if (v != bufs[b]->dims[d]) {
        snprintf(err, errlen, "kernel %s buffer %s dim %d is %lld, bound tensor has %lld", k->name, k->bufs[b].name, d,
                 (long long)v, (long long)bufs[b]->dims[d]);
        return false;
      }
    }
    if (k->bufs[b].rank != bufs[b]->rank || k->bufs[b].dtype != bufs[b]->dt) {
      snprintf(err, errlen, "kernel %s buffer %s rank/dtype differ from the bound tensor", k->name, k->bufs[b].name);
      return false;
    }
  }
  if (use_lib && k->libcall && strcmp(k->libcall->name, "gemm") == 0) {
    run_gemm(&in, k->libcall);
  } else {
    int64_t ext[OPS_MAX_RANK], total = 1;
    for (int d = 0; d < k->rank; d++) {
      ext[d] = eval_i(&in, k->extents[d]);
      total *= ext[d];
    }
    for (int64_t p = 0; p < total && !in.err[0]; p++) {
      int64_t rem = p;
      for (int d = k->rank - 1; d >= 0; d--) {
        in.env[k->vars[d]] = rem % ext[d];
        rem /= ext[d];
      }
      for (int s = 0; s < k->n_stores && !in.err[0]; s++) {
        const kir_store_t *st = &k->stores[s];
        if (st->cond && !eval_i(&in, st->cond)) continue;
        ibuf_t *b = bufs[st->buf];
        int64_t flat = 0;
        for (int d = 0; d < b->rank; d++) {
          int64_t ix = eval_i(&in, st->idx[d]);
          if (ix < 0 || ix >= b->dims[d]) {
            snprintf(in.err, sizeof in.err, "store out of bounds: buffer %s dim %d index %lld of %lld",
                     k->bufs[st->buf].name, d, (long long)ix, (long long)b->dims[d]);
            break;
          }
          flat = flat * b->dims[d] + ix;
        }
        if (in.err[0]) break;
        ival_t v = eval(&in, st->value);
        store_elem(b, flat, cast_val(st->value->dtype, b->dt, v));
      }
    }
  }
  if (in.err[0]) {
    snprintf(err, errlen, "kernel %s: %s", k->name, in.err);
    return false;
  }
  return true;
}

/* ------------------------------------------------------------------ */
/* Running a model node by node.                                       */

enum { MODE_STATIC, MODE_BLAS, MODE_DYNAMIC, N_MODES };
static const char *const k_mode_names[N_MODES] = {"static", "blas", "dynamic"};

static ibuf_t *buf_new(flagos_dtype_t dt, int rank, const int64_t *dims) {
  ibuf_t *b = calloc(1, sizeof(*b));
  b->dt = dt;
  b->rank = rank;
  b->numel = 1;
  for (int d = 0; d < rank; d++) {
    b->dims[d] = dims[d];
    b->numel *= dims[d];
  }
  b->data = calloc((size_t)(b->numel ? b->numel : 1), flagos_dtype_size(dt) ? flagos_dtype_size(dt) : 1);
  return b;
}

static void buf_free(ibuf_t *b) {
  if (!b) return;
  free(b->data);
  free(b);
}

static ibuf_t *buf_from_tensor(const fir_tensor_t *t) {
  ibuf_t *b = buf_new(t->dtype, t->rank, t->dims);
  if (t->numel) memcpy(b->data, t->data, (size_t)t->numel * flagos_dtype_size(t->dtype));
  return b;
}

static void info_from_buf(ops_tensor_info_t *t, const ibuf_t *b, bool with_value) {
  memset(t, 0, sizeof(*t));
  t->present = true;
  t->kind = FIR_TYPE_TENSOR;
  t->dtype = b->dt;
  t->rank = b->rank;
  for (int d = 0; d < b->rank; d++) t->dims[d] = b->dims[d];
  t->numel = b->numel;
  t->value = with_value ? b->data : NULL;
}

/* Runs one node; vals is indexed by value id of the top graph. */
static bool run_node(fir_node_t *n, ibuf_t **vals, int mode, char *err, size_t errlen) {
  const ops_def_t *d = ops_find(n->op_type, n->domain);
  if (!d) {
    snprintf(err, errlen, "no operator %s", n->op_type);
    return false;
  }
  if (n->n_inputs > 16 || n->n_outputs > 8) {
    snprintf(err, errlen, "too many inputs/outputs");
    return false;
  }
  fl_arena_t *a = fl_arena_create();
  ops_tensor_info_t cin[16], cout[8], rin[16], rout[8];
  /* Compile time: the model's types, with graph-derived dims erased in dynamic mode. */
  for (int k = 0; k < n->n_inputs; k++) {
    ops_info_from_value(&cin[k], n->inputs[k]);
    /* Shape-like inputs keep their length: it decides the output rank. */
    if (mode == MODE_DYNAMIC && n->inputs[k] && !n->inputs[k]->init && !(d->value_inputs >> k & 1))
      for (int q = 0; q < cin[k].rank; q++) cin[k].dims[q] = -1, cin[k].numel = -1;
  }
  ops_ctx_t cc, rc;
  ops_ctx_init(&cc, a, n, cin, cout, false);
  flagos_status_t st = ops_ctx_infer(&cc, d);
  if (!st) {
    cc.kernel_prefix = "t";
    st = d->lower(&cc);
  }
  /* Run time: concrete shapes, values of value_inputs (and of constants). */
  for (int k = 0; k < n->n_inputs; k++) {
    fir_value_t *v = n->inputs[k];
    if (!v) {
      memset(&rin[k], 0, sizeof(rin[k]));
      rin[k].rank = -1;
      continue;
    }
    info_from_buf(&rin[k], vals[v->id], (d->value_inputs >> k & 1) || v->init);
  }
  ops_ctx_init(&rc, a, n, rin, rout, true);
  if (!st) st = ops_ctx_infer(&rc, d);
  if (st) {
    snprintf(err, errlen, "%s", flagos_status_message(st));
    flagos_status_free(st);
    fl_arena_destroy(a);
    return false;
  }
  if (rc.n_syms != cc.n_syms || rc.param_base != cc.param_base) {
    snprintf(err, errlen, "symbol layouts differ between compile time (%d) and run time (%d)", cc.n_syms, rc.n_syms);
    fl_arena_destroy(a);
    return false;
  }
  if (getenv("FLAGOS_OPS_TEST_C") && cc.n_steps) {
    /* Debugging aid: the C the cpu backend's emitter makes of these kernels. */
    kir_kernel_t *ks[64];
    int nk = cc.n_steps < 64 ? cc.n_steps : 64;
    for (int s = 0; s < nk; s++) ks[s] = cc.steps[s].kernel;
    fl_buf_t src = {0};
    flagos_status_t es = cgen_c_emit(ks, nk, &src);
    if (es) {
      printf("emit: %s\n", flagos_status_message(es));
      flagos_status_free(es);
    } else {
      printf("%s\n", src.data ? src.data : "");
    }
    fl_buf_free(&src);
  }
  int64_t *syms = calloc((size_t)(rc.n_syms + 1), sizeof(int64_t));
  ops_ctx_fill_syms(&rc, syms);
  ibuf_t *outs[8] = {0};
  for (int k = 0; k < n->n_outputs; k++)
    if (n->outputs[k] && rout[k].present) outs[k] = buf_new(rout[k].dtype, rout[k].rank, rout[k].dims);
  ibuf_t **temps = calloc((size_t)(cc.n_temps + 1), sizeof(*temps));
  bool ok = true;
  interp_t ev;
  memset(&ev, 0, sizeof ev);
  ev.syms = syms;
  ev.n_syms = rc.n_syms;
  for (int t = 0; t < cc.n_temps; t++) {
    int64_t dims[OPS_MAX_RANK];
    for (int q = 0; q < cc.temps[t].rank; q++) dims[q] = eval_i(&ev, cc.temps[t].dims[q]);
    temps[t] = buf_new(cc.temps[t].dtype, cc.temps[t].rank, dims);
  }
  if (ev.err[0]) {
    snprintf(err, errlen, "temp dims: %s", ev.err);
    ok = false;
  }
  for (int s = 0; s < cc.n_steps && ok; s++) {
    const ops_step_t *sp = &cc.steps[s];
    if (getenv("FLAGOS_OPS_TEST_DUMP")) {
      fl_buf_t pb = {0};
      kir_print_kernel(&pb, sp->kernel);
      printf("%s\n", pb.data ? pb.data : "");
      fl_buf_free(&pb);
    }
    ibuf_t *bb[64];
    for (int b = 0; b < sp->kernel->n_bufs && b < 64; b++) {
      const ops_bind_t *bd = &sp->binds[b];
      if (bd->kind == OPS_BIND_INPUT) bb[b] = vals[n->inputs[bd->index]->id];
      else if (bd->kind == OPS_BIND_OUTPUT) bb[b] = outs[bd->index];
      else bb[b] = temps[bd->index];
      if (!bb[b]) {
        snprintf(err, errlen, "kernel %s binds an absent tensor", sp->kernel->name);
        ok = false;
      }
    }
    if (ok) ok = run_kernel(sp->kernel, bb, syms, rc.n_syms, mode == MODE_BLAS, err, errlen);
    const char *dump = getenv("FLAGOS_OPS_TEST_DUMP");
    if (ok && dump && dump[0] == '2')
      for (int b = 0; b < sp->kernel->n_bufs; b++) {
        if (!sp->kernel->bufs[b].written) continue;
        printf("  after %s: %s =", sp->kernel->name, sp->kernel->bufs[b].name);
        for (int64_t i = 0; i < bb[b]->numel && i < 16; i++)
          printf(" %g", fdt(bb[b]->dt) ? fl_load_as_double(bb[b]->dt, bb[b]->data, (size_t)i)
                                        : (double)fl_load_as_int64(bb[b]->dt, bb[b]->data, (size_t)i));
        printf("\n");
      }
  }
  for (int t = 0; t < cc.n_temps; t++) buf_free(temps[t]);
  free(temps);
  free(syms);
  for (int k = 0; k < n->n_outputs; k++) {
    if (!outs[k]) continue;
    if (ok) {
      buf_free(vals[n->outputs[k]->id]);
      vals[n->outputs[k]->id] = outs[k];
    } else {
      buf_free(outs[k]);
    }
  }
  fl_arena_destroy(a);
  return ok;
}

static bool close_enough(const ibuf_t *got, const fir_tensor_t *ref, char *err, size_t errlen) {
  if (got->dt != ref->dtype || got->rank != ref->rank) {
    snprintf(err, errlen, "dtype/rank %s/%d, reference %s/%d", flagos_dtype_name(got->dt), got->rank,
             flagos_dtype_name(ref->dtype), ref->rank);
    return false;
  }
  for (int d = 0; d < got->rank; d++)
    if (got->dims[d] != ref->dims[d]) {
      snprintf(err, errlen, "dim %d is %lld, reference %lld", d, (long long)got->dims[d], (long long)ref->dims[d]);
      return false;
    }
  bool half = ref->dtype == FLAGOS_FLOAT16 || ref->dtype == FLAGOS_BFLOAT16;
  double rtol = half ? 4e-3 : 1e-3, atol = half ? 4e-3 : 1e-5;
  for (int64_t i = 0; i < ref->numel; i++) {
    if (fdt(ref->dtype)) {
      double x = fl_load_as_double(got->dt, got->data, (size_t)i), y = fl_load_as_double(ref->dtype, ref->data, (size_t)i);
      if (isnan(x) && isnan(y)) continue;
      if (x == y) continue;
      if (!(fabs(x - y) <= atol + rtol * fabs(y))) {
        snprintf(err, errlen, "element %lld is %.9g, reference %.9g", (long long)i, x, y);
        return false;
      }
    } else {
      int64_t x = fl_load_as_int64(got->dt, got->data, (size_t)i), y = fl_load_as_int64(ref->dtype, ref->data, (size_t)i);
      if (x != y) {
        snprintf(err, errlen, "element %lld is %lld, reference %lld", (long long)i, (long long)x, (long long)y);
        return false;
      }
    }
  }
  return true;
}

/* ------------------------------------------------------------------ */

static bool in_table(const ops_def_t *t, const char *op) {
  for (; t->op_type; t++)
    if (strcmp(t->op_type, op) == 0) return true;
  return false;
}

static bool mine(const char *op) {
  return in_table(ops_family_linalg, op) || in_table(ops_family_conv, op) || in_table(ops_family_pool, op) ||
         in_table(ops_family_attention, op);
}

static int failures, passed;

static bool read_tensor(fir_model_t *m, const char *path, fir_tensor_t **t) {
  void *data;
  size_t size;
  flagos_status_t st = fl_read_file(path, &data, &size);
  if (!st) {
    st = onnx_decode_tensor(m, data, size, t);
    free(data);
  }
  if (st) {
    fprintf(stderr, "%s: %s\n", path, flagos_status_message(st));
    flagos_status_free(st);
    return false;
  }
  return true;
}

static void run_model(const char *root, const char *name, int mode) {
  char path[1200], err[512] = "";
  snprintf(path, sizeof path, "%s/%s/model.onnx", root, name);
  fir_model_t *m = NULL;
  flagos_status_t st = onnx_import_file(path, &m);
  if (!st) st = pass_constants_to_initializers(m);
  if (!st) st = pass_infer_types(m);
  if (st) {
    printf("FAIL %-60s %-7s import/infer: %s\n", name, k_mode_names[mode], flagos_status_message(st));
    flagos_status_free(st);
    failures++;
    if (m) fir_model_destroy(m);
    return;
  }
  fir_graph_t *g = m->graph;
  ibuf_t **vals = calloc((size_t)g->n_values + 1, sizeof(*vals));
  bool ok = true;
  int ki = 0;
  for (int i = 0; i < g->n_inputs && ok; i++) {
    fir_value_t *v = g->inputs[i];
    if (v->init) continue;
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_%d.pb", root, name, ki++);
    fir_tensor_t *t;
    if (!read_tensor(m, path, &t)) ok = false;
    else vals[v->id] = buf_from_tensor(t);
  }
  for (int i = 0; i < g->n_values; i++)
    if (g->values[i]->init && !vals[i]) vals[i] = buf_from_tensor(g->values[i]->init);
  for (int i = 0; i < g->n_nodes && ok; i++) {
    if (!run_node(g->nodes[i], vals, mode, err, sizeof err)) {
      char tmp[1200];
      snprintf(tmp, sizeof tmp, "node %d (%s): %s", i, g->nodes[i]->op_type, err);
      snprintf(err, sizeof err, "%.500s", tmp);
      ok = false;
    }
  }
  for (int o = 0; o < g->n_outputs && ok; o++) {
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/output_%d.pb", root, name, o);
    fir_tensor_t *ref;
    if (!read_tensor(m, path, &ref)) {
      ok = false;
      break;
    }
    ibuf_t *got = vals[g->outputs[o]->id];
    if (!got) {
      snprintf(err, sizeof err, "output %d was not computed", o);
      ok = false;
    } else if (!close_enough(got, ref, err, sizeof err)) {
      char tmp[1200];
      snprintf(tmp, sizeof tmp, "output %d: %s", o, err);
      snprintf(err, sizeof err, "%.500s", tmp);
      ok = false;
    }
  }
  if (ok) passed++;
  else {
    failures++;
    printf("FAIL %-60s %-7s %s\n", name, k_mode_names[mode], err);
  }
  for (int i = 0; i < g->n_values; i++) buf_free(vals[i]);
  free(vals);
  fir_model_destroy(m);
}

/* Models whose nodes are all ours (or, with any_ops, all registered). */
static bool eligible(const char *root, const char *name, bool any_ops) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s/model.onnx", root, name);
  fir_model_t *m = NULL;
  flagos_status_t st = onnx_import_file(path, &m);
  if (st) {
    flagos_status_free(st);
    return false;
  }
  fir_graph_t *g = m->graph;
  bool any_mine = false, all = g->n_nodes > 0;
  for (int i = 0; i < g->n_nodes; i++) {
    fir_node_t *n = g->nodes[i];
    if (mine(n->op_type)) any_mine = true;
    else if (strcmp(n->op_type, "Constant") == 0) continue;
    else if (!any_ops || !ops_find(n->op_type, n->domain)) {
      if (any_ops && getenv("FLAGOS_OPS_TEST_DUMP")) printf("%s: no operator %s\n", name, n->op_type);
      all = false;
    }
    for (int q = 0; q < n->n_attrs; q++)
      if (n->attrs[q].kind == FIR_ATTR_GRAPH || n->attrs[q].kind == FIR_ATTR_GRAPHS) all = false;
  }
  fir_model_destroy(m);
  return all && any_mine;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_dir(const char *root, const char *filter, bool any_ops) {
  DIR *dir = opendir(root);
  if (!dir) {
    fprintf(stderr, "cannot open %s\n", root);
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    if (e->d_name[0] == '.') continue;
    if (filter && !strstr(e->d_name, filter)) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 256;
      names = realloc(names, cap * sizeof(*names));
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(dir);
  qsort(names, n, sizeof(*names), cmp_str);
  int models = 0;
  for (size_t i = 0; i < n; i++) {
    if (eligible(root, names[i], any_ops)) {
      models++;
      for (int mode = 0; mode < N_MODES; mode++) run_model(root, names[i], mode);
    }
    free(names[i]);
  }
  free(names);
  return models;
}

int main(void) {
  char root[1024], extra[1024];
  snprintf(root, sizeof root, "%s/onnx-node", FLAGOS_CONFORMANCE_DIR);
  /* Cases ONNX's node tests leave out, written by tests/tools/gen_ops_compute_cases.py. */
  snprintf(extra, sizeof extra, "%s/tests/data/ops_compute", FLAGOS_SOURCE_DIR);
  const char *filter = getenv("FLAGOS_OPS_TEST_FILTER");
  bool any_ops = getenv("FLAGOS_OPS_TEST_ANY") != NULL;
  int m1 = run_dir(root, filter, any_ops), m2 = run_dir(extra, filter, any_ops);
  if (m1 < 0 || m2 < 0) return 1;
  printf("%d conformance models, %d extra models: %d runs passed, %d failed\n", m1, m2, passed, failures);
  /* ONNX's set holds 200+ such models and the extra set 30+; far fewer means the
   * filter broke, not that the operators got better. */
  if (!filter && (m1 < 200 || m2 < 30)) {
    fprintf(stderr, "only %d + %d models were eligible\n", m1, m2);
    return 1;
  }
  return failures ? 1 : 0;
}
