/* Values of the pointwise families on edge cases ONNX's conformance data does not
 * reach (float8e8m0 rounding modes, signed BitShift past the width, floor-mod of
 * floats, sub-byte wrap-around, blocked quantisation with a partial block...).
 * Each case builds a one-node FlagIR model, runs the operator's shape rule and
 * lowering, and executes the kernels with the kernel IR interpreter (the C
 * emitter's semantics). Expected values were computed with onnx.reference
 * (onnx 1.23) and NumPy, or in double precision from the operator's formula where
 * the f32 reference itself loses digits (Gelu), never with FlagOS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kir_interp.h"
#include "ops/ops.h"

#define MAXV 16

typedef struct {
  flagos_dtype_t dt;
  int rank;
  int64_t dims[4];
  int n;
  double v[MAXV];
} tval_t;

typedef struct {
  const char *name;
  int kind; /* FIR_ATTR_INT, FIR_ATTR_FLOAT, FIR_ATTR_STRING */
  int64_t i;
  const char *s;
} tattr_t;

typedef struct {
  const char *label, *op;
  int opset;
  tattr_t attrs[3];
  int n_in;
  tval_t in[3];
  int n_out;
  tval_t out[3];
} tcase_t;

#define V1(dt, n, ...) {dt, 1, {n}, n, {__VA_ARGS__}}
#define V2(dt, a, b, ...) {dt, 2, {a, b}, (a) * (b), {__VA_ARGS__}}
#define S0(dt, x) {dt, 0, {0}, 1, {x}}
#define AI(n, v) {n, FIR_ATTR_INT, v, NULL}
#define AS(n, v) {n, FIR_ATTR_STRING, 0, v}

