/* A reference interpreter for kernel IR, for tests: it runs a kernel's generic
 * body (or its "gemm" library call) point by point on host buffers, with the
 * semantics src/kernel/kir.h states (narrow floats computed as float32 and
 * rounded at casts and stores, lazy select, NaN-propagating min/max), and
 * reports out-of-bounds loads and stores instead of touching memory. It is
 * deliberately simple and slow: an independent check on lowerings, not a
 * backend. Header-only (static functions); include it from one test. */
#ifndef FLAGOS_TEST_KIR_INTERP_H
#define FLAGOS_TEST_KIR_INTERP_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kir.h"
#include "ops/ops.h"

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
        /* The optional 4th buffer is a bias of N values added to every row. */
        double bias = lc->n_bufs == 4 ? load_elem(in->bufs[lc->bufs[3]], n).f : 0;
        ival_t v = {alpha * acc + (beta != 0 ? beta * load_elem(Y, iy).f : 0) + bias, 0};
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
  /* A kernel may view a tensor under another shape of the same element count
   * (ops_buf_view): the interpreter then addresses it with the kernel's dims. */
  static ibuf_t views[64];
  static ibuf_t *view_ptrs[64];
  if (k->n_bufs > 64) {
    snprintf(err, errlen, "kernel %s has more than 64 buffers", k->name);
    return false;
  }
  for (int b = 0; b < k->n_bufs; b++) {
    views[b] = *bufs[b];
    views[b].rank = k->bufs[b].rank;
    int64_t numel = 1;
    for (int d = 0; d < k->bufs[b].rank; d++) {
      views[b].dims[d] = eval_i(&in, k->bufs[b].dims[d]);
      numel *= views[b].dims[d];
    }
    if (numel != bufs[b]->numel || k->bufs[b].dtype != bufs[b]->dt) {
      snprintf(err, errlen, "kernel %s buffer %s: %lld elements of %s, bound tensor has %lld of %s", k->name,
               k->bufs[b].name, (long long)numel, flagos_dtype_name(k->bufs[b].dtype), (long long)bufs[b]->numel,
               flagos_dtype_name(bufs[b]->dt));
      return false;
    }
    view_ptrs[b] = &views[b];
  }
  in.bufs = view_ptrs;
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
        ibuf_t *b = in.bufs[st->buf];
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

#endif
