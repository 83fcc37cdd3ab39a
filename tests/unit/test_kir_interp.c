/* The kernel IR interpreter (src/kernel/kir_interp.h) and constant folding
 * (src/passes/fold.c). Kernels are built by hand with the kernel IR builder and
 * run on host buffers; expected values are hand-computed or were produced with
 * NumPy 1.x / ml_dtypes / onnx.reference and pasted here:
 * - the cast tables (cast_in, exp_*) are the ones test_codegen_c.c checks the C
 *   emitter against (ml_dtypes 0.6, onnx.numpy_helper), so the interpreter and the
 *   compiled kernels are held to the same independent reference;
 * - float results are NumPy float32 arithmetic (np.float32(0.1) + np.float32(0.2),
 *   np.sqrt(np.float32([2, 3])), x.astype(np.float16) ...);
 * - folded shapes are what onnx.reference.ReferenceEvaluator gives for the
 *   intermediate values of ONNX's *_expanded conformance models. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx_import.h"
#include "kernel/kir_interp.h"
#include "ops/ops.h"
#include "passes/passes.h"

#include "kir_cast_facts.h"

/* ---- harness ---- */
#include "check.h"

/* The interpreter refuses (FLAGOS_ERR_UNSUPPORTED), and says which kernel. */
#define CHECK_REFUSED(expr, what)                                                                  \
  do {                                                                                             \
    flagos_status_t st_ = (expr);                                                                  \
    CHECK(st_ && flagos_status_code(st_) == FLAGOS_ERR_UNSUPPORTED, "%s: expected a refusal", what); \
    if (st_) CHECK(strstr(flagos_status_message(st_), "kernel '") != NULL, "message: %s", flagos_status_message(st_)); \
    flagos_status_free(st_);                                                                       \
  } while (0)

static fl_arena_t *A;

static float f32_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static kir_expr_t *I(int64_t v) { return kir_i64(A, v); }
static kir_kernel_t *K(const char *name, int n_syms) {
  kir_kernel_t *k = kir_kernel_create(A, name);
  k->n_syms = n_syms;
  return k;
}
static int B1(kir_kernel_t *k, flagos_dtype_t dt, kir_expr_t *n) { return kir_add_buf(k, "b", dt, 1, &n); }
static int B2(kir_kernel_t *k, flagos_dtype_t dt, int64_t n0, int64_t n1) {
  kir_expr_t *d[2] = {I(n0), I(n1)};
  return kir_add_buf(k, "b", dt, 2, d);
}
static kir_expr_t *space1(kir_kernel_t *k, kir_expr_t *n) {
  kir_expr_t *v;
  kir_set_space(k, 1, &n, &v);
  return v;
}
static kir_expr_t *L1(kir_kernel_t *k, int b, kir_expr_t *i) { return kir_load(k, b, &i); }
static void St1(kir_kernel_t *k, int b, kir_expr_t *i, kir_expr_t *v, kir_expr_t *c) { kir_store(k, b, &i, v, c); }
static flagos_status_t run(const kir_kernel_t *k, void *const *bufs) { return kir_interp_run(k, bufs, NULL, 0); }

/* z = x OP y elementwise over n elements of dtype dt (z of dtype zdt when comparing). */
static kir_kernel_t *binary_kernel(flagos_dtype_t dt, kir_op_t op, int64_t n) {
  kir_kernel_t *k = K("bin", 0);
  int x = B1(k, dt, I(n)), y = B1(k, dt, I(n));
  int z = B1(k, kir_op_is_compare(op) ? FLAGOS_BOOL : dt, I(n));
  kir_expr_t *i = space1(k, I(n));
  St1(k, z, i, kir_bin(A, op, L1(k, x, i), L1(k, y, i)), NULL);
  return k;
}

/* ---- integers wrap to their width ---- */
static void test_int_wrap(void) {
  int8_t a8[3] = {100, -100, 127}, b8[3] = {100, -100, 1}, c8[3];
  void *b1[3] = {a8, b8, c8};
  CHECK_OK(run(binary_kernel(FLAGOS_INT8, KIR_ADD, 3), b1));
  CHECK(c8[0] == -56 && c8[1] == 56 && c8[2] == -128, "i8 add: %d %d %d, want -56 56 -128", c8[0], c8[1], c8[2]);

  uint8_t au[2] = {0, 5}, bu[2] = {1, 10}, cu[2];
  void *b2[3] = {au, bu, cu};
  CHECK_OK(run(binary_kernel(FLAGOS_UINT8, KIR_SUB, 2), b2));
  CHECK(cu[0] == 255 && cu[1] == 251, "u8 sub: %d %d, want 255 251", cu[0], cu[1]);

  int32_t a32[2] = {65536, 2147483647}, b32[2] = {65536, 1}, c32[2];
  void *b3[3] = {a32, b32, c32};
  CHECK_OK(run(binary_kernel(FLAGOS_INT32, KIR_MUL, 2), b3));
  CHECK(c32[0] == 0 && c32[1] == 2147483647, "i32 mul: %d %d, want 0 2147483647", c32[0], c32[1]);
  CHECK_OK(run(binary_kernel(FLAGOS_INT32, KIR_ADD, 2), b3));
  CHECK(c32[0] == 131072 && c32[1] == INT32_MIN, "i32 add: %d %d, want 131072 -2147483648", c32[0], c32[1]);

  int64_t a64[1] = {INT64_MAX}, b64[1] = {1}, c64[1];
  void *b4[3] = {a64, b64, c64};
  CHECK_OK(run(binary_kernel(FLAGOS_INT64, KIR_ADD, 1), b4));
  CHECK(c64[0] == INT64_MIN, "i64 add wraps: %lld", (long long)c64[0]);

  uint64_t a_u[2] = {UINT64_MAX, 1}, b_u[2] = {2, UINT64_MAX};
  uint8_t lt[2];
  void *b5[3] = {a_u, b_u, lt};
  CHECK_OK(run(binary_kernel(FLAGOS_UINT64, KIR_LT, 2), b5));
  CHECK(lt[0] == 0 && lt[1] == 1, "u64 compares unsigned: %d %d", lt[0], lt[1]);
  uint64_t s_u[2];
  void *b6[3] = {a_u, b_u, s_u};
  CHECK_OK(run(binary_kernel(FLAGOS_UINT64, KIR_ADD, 2), b6));
  CHECK(s_u[0] == 1 && s_u[1] == 0 && a_u[0] == UINT64_MAX, "u64 add wraps: %llu %llu", (unsigned long long)s_u[0],
        (unsigned long long)s_u[1]);
}