static const tcase_t k_cases[] = {
    {"floor-mod of floats (fmod=0, opset 28)", "Mod", 28, {AI("fmod", 0)}, 2,
     {V1(FLAGOS_FLOAT32, 6, 5.5, -5.5, 5.5, -5.5, 0, 3), V1(FLAGOS_FLOAT32, 6, 2, 2, -2, -2, 3, INFINITY)}, 1,
     {V1(FLAGOS_FLOAT32, 6, 1.5, 0.5, -0.5, -1.5, 0, 3)}},
    {"integer Div truncates", "Div", 14, {{0}}, 2,
     {V1(FLAGOS_INT32, 5, -7, 7, -7, 7, 0), V1(FLAGOS_INT32, 5, 2, 2, -2, -2, 5)}, 1, {V1(FLAGOS_INT32, 5, -3, 3, 3, -3, 0)}},
    {"signed arithmetic right shift", "BitShift", 28, {AS("direction", "RIGHT")}, 2,
     {V1(FLAGOS_INT8, 4, -100, 100, -1, 64), V1(FLAGOS_INT8, 4, 2, 2, 8, 1)}, 1, {V1(FLAGOS_INT8, 4, -25, 25, -1, 32)}},
    {"signed left shift past the width and by a negative count", "BitShift", 28, {AS("direction", "LEFT")}, 2,
     {V1(FLAGOS_INT8, 4, -100, 100, -1, 64), V1(FLAGOS_INT8, 4, 1, 9, -1, 1)}, 1, {V1(FLAGOS_INT8, 4, 56, 0, 0, -128)}},
    {"Cast to float8e8m0, round up", "Cast", 25, {AI("to", FLAGOS_FLOAT8E8M0), AS("round_mode", "up")}, 1,
     {V1(FLAGOS_FLOAT32, 6, 0.75, 1.25, 1.5, 3.0, 1.0, 0.0)}, 1,
     {V1(FLAGOS_FLOAT8E8M0, 6, 1, 2, 2, 4, 1, 0x1p-127)}},
    {"Cast to float8e8m0, round down", "Cast", 25, {AI("to", FLAGOS_FLOAT8E8M0), AS("round_mode", "down")}, 1,
     {V1(FLAGOS_FLOAT32, 6, 0.75, 1.25, 1.5, 3.0, 1.0, 0.0)}, 1,
     {V1(FLAGOS_FLOAT8E8M0, 6, 0.5, 1, 1, 2, 1, 0x1p-127)}},
    {"Cast to float8e8m0, round to nearest", "Cast", 25, {AI("to", FLAGOS_FLOAT8E8M0), AS("round_mode", "nearest")}, 1,
     {V1(FLAGOS_FLOAT32, 6, 0.75, 1.25, 1.5, 3.0, 1.0, 0.0)}, 1,
     {V1(FLAGOS_FLOAT8E8M0, 6, 1, 1, 2, 4, 1, 0x1p-127)}},
    {"Cast float to int4 truncates and wraps", "Cast", 25, {AI("to", FLAGOS_INT4)}, 1,
     {V1(FLAGOS_FLOAT32, 5, 8, -9, 7.9, -8.5, 3)}, 1, {V1(FLAGOS_INT4, 5, -8, 7, 7, -8, 3)}},
    {"Cast to float8e4m3fn without saturation", "Cast", 21, {AI("to", FLAGOS_FLOAT8E4M3FN), AI("saturate", 0)}, 1,
     {V1(FLAGOS_FLOAT32, 4, 1000, -1000, 0.3, INFINITY)}, 1, {V1(FLAGOS_FLOAT8E4M3FN, 4, NAN, NAN, 0.3125, NAN)}},
    {"Cast to float8e4m3fn with saturation", "Cast", 21, {AI("to", FLAGOS_FLOAT8E4M3FN)}, 1,
     {V1(FLAGOS_FLOAT32, 4, 1000, -1000, 0.3, INFINITY)}, 1, {V1(FLAGOS_FLOAT8E4M3FN, 4, 448, -448, 0.3125, 448)}},
    {"blocked QuantizeLinear with a partial block, int4", "QuantizeLinear", 21,
     {AI("axis", 1), AI("block_size", 3), AI("output_dtype", FLAGOS_INT4)}, 2,
     {V2(FLAGOS_FLOAT32, 2, 5, 1, 2, 3, 4, 5, -6, -7, -8, -9, -10), V2(FLAGOS_FLOAT32, 2, 2, 0.5, 2, 1, 0.25)}, 1,
     {V2(FLAGOS_INT4, 2, 5, 2, 4, 6, 2, 2, -6, -7, -8, -8, -8)}},
    {"DynamicQuantizeLinear", "DynamicQuantizeLinear", 11, {{0}}, 1, {V1(FLAGOS_FLOAT32, 4, -1, 0, 2, 3.3)}, 3,
     {V1(FLAGOS_UINT8, 4, 0, 59, 178, 255), S0(FLAGOS_FLOAT32, 0.01686275), S0(FLAGOS_UINT8, 59)}},
    {"integer Pow", "Pow", 15, {{0}}, 2, {V1(FLAGOS_INT32, 4, 2, 3, -2, 5), V1(FLAGOS_INT32, 4, 10, 3, 3, 0)}, 1,
     {V1(FLAGOS_INT32, 4, 1024, 27, -8, 1)}},
    {"Gelu, tanh approximation", "Gelu", 20, {AS("approximate", "tanh")}, 1,
     {V1(FLAGOS_FLOAT32, 5, -3, -0.5, 0, 0.5, 3)}, 1,
     {V1(FLAGOS_FLOAT32, 5, -0.0036373920817729943, -0.15428599017485606, 0.0, 0.34571400982514394, 2.996362607918227)}},
    {"Sigmoid at large magnitudes", "Sigmoid", 13, {{0}}, 1, {V1(FLAGOS_FLOAT32, 5, -100, -1, 0, 1, 100)}, 1,
     {V1(FLAGOS_FLOAT32, 5, 3.783505853677006e-44, 0.26894140243530273, 0.5, 0.7310585975646973, 1.0)}},
    {"BitCast float32 -> int32", "BitCast", 26, {AI("to", FLAGOS_INT32)}, 1, {V1(FLAGOS_FLOAT32, 2, 1.0, -2.0)}, 1,
     {V1(FLAGOS_INT32, 2, 1065353216, -1073741824)}},
    {"BitCast int4 -> uint4", "BitCast", 26, {AI("to", FLAGOS_UINT4)}, 1, {V1(FLAGOS_INT4, 3, -1, 7, -8)}, 1,
     {V1(FLAGOS_UINT4, 3, 15, 7, 8)}},
    {"IsInf, negative only", "IsInf", 20, {AI("detect_positive", 0)}, 1,
     {V1(FLAGOS_FLOAT32, 4, INFINITY, -INFINITY, NAN, 1)}, 1, {V1(FLAGOS_BOOL, 4, 0, 1, 0, 0)}},
    {"Where broadcasting three shapes", "Where", 16, {{0}}, 3,
     {V2(FLAGOS_BOOL, 2, 1, 1, 0), V1(FLAGOS_INT64, 3, 1, 2, 3), V2(FLAGOS_INT64, 2, 1, 10, 20)}, 1,
     {V2(FLAGOS_INT64, 2, 3, 1, 2, 3, 20, 20, 20)}},
    {"Clip with min above max gives max", "Clip", 13, {{0}}, 3,
     {V1(FLAGOS_INT16, 4, -5, 0, 5, 10), S0(FLAGOS_INT16, 6), S0(FLAGOS_INT16, 2)}, 1, {V1(FLAGOS_INT16, 4, 2, 2, 2, 2)}},
    {"Mean of broadcast inputs", "Mean", 13, {{0}}, 2, {V2(FLAGOS_FLOAT32, 1, 3, 1, 2, 3), V2(FLAGOS_FLOAT32, 2, 1, 10, 20)}, 1,
     {V2(FLAGOS_FLOAT32, 2, 3, 5.5, 6, 6.5, 10.5, 11, 11.5)}},
};

