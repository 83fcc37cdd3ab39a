/* Elementwise fusion (src/passes/fuse.c, src/ops/fused.c):
 * (a) BERT's exported GELU chain with a broadcast bias, Add -> Div -> Erf -> Add
 *     -> Mul -> Mul, becomes one FusedElementwise node lowered to one kernel,
 *     whose intermediate read by a graph output is a second output; compiled to
 *     a bundle file, reopened (the FlagIR text round trip) and run on the cpu it
 *     gives NumPy's values (float32, math.erf);
 * (b) a node that would close a cycle through a non-pointwise node stays out;
 * (c) a node reading two groups merges them, except where the merged node
 *     would read a node that reads it (two chains joined through Softmax), and
 *     the result is still NumPy's;
 * (d) an f16 chain gives NumPy's float16 values bit for bit (every node's
 *     result rounded to f16, as the separate nodes' stores round it);
 * (e) FLAGOS_FUSE=0 leaves the graph alone;
 * (f) Cast joins a group (f32 -> int32 truncates toward zero, -> f32 back; the
 *     result is NumPy's); a CastLike, once folding has made it the Cast to
 *     its second input's type, joins too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fir_util.h"
#include "compiler/compiler.h"
#include "flagos/flagos.h"
#include "ops/fused.h"
#include "passes/passes.h"

static const char k_gelu[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[2,3]) -> (%y: f32[2,3], %a: f32[2,3]) {\n"
    "  %bias: f32[3] = const [0.1, -0.2, 0.3]\n"
    "  %sqrt2: f32[] = const [1.4142135]\n"
    "  %one: f32[] = const [1.0]\n"
    "  %half: f32[] = const [0.5]\n"
    "  %a: f32[2,3] = Add(%x, %bias)\n"
    "  %d: f32[2,3] = Div(%a, %sqrt2)\n"
    "  %e: f32[2,3] = Erf(%d)\n"
    "  %p: f32[2,3] = Add(%e, %one)\n"
    "  %q: f32[2,3] = Mul(%a, %p)\n"
    "  %y: f32[2,3] = Mul(%q, %half)\n"
    "}\n";

/* y = float32(int32(x * 2.5)) + 0.5, with a cast in each direction */
static const char k_cast[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[4]) -> (%y: f32[4]) {\n"
    "  %k: f32[] = const [2.5]\n"
    "  %h: f32[] = const [0.5]\n"
    "  %m: f32[4] = Mul(%x, %k)\n"
    "  %i: i32[4] = Cast(%m) {to = 6}\n"
    "  %f: f32[4] = Cast(%i) {to = 1}\n"
    "  %y: f32[4] = Add(%f, %h)\n"
    "}\n";

/* Exp -> CastLike -> Neg: the CastLike becomes Cast(to = f16) before fusion,
 * so the three are one node (a CastLike itself is not fused: its group would
 * load `like`). */
static const char k_castlike[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[4]) -> (%y: f16[4]) {\n"
    "  %like: f16[2] = const dense<\"003c0040\">\n"
    "  %e: f32[4] = Exp(%x)\n"
    "  %c: f16[4] = CastLike(%e, %like)\n"
    "  %y: f16[4] = Neg(%c)\n"
    "}\n";

/* Add -> Exp and Add reading Exp through Softmax: fusing the two would make a cycle. */
static const char k_cycle[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[2,3]) -> (%c: f32[2,3]) {\n"
    "  %a: f32[2,3] = Exp(%x)\n"
    "  %t: f32[2,3] = Softmax(%a)\n"
    "  %c: f32[2,3] = Add(%a, %t)\n"
    "}\n";

/* a1 (one group) feeds r's group through Softmax (not pointwise), and r's group
 * feeds a2, which also reads a1: a2 may join r's group but a1's group may not
 * merge with it (the merged node would read Softmax, which reads it). */
static const char k_cross[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[4]) -> (%b_in: f32[4], %a2: f32[4]) {\n"
    "  %a1: f32[4] = Neg(%x)\n"
    "  %r: f32[4] = Exp(%x)\n"
    "  %s: f32[4] = Softmax(%a1)\n"
    "  %b_in: f32[4] = Add(%r, %s)\n"
    "  %b_out: f32[4] = Sqrt(%r)\n"
    "  %a2: f32[4] = Mul(%a1, %b_out)\n"
    "}\n";

/* A node reading two groups joins them into one: y = (x + 1) * exp(x). */
static const char k_merge[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f32[4]) -> (%y: f32[4]) {\n"
    "  %one: f32[] = const [1.0]\n"
    "  %p: f32[4] = Add(%x, %one)\n"
    "  %e: f32[4] = Exp(%x)\n"
    "  %y: f32[4] = Mul(%p, %e)\n"
    "}\n";

/* f16: each node rounds its result to f16, and the fused kernel must too. */
static const char k_half[] =
    "flagir 1\n"
    "ir_version 8\n"
    "producer \"\"\n"
    "opset \"\" 17\n"
    "graph \"g\" (%x: f16[4]) -> (%y: f16[4]) {\n"
    "  %c1: f16[] = const dense<\"662e\">\n"
    "  %c2: f16[] = const dense<\"0042\">\n"
    "  %a: f16[4] = Add(%x, %c1)\n"
    "  %b: f16[4] = Mul(%a, %c2)\n"
    "  %y: f16[4] = Sub(%b, %x)\n"
    "}\n";

/* The kernels node n lowers to, as the compiler lowers it. */
static int kernels_of(const fir_node_t *n) {
  fl_arena_t *a = fl_arena_create();
  const ops_def_t *d = ops_find(n->op_type, n->domain);
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * (size_t)(n->n_outputs + 1));
  for (int k = 0; k < n->n_inputs; k++) ops_info_from_value(&in[k], n->inputs[k]);
  ops_ctx_t c;
  ops_ctx_init(&c, a, n, in, out, false);
  int steps = -1;
  flagos_status_t st = d ? ops_ctx_infer(&c, d) : FL_ERR(FLAGOS_ERR_NOT_FOUND, "no operator");
  if (!st) st = d->lower(&c);
  CHECK(!st, "lowering %s: %s", n->op_type, flagos_status_message(st));
  if (!st) steps = c.n_steps;
  flagos_status_free(st);
  fl_arena_destroy(a);
  return steps;
}

/* Compiles m for the cpu to a bundle file, reopens it, runs it on x and checks
 * each output against want[k] (n elements each). */
static void run_and_compare(fir_model_t *m, const char *name, flagos_dtype_t dt, const void *x, const int64_t *xdims,
                            int xrank, int n_out, const void *const *want, int64_t n) {
  char path[256];
  snprintf(path, sizeof path, "/tmp/flagos_test_fuse_%d_%s.flagos", (int)getpid(), name);
  flagos_compile_options_t o = {.targets = "cpu"};
  void *img = NULL;
  size_t len = 0;
  flagos_status_t st = compiler_build_bundle(m, &o, &img, &len);
  if (!st) st = fl_write_file(path, img, len);
  free(img);
  flagos_bundle_t *b = NULL;
  if (!st) st = flagos_bundle_open(path, &b);
  flagos_session_t *s = NULL;
  flagos_session_options_t so = {.device = "cpu"};
  if (!st) st = flagos_session_create(b, &so, &s);
  flagos_value_t vin = {.kind = FLAGOS_VALUE_TENSOR}, out[4];
  memset(out, 0, sizeof out);
  vin.tensor.dtype = dt;
  vin.tensor.rank = xrank;
  for (int i = 0; i < xrank; i++) vin.tensor.dims[i] = xdims[i];
  vin.tensor.data = (void *)x;
  vin.tensor.nbytes = (size_t)n * flagos_dtype_size(dt);
  if (!st) st = flagos_session_run(s, &vin, 1, out, n_out);
  CHECK(!st, "%s: compile/open/run: %s", name, flagos_status_message(st));
  flagos_status_free(st);
  for (int k = 0; k < n_out && s; k++) {
    CHECK(out[k].tensor.data && flagos_tensor_numel(&out[k].tensor) == n, "%s: output %d has %lld elements", name, k,
          (long long)(out[k].tensor.data ? flagos_tensor_numel(&out[k].tensor) : -1));
    for (int64_t i = 0; out[k].tensor.data && i < n; i++) {
      if (dt == FLAGOS_FLOAT16) { /* bit for bit */
        uint16_t got = ((const uint16_t *)out[k].tensor.data)[i], w = ((const uint16_t *)want[k])[i];
        CHECK(got == w, "%s: output %d[%lld] = f16 0x%04x, NumPy 0x%04x", name, k, (long long)i, got, w);
        continue;
      }
      float got = ((const float *)out[k].tensor.data)[i], w = ((const float *)want[k])[i];
      CHECK(fabsf(got - w) <= 1e-5f + 1e-5f * fabsf(w), "%s: output %d[%lld] = %.8g, NumPy %.8g", name, k,
            (long long)i, got, w);
    }
    flagos_value_clear(&out[k]);
  }
  if (s) flagos_session_destroy(s);
  if (b) flagos_bundle_close(b);
  unlink(path);
}

static void test_gelu_chain(void) {
  fir_model_t *m = parse(k_gelu);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  CHECK(m->graph->n_nodes == 1, "the chain is one node (%d nodes)", m->graph->n_nodes);
  const fir_node_t *f = find_op(m, OPS_FUSED_OP);
  CHECK(f && strcmp(f->domain, OPS_FUSED_DOMAIN) == 0, "a %s node of domain %s", OPS_FUSED_OP, OPS_FUSED_DOMAIN);
  if (f) {
    const fir_attr_t *at = fir_node_attr(f, OPS_FUSED_BODY);
    CHECK(at && at->kind == FIR_ATTR_GRAPH && at->g && at->g->n_nodes == 6, "its body holds the 6 nodes");
    /* inputs: x, bias, sqrt2, one, half; outputs: a (a graph output) and y */
    CHECK(f->n_inputs == 5 && f->n_outputs == 2, "%d inputs, %d outputs", f->n_inputs, f->n_outputs);
    CHECK(f->n_outputs == 2 && strcmp(f->outputs[0]->name, "a") == 0 && strcmp(f->outputs[1]->name, "y") == 0,
          "outputs a and y");
    CHECK(strncmp(f->name, "", 1) != 0, "the fused node has a name");
    CHECK(kernels_of(f) == 1, "one kernel");
  }
  /* NumPy, float32: a = x + bias; y = a * (erf(a / 1.4142135) + 1) * 0.5 */
  static const float x[6] = {-2.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};
  static const float want_y[6] = {-0.05456147f, -0.16937456f, 0.18537344f, 0.43544814f, 0.6305157f, 3.2984047f};
  static const float want_a[6] = {-1.9f, -0.7f, 0.3f, 0.6f, 0.8f, 3.3f};
  const void *want[2] = {want_y, want_a};
  static const int64_t dims[2] = {2, 3};
  run_and_compare(m, "gelu", FLAGOS_FLOAT32, x, dims, 2, 2, want, 6);
  fir_model_destroy(m);
}

static void test_no_cycle(void) {
  fir_model_t *m = parse(k_cycle);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  /* inline fusion then runs Exp in Softmax's kernel, which also stores a for the Add */
  CHECK(count_op(m, OPS_FUSED_OP) == 0 && count_op(m, OPS_INLINE_OP) == 1 && count_op(m, "Add") == 1 &&
            m->graph->n_nodes == 2,
        "Exp and Add stay apart (%d nodes)", m->graph->n_nodes);
  fir_model_destroy(m);

  m = parse(k_cross);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  CHECK_OK(fir_verify(m));
  /* inline fusion then runs Neg in Softmax's kernel, which also stores a1 for the fused node */
  CHECK(count_op(m, OPS_FUSED_OP) == 1 && count_op(m, OPS_INLINE_OP) == 1 && m->graph->n_nodes == 2,
        "Neg in Softmax, and one fused node (%d nodes)", m->graph->n_nodes);
  const fir_node_t *f = find_op(m, OPS_FUSED_OP);
  const fir_attr_t *at = f ? fir_node_attr(f, OPS_FUSED_BODY) : NULL;
  CHECK(at && at->g && at->g->n_nodes == 4, "Exp, Add, Sqrt and Mul are fused");
  /* NumPy, float32: a1 = -x; r = exp(x); s = softmax(a1); b_in = r + s; a2 = a1 * sqrt(r) */
  static const float x[4] = {-1.0f, 0.0f, 0.5f, 2.0f};
  static const float want_b[4] = {0.9773395f, 1.2242079f, 1.7847102f, 7.419399f};
  static const float want_a2[4] = {0.60653067f, -0.0f, -0.6420127f, -5.4365635f};
  const void *want[2] = {want_b, want_a2};
  static const int64_t dims[1] = {4};
  run_and_compare(m, "cross", FLAGOS_FLOAT32, x, dims, 1, 2, want, 4);
  fir_model_destroy(m);

  m = parse(k_merge);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  CHECK(count_op(m, OPS_FUSED_OP) == 1 && m->graph->n_nodes == 1, "Add, Exp and Mul are one node (%d nodes)",
        m->graph->n_nodes);
  fir_model_destroy(m);
}

static void test_half(void) {
  fir_model_t *m = parse(k_half);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  CHECK(count_op(m, OPS_FUSED_OP) == 1 && m->graph->n_nodes == 1, "the f16 chain is one node (%d nodes)",
        m->graph->n_nodes);
  /* NumPy float16 (each operation rounded to f16; c1 = f16(0.1) = 0x2e66): x = [16.25, -6.117, -5.28,
   * -10.73]; y = (x + f16(0.1)) * 3 - x. Computing the chain in f32 and
   * rounding once gives 0x501a 0xc9f8 0xc922 0xcd4a instead. */
  static const uint16_t x[4] = {0x4c10, 0xc61e, 0xc548, 0xc95d};
  static const uint16_t want_y[4] = {0x5019, 0xc9f7, 0xc921, 0xcd4a};
  const void *want[1] = {want_y};
  static const int64_t dims[1] = {4};
  run_and_compare(m, "half", FLAGOS_FLOAT16, x, dims, 1, 1, want, 4);
  fir_model_destroy(m);
}

static void test_cast(void) {
  fir_model_t *m = parse(k_cast);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  const fir_node_t *f = find_op(m, OPS_FUSED_OP);
  const fir_attr_t *at = f ? fir_node_attr(f, OPS_FUSED_BODY) : NULL;
  CHECK(m->graph->n_nodes == 1 && at && at->g && at->g->n_nodes == 4, "Mul, both Casts and Add are one node (%d nodes)",
        m->graph->n_nodes);
  /* NumPy: (np.float32(x) * 2.5).astype(np.int32).astype(np.float32) + 0.5 */
  static const float x[4] = {-1.3f, -0.2f, 0.7f, 3.1f};
  static const float want_y[4] = {-2.5f, 0.5f, 1.5f, 7.5f};
  const void *want[1] = {want_y};
  static const int64_t dims[1] = {4};
  run_and_compare(m, "cast", FLAGOS_FLOAT32, x, dims, 1, 1, want, 4);
  fir_model_destroy(m);

  m = parse(k_castlike);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  f = find_op(m, OPS_FUSED_OP);
  at = f ? fir_node_attr(f, OPS_FUSED_BODY) : NULL;
  CHECK(m->graph->n_nodes == 1 && at && at->g && at->g->n_nodes == 3 && count_op(m, "CastLike") == 0,
        "CastLike as a Cast: Exp, Cast and Neg are one node (%d nodes)", m->graph->n_nodes);
  fir_model_destroy(m);
}

static void test_disabled(void) {
  setenv("FLAGOS_FUSE", "0", 1);
  fir_model_t *m = parse(k_gelu);
  if (m) {
    CHECK_OK(pass_run_default(m, NULL));
    CHECK(count_op(m, OPS_FUSED_OP) == 0 && m->graph->n_nodes == 6, "FLAGOS_FUSE=0: 6 nodes (%d)", m->graph->n_nodes);
    fir_model_destroy(m);
  }
  unsetenv("FLAGOS_FUSE");
}

int main(void) {
  test_gelu_chain();
  test_no_cycle();
  test_half();
  test_cast();
  test_disabled();
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