/* ---- integer division, shifts, powers (numpy for the floor forms; the C helpers' rules for x/0) ---- */
static void test_int_div(void) {
  int32_t a[8] = {-7, 7, 7, -7, 5, INT32_MIN, 0, 9}, b[8] = {2, -2, 2, -2, 0, -1, 3, 0}, o[8];
  void *bufs[3] = {a, b, o};
  static const struct {
    kir_op_t op;
    int32_t want[8];
  } cases[] = {
      {KIR_DIV, {-3, -3, 3, 3, 0, INT32_MIN, 0, 0}},
      {KIR_MOD, {-1, 1, 1, -1, 0, 0, 0, 0}},
      {KIR_FLOORDIV, {-4, -4, 3, 3, 0, INT32_MIN, 0, 0}},
      {KIR_FLOORMOD, {1, -1, 1, -1, 0, 0, 0, 0}},
  };
  for (size_t c = 0; c < FL_ARRAY_LEN(cases); c++) {
    CHECK_OK(run(binary_kernel(FLAGOS_INT32, cases[c].op, 8), bufs));
    for (int i = 0; i < 8; i++)
      CHECK(o[i] == cases[c].want[i], "%s(%d, %d) = %d, want %d", kir_op_name(cases[c].op), a[i], b[i], o[i],
            cases[c].want[i]);
  }
  int8_t s[4] = {1, -128, 3, -1}, sh[4] = {7, 1, 8, 100}, so[4];
  void *b2[3] = {s, sh, so};
  CHECK_OK(run(binary_kernel(FLAGOS_INT8, KIR_SHL, 4), b2));
  CHECK(so[0] == -128 && so[1] == 0 && so[2] == 0 && so[3] == 0, "i8 shl: %d %d %d %d", so[0], so[1], so[2], so[3]);
  CHECK_OK(run(binary_kernel(FLAGOS_INT8, KIR_SHR, 4), b2));
  CHECK(so[0] == 0 && so[1] == -64 && so[2] == 0 && so[3] == -1, "i8 shr: %d %d %d %d", so[0], so[1], so[2], so[3]);
  int32_t p[4] = {3, 2, -1, 2}, e[4] = {4, 31, -3, -1}, po[4];
  void *b3[3] = {p, e, po};
  CHECK_OK(run(binary_kernel(FLAGOS_INT32, KIR_POW, 4), b3));
  CHECK(po[0] == 81 && po[1] == INT32_MIN && po[2] == -1 && po[3] == 0, "i32 pow: %d %d %d %d", po[0], po[1], po[2],
        po[3]);
}

/* ---- f32 arithmetic rounds to f32 after every op ---- */
static void test_f32_rounding(void) {
  float x[3] = {0.1f, 16777216.0f, 1e8f}, y[3] = {0.2f, 1.0f, 1.0f}, z[3];
  double z64[3];
  kir_kernel_t *k = K("f32", 0);
  int bx = B1(k, FLAGOS_FLOAT32, I(3)), by = B1(k, FLAGOS_FLOAT32, I(3)), bz = B1(k, FLAGOS_FLOAT32, I(3));
  int bz64 = B1(k, FLAGOS_FLOAT64, I(3));
  kir_expr_t *i = space1(k, I(3));
  kir_expr_t *s = kir_bin(A, KIR_ADD, L1(k, bx, i), L1(k, by, i));
  St1(k, bz, i, s, NULL);
  /* the f32 sum widened afterwards, and the sum done in f64 */
  kir_expr_t *s64 = kir_bin(A, KIR_ADD, kir_cast(A, FLAGOS_FLOAT64, L1(k, bx, i)), kir_cast(A, FLAGOS_FLOAT64, L1(k, by, i)));
  St1(k, bz64, i, kir_bin(A, KIR_SUB, s64, kir_cast(A, FLAGOS_FLOAT64, s)), NULL);
  void *bufs[4] = {x, y, z, z64};
  CHECK_OK(run(k, bufs));
  /* numpy: np.float32(0.1) + np.float32(0.2) -> 0x3e99999a; 16777216 + 1 -> 16777216; 1e8 + 1 -> 0x4cbebc20 */
  CHECK(bits_of(z[0]) == 0x3e99999au, "0.1f + 0.2f = %08x, want 3e99999a", bits_of(z[0]));
  CHECK(z[1] == 16777216.0f, "2^24 + 1 in f32 = %.9g, want 16777216", (double)z[1]);
  CHECK(bits_of(z[2]) == 0x4cbebc20u, "1e8 + 1 in f32 = %08x, want 4cbebc20", bits_of(z[2]));
  CHECK(z64[1] == 1.0, "f64 sum minus f32 sum = %g, want 1", z64[1]);

  /* sqrt is correctly rounded: numpy np.sqrt(np.float32([2, 3])).view(np.uint32) */
  float r[2] = {2.0f, 3.0f}, q[2];
  k = K("sqrt", 0);
  int br = B1(k, FLAGOS_FLOAT32, I(2)), bq = B1(k, FLAGOS_FLOAT32, I(2));
  i = space1(k, I(2));
  St1(k, bq, i, kir_un(A, KIR_SQRT, L1(k, br, i)), NULL);
  void *b2[2] = {r, q};
  CHECK_OK(run(k, b2));
  CHECK(bits_of(q[0]) == 1068827891u && bits_of(q[1]) == 1071494103u, "sqrt f32: %u %u", bits_of(q[0]), bits_of(q[1]));

  /* exp: the libm's expf (as the emitted code calls it); numpy's own expf gives
   * 0x402df855 for exp(1), which is within one unit in the last place. */
  float one[1] = {1.0f}, ex[1];
  k = K("exp", 0);
  int bo = B1(k, FLAGOS_FLOAT32, I(1)), be = B1(k, FLAGOS_FLOAT32, I(1));
  i = space1(k, I(1));
  St1(k, be, i, kir_un(A, KIR_EXP, L1(k, bo, i)), NULL);
  void *b3[2] = {one, ex};
  CHECK_OK(run(k, b3));
  int64_t d = (int64_t)bits_of(ex[0]) - 0x402df855;
  CHECK(d >= -1 && d <= 1, "expf(1) = %08x, numpy 402df855", bits_of(ex[0]));
}