static void store_elem(flagos_dtype_t dt, void *p, int64_t i, double v) {
  switch (dt) {
  case FLAGOS_FLOAT32: ((float *)p)[i] = (float)v; break;
  case FLAGOS_FLOAT64: ((double *)p)[i] = v; break;
  case FLAGOS_INT8:
  case FLAGOS_INT4: ((int8_t *)p)[i] = (int8_t)v; break;
  case FLAGOS_UINT8:
  case FLAGOS_BOOL: ((uint8_t *)p)[i] = (uint8_t)v; break;
  case FLAGOS_INT16: ((int16_t *)p)[i] = (int16_t)v; break;
  case FLAGOS_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
  case FLAGOS_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
  default: fprintf(stderr, "test bug: no input store for %s\n", flagos_dtype_name(dt)); exit(2);
  }
}

static bool same(flagos_dtype_t dt, double got, double want) {
  if (isnan(want)) return isnan(got);
  if (flagos_dtype_is_float(dt) && dt == FLAGOS_FLOAT32 && !isinf(want))
    return fabs(got - want) <= 1e-6 * fabs(want) + 1e-45;
  return got == want;
}

/* Runs one case; returns the number of mismatching elements (or 1 on an error). */
static int run_case(const tcase_t *tc) {
  fir_model_t *m = fir_model_create();
  fir_graph_t *g = fir_graph_create(m, NULL, "g");
  m->graph = g;
  fir_value_t *ins[3], *outs[3];
  for (int k = 0; k < tc->n_in; k++) {
    const tval_t *tv = &tc->in[k];
    char name[16];
    snprintf(name, sizeof name, "i%d", k);
    ins[k] = fir_value_create(g, name, fir_type_tensor(m, tv->dt, tv->rank, tv->dims));
    fir_tensor_t *t = fir_tensor_create(m, tv->dt, tv->rank, tv->dims);
    for (int i = 0; i < tv->n; i++) store_elem(tv->dt, t->data, i, tv->v[i]);
    ins[k]->init = t;
  }
  for (int k = 0; k < tc->n_out; k++) {
    char name[16];
    snprintf(name, sizeof name, "o%d", k);
    outs[k] = fir_value_create(g, name, fir_type_unknown(m));
  }
  fir_node_t *n = fir_node_create(g, tc->op, "", "n", tc->n_in, ins, tc->n_out, outs);
  n->opset = tc->opset;
  for (int a = 0; a < 3 && tc->attrs[a].name; a++) {
    fir_attr_t *at = fir_node_add_attr(n, tc->attrs[a].name, (fir_attr_kind_t)tc->attrs[a].kind);
    at->i = tc->attrs[a].i;
    if (tc->attrs[a].s) {
      at->s = tc->attrs[a].s;
      at->s_len = strlen(tc->attrs[a].s);
    }
  }

  int bad = 0;
  fl_arena_t *a = fl_arena_create();
  ops_tensor_info_t in[3], out[3];
  for (int k = 0; k < tc->n_in; k++) ops_info_from_value(&in[k], ins[k]);
  ops_ctx_t c;
  ops_ctx_init(&c, a, n, in, out, false);
  const ops_def_t *d = ops_find(tc->op, "");
  flagos_status_t st = d ? ops_ctx_infer(&c, d) : FL_ERR(FLAGOS_ERR_NOT_FOUND, "no operator %s", tc->op);
  if (!st) {
    c.kernel_prefix = "t";
    st = d->lower(&c);
  }
  void *obuf[3] = {0}, **tbuf = NULL;
  int64_t *syms = NULL;
  if (!st) {
    syms = calloc((size_t)c.n_syms + 1, sizeof(*syms));
    ops_ctx_fill_syms(&c, syms);
    for (int k = 0; k < tc->n_out; k++) obuf[k] = calloc((size_t)(out[k].numel > 0 ? out[k].numel : 1), 8);
    tbuf = calloc((size_t)c.n_temps + 1, sizeof(*tbuf));
    for (int t = 0; t < c.n_temps; t++) {
      int64_t ne = 1;
      kir_eval_int(c.temps[t].numel, syms, c.n_syms, &ne);
      tbuf[t] = calloc((size_t)(ne > 0 ? ne : 1), 8);
    }
  }
  for (int s = 0; !st && s < c.n_steps; s++) {
    const kir_kernel_t *kk = c.steps[s].kernel;
    void *bufs[16];
    for (int b = 0; b < kk->n_bufs; b++) {
      const ops_bind_t *bd = &c.steps[s].binds[b];
      bufs[b] = bd->kind == OPS_BIND_INPUT ? (void *)in[bd->index].value
                : bd->kind == OPS_BIND_OUTPUT ? obuf[bd->index] : tbuf[bd->index];
    }
    st = kir_interp_run(kk, bufs, syms, c.n_syms);
  }
  if (st) {
    fprintf(stderr, "FAIL %s: %s\n", tc->label, flagos_status_message(st));
    flagos_status_free(st);
    bad = 1;
  }
  for (int k = 0; !bad && k < tc->n_out; k++) {
    const tval_t *want = &tc->out[k];
    bool shape_ok = out[k].dtype == want->dt && out[k].rank == want->rank;
    for (int i = 0; shape_ok && i < want->rank; i++) shape_ok = out[k].dims[i] == want->dims[i];
    if (!shape_ok) {
      fprintf(stderr, "FAIL %s: output %d is %s of rank %d, expected %s of rank %d\n", tc->label, k,
              flagos_dtype_name(out[k].dtype), out[k].rank, flagos_dtype_name(want->dt), want->rank);
      bad++;
      continue;
    }
    for (int i = 0; i < want->n; i++) {
      double got = fl_load_as_double(want->dt, obuf[k], (size_t)i);
      if (!same(want->dt, got, want->v[i])) {
        fprintf(stderr, "FAIL %s: output %d[%d] = %.9g, expected %.9g\n", tc->label, k, i, got, want->v[i]);
        bad++;
      }
    }
  }
  for (int k = 0; k < 3; k++) free(obuf[k]);
  for (int t = 0; tbuf && t < c.n_temps; t++) free(tbuf[t]);
  free(tbuf);
  free(syms);
  fl_arena_destroy(a);
  fir_model_destroy(m);
  return bad;
}

int main(void) {
  int failed = 0;
  for (size_t i = 0; i < FL_ARRAY_LEN(k_cases); i++) failed += run_case(&k_cases[i]) != 0;
  printf("%zu cases, %d failed\n", FL_ARRAY_LEN(k_cases), failed);
  return failed ? 1 : 0;
}