/* ---- narrow floats: computed in f32, rounded (to nearest even) on store ---- */
static void test_f16(void) {
  /* numpy: np.float32([...]).astype(np.float16).view(np.uint16) */
  float x[9] = {1.0009765625f, 1.00048828125f, 1.00146484375f, 65520.0f, 65519.0f, 1e-8f, 3e-8f, -2.5f, 0.1f};
  uint16_t want[9] = {0x3c01, 0x3c00, 0x3c02, 0x7c00, 0x7bff, 0x0000, 0x0001, 0xc100, 0x2e66}, h[9];
  kir_kernel_t *k = K("f16store", 0);
  int bx = B1(k, FLAGOS_FLOAT32, I(9)), bh = B1(k, FLAGOS_FLOAT16, I(9));
  kir_expr_t *i = space1(k, I(9));
  St1(k, bh, i, L1(k, bx, i), NULL);
  void *bufs[2] = {x, h};
  CHECK_OK(run(k, bufs));
  for (int j = 0; j < 9; j++) CHECK(h[j] == want[j], "f16(%g) = %04x, want %04x", (double)x[j], h[j], want[j]);

  /* 1 + 2^-11 + 2^-11: in f32 that is exactly 1 + 2^-10 (0x3c01 once stored);
   * rounding to f16 after each add would give 1.0 (ties to even) twice. */
  uint16_t a[1] = {0x3c00}, b[1] = {0x1000}, c[1];
  k = K("f16add", 0);
  int ba = B1(k, FLAGOS_FLOAT16, I(1)), bb = B1(k, FLAGOS_FLOAT16, I(1)), bc = B1(k, FLAGOS_FLOAT16, I(1));
  i = space1(k, I(1));
  kir_expr_t *lb = L1(k, bb, i);
  St1(k, bc, i, kir_bin(A, KIR_ADD, kir_bin(A, KIR_ADD, L1(k, ba, i), lb), lb), NULL);
  void *b2[3] = {a, b, c};
  CHECK_OK(run(k, b2));
  CHECK(c[0] == 0x3c01, "f16 1 + 2^-11 + 2^-11 = %04x, want 3c01", c[0]);

  /* f64 -> f16 in one rounding */
  uint16_t h5[5];
  k = K("d2h", 0);
  int bd = B1(k, FLAGOS_FLOAT64, I(5)), b16 = B1(k, FLAGOS_FLOAT16, I(5));
  i = space1(k, I(5));
  St1(k, b16, i, kir_cast(A, FLAGOS_FLOAT16, L1(k, bd, i)), NULL);
  void *b3[2] = {(void *)d2h_in, h5};
  CHECK_OK(run(k, b3));
  for (int j = 0; j < 5; j++) CHECK(h5[j] == exp_d2h[j], "f64 -> f16 (%a) = %04x, want %04x", d2h_in[j], h5[j], exp_d2h[j]);
}

/* ---- every cast of the emitter's reference table ---- */
static void test_casts(void) {
  static const flagos_dtype_t cast_dt[] = {
      FLAGOS_FLOAT16, FLAGOS_BFLOAT16, FLAGOS_FLOAT8E4M3FN, FLAGOS_FLOAT8E4M3FN, FLAGOS_FLOAT8E4M3FNUZ,
      FLAGOS_FLOAT8E4M3FNUZ, FLAGOS_FLOAT8E5M2, FLAGOS_FLOAT8E5M2, FLAGOS_FLOAT8E5M2FNUZ, FLAGOS_FLOAT8E5M2FNUZ,
      FLAGOS_FLOAT4E2M1, FLAGOS_FLOAT8E8M0, FLAGOS_FLOAT8E8M0, FLAGOS_INT4, FLAGOS_UINT4, FLAGOS_INT2, FLAGOS_UINT2,
      FLAGOS_INT8, FLAGOS_INT32};
  static const bool cast_sat[] = {1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1};
  enum { NOUT = 19 };
  kir_kernel_t *k = K("casts", 0);
  int bx = B1(k, FLAGOS_FLOAT32, I(CAST_N));
  kir_expr_t *i = space1(k, I(CAST_N)), *xi = L1(k, bx, i);
  for (int c = 0; c < NOUT; c++) St1(k, B1(k, cast_dt[c], I(CAST_N)), i, kir_cast_sat(A, cast_dt[c], xi, cast_sat[c]), NULL);
  static uint8_t out[NOUT][CAST_N * 4];
  float x[CAST_N];
  for (int j = 0; j < CAST_N; j++) x[j] = f32_of(cast_in[j]);
  void *bufs[NOUT + 1] = {x};
  for (int c = 0; c < NOUT; c++) memset(out[c], 0xab, sizeof out[c]), bufs[c + 1] = out[c];
  CHECK_OK(run(k, bufs));
  const uint8_t *e8[] = {exp_e4m3fn_sat, exp_e4m3fn_nosat, exp_e4m3fnuz_sat, exp_e4m3fnuz_nosat,
                         exp_e5m2_sat, exp_e5m2_nosat, exp_e5m2fnuz_sat, exp_e5m2fnuz_nosat, exp_f4e2m1};
  for (int j = 0; j < CAST_N; j++) {
    uint16_t h, bf;
    memcpy(&h, out[0] + 2 * j, 2);
    memcpy(&bf, out[1] + 2 * j, 2);
    CHECK(h == exp_f16[j], "f16(%g) = %04x, want %04x", (double)x[j], h, exp_f16[j]);
    CHECK(bf == exp_bf16[j], "bf16(%g) = %04x, want %04x", (double)x[j], bf, exp_bf16[j]);
    for (int f = 0; f < 9; f++) CHECK(out[2 + f][j] == e8[f][j], "f8 #%d(%g) = %02x, want %02x", f, (double)x[j], out[2 + f][j], e8[f][j]);
    uint8_t want = isinf(x[j]) ? 0xfe : exp_e8m0_sat[j];
    CHECK(out[11][j] == want, "e8m0 sat(%g) = %02x, want %02x", (double)x[j], out[11][j], want);
    CHECK(out[12][j] == exp_e8m0_nosat[j], "e8m0(%g) = %02x, want %02x", (double)x[j], out[12][j], exp_e8m0_nosat[j]);
    CHECK((int8_t)out[13][j] == exp_i4[j], "i4(%g) = %d, want %d", (double)x[j], (int8_t)out[13][j], exp_i4[j]);
    CHECK(out[14][j] == exp_u4[j], "u4(%g) = %d, want %d", (double)x[j], out[14][j], exp_u4[j]);
    CHECK((int8_t)out[15][j] == exp_i2[j], "i2(%g) = %d, want %d", (double)x[j], (int8_t)out[15][j], exp_i2[j]);
    CHECK(out[16][j] == exp_u2[j], "u2(%g) = %d, want %d", (double)x[j], out[16][j], exp_u2[j]);
    CHECK((int8_t)out[17][j] == exp_i8[j], "i8(%g) = %d, want %d", (double)x[j], (int8_t)out[17][j], exp_i8[j]);
    int32_t i32;
    memcpy(&i32, out[18] + 4 * j, 4);
    CHECK(i32 == exp_i32[j], "i32(%g) = %d, want %d", (double)x[j], i32, exp_i32[j]);
  }

  /* decode every code to f32 and store it back in its own type */
  static const flagos_dtype_t dec_dt[] = {FLAGOS_FLOAT8E4M3FN, FLAGOS_FLOAT8E4M3FNUZ, FLAGOS_FLOAT8E5M2,
                                          FLAGOS_FLOAT8E5M2FNUZ, FLAGOS_FLOAT8E8M0, FLAGOS_FLOAT4E2M1};
  const uint32_t *dec[6] = {dec_e4m3fn, dec_e4m3fnuz, dec_e5m2, dec_e5m2fnuz, dec_e8m0, dec_f4e2m1};
  for (int f = 0; f < 6; f++) {
    int64_t nc = f == 5 ? 16 : 256;
    k = K("decode", 0);
    int bc = B1(k, dec_dt[f], I(nc)), by = B1(k, FLAGOS_FLOAT32, I(nc)), brt = B1(k, dec_dt[f], I(nc));
    i = space1(k, I(nc));
    St1(k, by, i, kir_cast(A, FLAGOS_FLOAT32, L1(k, bc, i)), NULL);
    St1(k, brt, i, L1(k, bc, i), NULL);
    uint8_t codes[256], rt[256];
    float y[256];
    for (int c = 0; c < nc; c++) codes[c] = (uint8_t)c;
    void *b[3] = {codes, y, rt};
    CHECK_OK(run(k, b));
    for (int c = 0; c < nc; c++) {
      float w = f32_of(dec[f][c]);
      CHECK(isnan(w) ? isnan(y[c]) : bits_of(y[c]) == dec[f][c], "%s code %02x decodes to %g, want %g",
            flagos_dtype_name(dec_dt[f]), c, (double)y[c], (double)w);
      if (!isnan(w)) CHECK(rt[c] == c, "%s code %02x stores back as %02x", flagos_dtype_name(dec_dt[f]), c, rt[c]);
    }
  }

  /* bitcast: numpy np.float32([1, -2]).view(np.int32) */
  float fb[2] = {1.0f, -2.0f};
  int32_t ib[2];
  float back[2];
  k = K("bitcast", 0);
  int bf = B1(k, FLAGOS_FLOAT32, I(2)), bi = B1(k, FLAGOS_INT32, I(2)), bb = B1(k, FLAGOS_FLOAT32, I(2));
  i = space1(k, I(2));
  kir_expr_t *asint = kir_bitcast(A, FLAGOS_INT32, L1(k, bf, i));
  St1(k, bi, i, asint, NULL);
  St1(k, bb, i, kir_bitcast(A, FLAGOS_FLOAT32, kir_bin(A, KIR_ADD, asint, kir_const_int(A, FLAGOS_INT32, 1))), NULL);
  void *b4[3] = {fb, ib, back};
  CHECK_OK(run(k, b4));
  CHECK(ib[0] == 1065353216 && ib[1] == -1073741824, "bitcast f32 -> i32: %d %d", ib[0], ib[1]);
  CHECK(back[0] == nextafterf(1.0f, 2.0f), "bitcast i32 -> f32: %a", (double)back[0]);
}

/* ---- selects are lazy; bad kernels are refused, never crash ---- */
static void test_select_and_refusals(void) {
  float x[3] = {1.5f, 2.5f, 3.5f}, y[5];
  kir_kernel_t *k = K("lazy", 0);
  int bx = B1(k, FLAGOS_FLOAT32, I(3)), by = B1(k, FLAGOS_FLOAT32, I(5));
  kir_expr_t *i = space1(k, I(5));
  /* x[i] for i = 3, 4 is out of range: the select must not evaluate it there */
  St1(k, by, i, kir_select(A, kir_bin(A, KIR_LT, i, I(3)), L1(k, bx, i), kir_const(A, FLAGOS_FLOAT32, -1)), NULL);
  void *bufs[2] = {x, y};
  CHECK_OK(run(k, bufs));
  CHECK(y[0] == 1.5f && y[1] == 2.5f && y[2] == 3.5f && y[3] == -1.0f && y[4] == -1.0f, "lazy select: %g %g %g %g %g",
        (double)y[0], (double)y[1], (double)y[2], (double)y[3], (double)y[4]);

  /* a conditional store writes only where its condition holds */
  float z[5] = {9, 9, 9, 9, 9};
  k = K("condstore", 0);
  bx = B1(k, FLAGOS_FLOAT32, I(3));
  by = B1(k, FLAGOS_FLOAT32, I(5));
  i = space1(k, I(5));
  St1(k, by, i, L1(k, bx, kir_bin(A, KIR_FLOORDIV, i, I(2))), kir_bin(A, KIR_EQ, kir_bin(A, KIR_MOD, i, I(2)), I(0)));
  void *b2[2] = {x, z};
  CHECK_OK(run(k, b2));
  CHECK(z[0] == 1.5f && z[1] == 9 && z[2] == 2.5f && z[3] == 9 && z[4] == 3.5f, "conditional store: %g %g %g %g %g",
        (double)z[0], (double)z[1], (double)z[2], (double)z[3], (double)z[4]);

  /* an eager out-of-range load */
  k = K("oob", 0);
  bx = B1(k, FLAGOS_FLOAT32, I(3));
  by = B1(k, FLAGOS_FLOAT32, I(5));
  i = space1(k, I(5));
  St1(k, by, i, L1(k, bx, i), NULL);
  CHECK_REFUSED(run(k, bufs), "out-of-range load");
  /* an out-of-range store (negative index) */
  k = K("oob_store", 0);
  by = B1(k, FLAGOS_FLOAT32, I(5));
  i = space1(k, I(5));
  St1(k, by, kir_bin(A, KIR_SUB, i, I(1)), kir_const(A, FLAGOS_FLOAT32, 0), NULL);
  void *b3[1] = {y};
  CHECK_REFUSED(run(k, b3), "negative store index");
  /* a symbol the caller did not give */
  k = K("sym", 1);
  by = B1(k, FLAGOS_FLOAT32, kir_sym(A, 0));
  i = space1(k, kir_sym(A, 0));
  St1(k, by, i, kir_const(A, FLAGOS_FLOAT32, 0), NULL);
  CHECK_REFUSED(run(k, b3), "missing symbol");
  int64_t syms[1] = {5};
  CHECK_OK(kir_interp_run(k, b3, syms, 1));
  CHECK(y[4] == 0.0f, "symbolic extent ran");
  /* strings are not kernel values */
  k = K("str", 0);
  by = B1(k, FLAGOS_STRING, I(1));
  CHECK_REFUSED(run(k, b3), "string buffer");
  /* too much work: 10^8 points, and 100 points times a 10^6-long reduction */
  k = K("big", 0);
  kir_expr_t *ext[2] = {I(10000), I(10000)}, *v[2];
  by = B1(k, FLAGOS_FLOAT32, I(1));
  kir_set_space(k, 2, ext, v);
  St1(k, by, I(0), kir_const(A, FLAGOS_FLOAT32, 1), NULL);
  CHECK_REFUSED(run(k, b3), "10^8 points");
  k = K("bigred", 0);
  by = B1(k, FLAGOS_FLOAT32, I(100));
  i = space1(k, I(100));
  int rv = kir_new_var(k);
  kir_expr_t *rext = I(1000000);
  St1(k, by, i,
      kir_reduce(A, KIR_RSUM, 1, &rv, &rext, kir_cast(A, FLAGOS_FLOAT32, kir_bin(A, KIR_ADD, kir_var(A, rv), i))), NULL);
  float yb[100];
  void *b4[1] = {yb};
  CHECK_REFUSED(run(k, b4), "10^8 reduction steps");
}

/* ---- reductions: identities, NaN-propagating min/max, wrap ---- */
static void test_reductions(void) {
  /* row sums, numpy: np.float32([[1, 2, 3], [4, 5, 6.5]]).sum(1) */
  float m[6] = {1, 2, 3, 4, 5, 6.5f}, rs[2];
  kir_kernel_t *k = K("rowsum", 0);
  int bm = B2(k, FLAGOS_FLOAT32, 2, 3), br = B1(k, FLAGOS_FLOAT32, I(2));
  kir_expr_t *i = space1(k, I(2));
  int j = kir_new_var(k);
  kir_expr_t *e3 = I(3), *idx[2] = {i, kir_var(A, j)};
  St1(k, br, i, kir_reduce(A, KIR_RSUM, 1, &j, &e3, kir_load(k, bm, idx)), NULL);
  void *b1[2] = {m, rs};
  CHECK_OK(run(k, b1));
  CHECK(rs[0] == 6.0f && rs[1] == 15.5f, "row sums %g %g, want 6 15.5", (double)rs[0], (double)rs[1]);

  /* max/min over rows with NaN; and over an empty range (the identity) */
  float nm[6] = {1, NAN, 3, 2, 7, -1}, mx[2], mn[2], emx[1], esum[1];
  k = K("minmax", 0);
  bm = B2(k, FLAGOS_FLOAT32, 2, 3);
  int bmx = B1(k, FLAGOS_FLOAT32, I(2)), bmn = B1(k, FLAGOS_FLOAT32, I(2));
  i = space1(k, I(2));
  j = kir_new_var(k);
  idx[0] = i;
  idx[1] = kir_var(A, j);
  St1(k, bmx, i, kir_reduce(A, KIR_RMAX, 1, &j, &e3, kir_load(k, bm, idx)), NULL);
  St1(k, bmn, i, kir_reduce(A, KIR_RMIN, 1, &j, &e3, kir_load(k, bm, idx)), NULL);
  void *b2[3] = {nm, mx, mn};
  CHECK_OK(run(k, b2));
  CHECK(isnan(mx[0]) && isnan(mn[0]) && mx[1] == 7 && mn[1] == -1, "rmax/rmin with NaN: %g %g %g %g", (double)mx[0],
        (double)mn[0], (double)mx[1], (double)mn[1]);

  k = K("empty", 0);
  bmx = B1(k, FLAGOS_FLOAT32, I(1));
  int bs = B1(k, FLAGOS_FLOAT32, I(1)), bany = B1(k, FLAGOS_BOOL, I(1)), ball = B1(k, FLAGOS_BOOL, I(1));
  i = space1(k, I(1));
  j = kir_new_var(k);
  kir_expr_t *e0 = I(0), *fj = kir_cast(A, FLAGOS_FLOAT32, kir_var(A, j)), *bj = kir_bin(A, KIR_GT, kir_var(A, j), I(0));
  St1(k, bmx, i, kir_reduce(A, KIR_RMAX, 1, &j, &e0, fj), NULL);
  St1(k, bs, i, kir_reduce(A, KIR_RSUM, 1, &j, &e0, fj), NULL);
  St1(k, bany, i, kir_reduce(A, KIR_RANY, 1, &j, &e0, bj), NULL);
  St1(k, ball, i, kir_reduce(A, KIR_RALL, 1, &j, &e0, bj), NULL);
  uint8_t any[1] = {7}, all[1] = {7};
  void *b3[4] = {emx, esum, any, all};
  CHECK_OK(run(k, b3));
  CHECK(isinf(emx[0]) && emx[0] < 0 && esum[0] == 0 && any[0] == 0 && all[0] == 1,
        "empty reductions: max %g sum %g any %d all %d", (double)emx[0], (double)esum[0], any[0], all[0]);

  /* binary max/min propagate NaN from either side */
  float a[4] = {NAN, 1, 2, -0.0f}, b[4] = {1, NAN, 3, 5}, c[4];
  void *b4[3] = {a, b, c};
  CHECK_OK(run(binary_kernel(FLAGOS_FLOAT32, KIR_MAX, 4), b4));
  CHECK(isnan(c[0]) && isnan(c[1]) && c[2] == 3 && c[3] == 5, "max: %g %g %g %g", (double)c[0], (double)c[1],
        (double)c[2], (double)c[3]);
  CHECK_OK(run(binary_kernel(FLAGOS_FLOAT32, KIR_MIN, 4), b4));
  CHECK(isnan(c[0]) && isnan(c[1]) && c[2] == 2 && c[3] == 0, "min: %g %g %g %g", (double)c[0], (double)c[1],
        (double)c[2], (double)c[3]);

  /* integer sums and products wrap; int8 max starts at -128 */
  int8_t v8[3] = {100, 100, -128}, s8[1], mx8[1];
  int32_t v32[3] = {2, 3, -4}, p32[1];
  k = K("intred", 0);
  int b8 = B1(k, FLAGOS_INT8, I(3)), bs8 = B1(k, FLAGOS_INT8, I(1)), bmx8 = B1(k, FLAGOS_INT8, I(1));
  int b32 = B1(k, FLAGOS_INT32, I(3)), bp32 = B1(k, FLAGOS_INT32, I(1));
  i = space1(k, I(1));
  j = kir_new_var(k);
  kir_expr_t *vj = kir_var(A, j);
  St1(k, bs8, i, kir_reduce(A, KIR_RSUM, 1, &j, &e3, L1(k, b8, vj)), NULL);
  St1(k, bmx8, i, kir_reduce(A, KIR_RMAX, 1, &j, &e3, kir_select(A, kir_bin(A, KIR_EQ, vj, I(2)), L1(k, b8, vj), L1(k, b8, I(2)))), NULL);
  St1(k, bp32, i, kir_reduce(A, KIR_RPROD, 1, &j, &e3, L1(k, b32, vj)), NULL);
  void *b5[5] = {v8, s8, mx8, v32, p32};
  CHECK_OK(run(k, b5));
  /* 100 + 100 - 128 = 72 (the partial sum 200 wraps to -56 on the way) */
  CHECK(s8[0] == 72 && mx8[0] == -128 && p32[0] == -24, "int reductions: sum %d max %d prod %d", s8[0], mx8[0], p32[0]);

  /* ROUND is half to even; numpy: np.round(np.float32([0.5, 1.5, 2.5, -0.5, -2.5, 3.4999998])) */
  float rx[6] = {0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 3.4999998f}, ry[6];
  k = K("round", 0);
  int bx = B1(k, FLAGOS_FLOAT32, I(6)), by = B1(k, FLAGOS_FLOAT32, I(6));
  i = space1(k, I(6));
  St1(k, by, i, kir_un(A, KIR_ROUND, L1(k, bx, i)), NULL);
  void *b6[2] = {rx, ry};
  CHECK_OK(run(k, b6));
  CHECK(ry[0] == 0 && !signbit(ry[0]) && ry[1] == 2 && ry[2] == 2 && ry[3] == 0 && signbit(ry[3]) && ry[4] == -2 &&
            ry[5] == 3,
        "round: %g %g %g %g %g %g", (double)ry[0], (double)ry[1], (double)ry[2], (double)ry[3], (double)ry[4],
        (double)ry[5]);

  /* float floor forms; numpy: np.mod(np.float32(-7.5), 2) = 0.5, np.floor_divide(-7.5, 2) = -4 */
  float fa[1] = {-7.5f}, fb[1] = {2.0f}, fc[1];
  void *b7[3] = {fa, fb, fc};
  CHECK_OK(run(binary_kernel(FLAGOS_FLOAT32, KIR_FLOORMOD, 1), b7));
  CHECK(fc[0] == 0.5f, "floormod(-7.5, 2) = %g", (double)fc[0]);
  CHECK_OK(run(binary_kernel(FLAGOS_FLOAT32, KIR_FLOORDIV, 1), b7));
  CHECK(fc[0] == -4.0f, "floordiv(-7.5, 2) = %g", (double)fc[0]);
}

/* ---- order and memoisation ---- */
static void test_serial_and_dag(void) {
  /* a serial prefix sum that reads what it wrote one step before: numpy np.cumsum */
  int32_t x[5] = {3, 1, 4, 1, 5}, y[5];
  kir_kernel_t *k = K("cumsum", 0);
  k->serial = true;
  int bx = B1(k, FLAGOS_INT32, I(5)), by = B1(k, FLAGOS_INT32, I(5));
  kir_expr_t *i = space1(k, I(5));
  kir_expr_t *prev = kir_select(A, kir_bin(A, KIR_EQ, i, I(0)), kir_const_int(A, FLAGOS_INT32, 0),
                                L1(k, by, kir_bin(A, KIR_SUB, i, I(1))));
  St1(k, by, i, kir_bin(A, KIR_ADD, prev, L1(k, bx, i)), NULL);
  void *b1[2] = {x, y};
  CHECK_OK(run(k, b1));
  CHECK(y[0] == 3 && y[1] == 4 && y[2] == 8 && y[3] == 9 && y[4] == 14, "cumsum %d %d %d %d %d", y[0], y[1], y[2], y[3],
        y[4]);

  /* two stores in one point: the second reads what the first wrote */
  int32_t t[2];
  k = K("twostores", 0);
  int bt = B1(k, FLAGOS_INT32, I(2));
  kir_expr_t *z = I(0), *o = I(1);
  kir_expr_t *shared = kir_bin(A, KIR_MUL, L1(k, bt, z), kir_const_int(A, FLAGOS_INT32, 3));
  kir_set_space(k, 0, NULL, NULL);
  St1(k, bt, z, kir_const_int(A, FLAGOS_INT32, 7), NULL);
  St1(k, bt, o, shared, NULL);
  void *b2[1] = {t};
  CHECK_OK(run(k, b2));
  CHECK(t[0] == 7 && t[1] == 21, "store then load: %d %d", t[0], t[1]);

  /* 300 doublings, each node used twice: without memoisation 2^300 evaluations */
  double one[1] = {1.0}, big[1];
  k = K("dag", 0);
  int bo = B1(k, FLAGOS_FLOAT64, I(1)), bb = B1(k, FLAGOS_FLOAT64, I(1));
  i = space1(k, I(1));
  kir_expr_t *e = L1(k, bo, i);
  for (int n = 0; n < 300; n++) e = kir_bin(A, KIR_ADD, e, e);
  St1(k, bb, i, e, NULL);
  void *b3[2] = {one, big};
  CHECK_OK(run(k, b3));
  CHECK(big[0] == ldexp(1.0, 300), "2^300 = %g", big[0]);

  /* a reduction that does not depend on the outer reduction's variable is
   * computed once per point: sum_i sum_j x[j] * (i + 1) with x of 2000 elements
   * (2000 * 2000 steps if it were not; fine either way, but timed by ctest) */
  float xs[2000], out[1];
  for (int n = 0; n < 2000; n++) xs[n] = 1.0f;
  k = K("nested", 0);
  int bxs = B1(k, FLAGOS_FLOAT32, I(2000)), bout = B1(k, FLAGOS_FLOAT32, I(1));
  i = space1(k, I(1));
  int vi = kir_new_var(k), vj = kir_new_var(k);
  kir_expr_t *n2000 = I(2000), *n3 = I(3);
  kir_expr_t *inner = kir_reduce(A, KIR_RSUM, 1, &vj, &n2000, L1(k, bxs, kir_var(A, vj)));
  kir_expr_t *w = kir_cast(A, FLAGOS_FLOAT32, kir_bin(A, KIR_ADD, kir_var(A, vi), I(1)));
  St1(k, bout, i, kir_reduce(A, KIR_RSUM, 1, &vi, &n3, kir_bin(A, KIR_MUL, inner, w)), NULL);
  void *b4[2] = {xs, out};
  CHECK_OK(run(k, b4));
  CHECK(out[0] == 12000.0f, "nested sums = %g, want 12000", (double)out[0]);
}

/* ---- folding ---- */
static const fir_node_t *producer_of(const fir_model_t *m, const char *value) {
  for (int i = 0; i < m->graph->n_nodes; i++)
    for (int k = 0; k < m->graph->nodes[i]->n_outputs; k++)
      if (m->graph->nodes[i]->outputs[k] && strcmp(m->graph->nodes[i]->outputs[k]->name, value) == 0)
        return m->graph->nodes[i];
  return NULL;
}

static void check_reshape_shape(const fir_model_t *m, const char *out, int n, const int64_t *want) {
  const fir_node_t *r = producer_of(m, out);
  CHECK(r && strcmp(r->op_type, "Reshape") == 0, "'%s' is made by a Reshape", out);
  if (!r || r->n_inputs < 2 || !r->inputs[1]) return;
  const fir_tensor_t *t = r->inputs[1]->init;
  CHECK(t && t->data && t->dtype == FLAGOS_INT64 && t->rank == 1 && t->numel == n,
        "the shape of Reshape -> '%s' is a constant i64[%d]", out, n);
  if (!t || t->numel != n || t->dtype != FLAGOS_INT64) return;
  for (int i = 0; i < n; i++)
    CHECK(((int64_t *)t->data)[i] == want[i], "shape of '%s'[%d] = %lld, want %lld", out, i,
          (long long)((int64_t *)t->data)[i], (long long)want[i]);
  const fir_type_t *ty = r->outputs[0]->type;
  CHECK(fir_type_is_static(ty) && ty->rank == n, "'%s' has a static type of rank %d", out, n);
}

static void test_fold_expanded(const char *test, int n, const int64_t *reduced, const int64_t *xshape) {
  char path[1024];
  snprintf(path, sizeof path, "%s/onnx-node/%s/model.onnx", FLAGOS_CONFORMANCE_DIR, test);
  fir_model_t *m = NULL;
  flagos_status_t st = onnx_import_file(path, &m);
  CHECK(!st, "import %s: %s", path, st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  check_reshape_shape(m, "Mean", n, reduced);
  check_reshape_shape(m, "InvStdDev", n, reduced);
  check_reshape_shape(m, "Y", n, xshape);
  /* the shape arithmetic is gone; the data path (which reads X) stays */
  for (int i = 0; i < m->graph->n_nodes; i++) {
    const char *op = m->graph->nodes[i]->op_type;
    CHECK(strcmp(op, "Shape") != 0 && strcmp(op, "Size") != 0 && strcmp(op, "Concat") != 0 &&
              strcmp(op, "ConstantOfShape") != 0,
          "%s: a %s node was not folded", test, op);
  }
  const fir_node_t *y = producer_of(m, "Y");
  CHECK(y && y->inputs[0] && y->inputs[0]->producer && !y->inputs[0]->init, "%s: the data input of Reshape -> Y stays computed", test);
  fir_model_destroy(m);
}

static const char k_text_model[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[2]) -> (%y: f32[2], %h: f16[3], %z: f32[2]) {\n"
    "  %a: f32[2] = const [2.0, 3.0]\n"
    "  %s: f32[2] = Sqrt(%a)\n"
    "  %y: f32[2] = Add(%s, %x)\n"
    "  %c: f32[3] = const [0.1, 65519.0, 3e-08]\n"
    "  %h: f16[3] = Cast(%c) {to = 10}\n"
    "  %z: f32[2] = Mul(%s, %s)\n"
    "}\n";

static const fir_value_t *value_named(const fir_model_t *m, const char *name) {
  for (int i = 0; i < m->graph->n_values; i++)
    if (strcmp(m->graph->values[i]->name, name) == 0) return m->graph->values[i];
  return NULL;
}

static void test_fold_values(void) {
  fir_model_t *m = NULL;
  flagos_status_t st = fir_parse(k_text_model, sizeof k_text_model - 1, &m);
  CHECK(!st, "parse: %s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  if (!m) return;
  bool changed = false;
  CHECK_OK(pass_constants_to_initializers(m));
  CHECK_OK(pass_fold_constants(m, &changed));
  CHECK(changed, "something was folded");
  const fir_value_t *s = value_named(m, "s"), *h = value_named(m, "h"), *z = value_named(m, "z");
  /* numpy: np.sqrt(np.float32([2, 3])).view(np.uint32); (s * s) in float32; astype(np.float16) */
  CHECK(s && s->init && !s->producer && s->init->dtype == FLAGOS_FLOAT32 && s->init->numel == 2, "s is a constant");
  if (s && s->init && s->init->numel == 2) {
    const float *v = s->init->data;
    CHECK(bits_of(v[0]) == 1068827891u && bits_of(v[1]) == 1071494103u, "sqrt folded: %u %u", bits_of(v[0]),
          bits_of(v[1]));
  }
  CHECK(z && z->init && !z->producer && z->init->numel == 2, "z (a graph output) is a constant");
  if (z && z->init && z->init->numel == 2) {
    const float *v = z->init->data;
    CHECK(bits_of(v[0]) == 1073741823u && bits_of(v[1]) == 1077936128u, "sqrt(2)^2 in f32: %u %u", bits_of(v[0]),
          bits_of(v[1]));
  }
  CHECK(h && h->init && h->init->dtype == FLAGOS_FLOAT16 && h->init->numel == 3, "h is an f16 constant");
  if (h && h->init && h->init->numel == 3) {
    const uint16_t *v = h->init->data;
    CHECK(v[0] == 11878 && v[1] == 31743 && v[2] == 1, "Cast to f16 folded: %u %u %u", v[0], v[1], v[2]);
  }
  const fir_node_t *add = producer_of(m, "y");
  CHECK(add && strcmp(add->op_type, "Add") == 0, "Add of a graph input stays");
  CHECK(m->graph->n_nodes == 1, "one node left, not %d", m->graph->n_nodes);
  fir_model_destroy(m);
}

int main(void) {
  A = fl_arena_create();
  test_int_wrap();
  test_int_div();
  test_f32_rounding();
  test_f16();
  test_casts();
  test_select_and_refusals();
  test_reductions();
  test_serial_and_dag();
  /* onnx.reference.ReferenceEvaluator on the models' intermediates (ReducedShape, XShape) */
  static const int64_t r2[2] = {1, 1}, x2[2] = {3, 4}, r4[4] = {2, 3, 1, 1}, x4[4] = {2, 3, 4, 5};
  static const int64_t r3[3] = {2, 1, 1}, x3[3] = {2, 3, 5};
  test_fold_expanded("test_layer_normalization_2d_axis0_expanded", 2, r2, x2);
  test_fold_expanded("test_layer_normalization_4d_axis_negative_2_expanded", 4, r4, x4);
  test_fold_expanded("test_layer_normalization_3d_axis1_epsilon_expanded", 3, r3, x3);
  test_fold_values();
  fl_arena_destroy(A);
  if (failures) {
    fprintf(stderr, "%d of %d check(s) failed\n", failures, checks);
    return 1;
  }
  printf("ok (%d checks)\n", checks);
  return 0;
}
