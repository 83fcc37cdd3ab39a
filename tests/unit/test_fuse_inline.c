/* Inline fusion (src/passes/fuse_inline.c, src/ops/inlined.c):
 * (a) Add -> LayerNormalization, Transpose -> Mul and Add (a broadcast mask)
 *     -> Softmax each become one InlinedProducer node lowered to the
 *     consumer's one kernel, and give NumPy's values;
 * (b) a consumer of several kernels (Softmax over axis 0: max, sum, divide)
 *     takes the producer into each kernel that reads it;
 * (c) f16: the producer's element is rounded to f16 as its store rounded it, so
 *     the pair gives the unfused nodes' output bit for bit, and NumPy's within
 *     one unit in the last place (unrounded, one element differs);
 * (d) a Transpose feeding a MatMul's B (attention's value, [b,s,h,d] ->
 *     [b,h,s,d], and key, -> [b,h,d,s]): the gemm call reads the Transpose's
 *     input, B's rows 6 apart and its batches 3 apart (transB for the key), and
 *     the product is NumPy's (OpenBLAS and cuBLASLt take the call; PoCL runs
 *     the rebuilt generic kernel);
 * (e) refused: a consumer reading a reducing producer's output broadcast,
 *     a Transpose chain through a Reshape that merges dims,
 *     Transposes that spread a product's batches over two strides (batch 2:
 *     its value and its output), FLAGOS_FUSE=0;
 * (f) all of it on the cpu, and on opencl (PoCL in CI) and cuda where present;
 * (g) a Transpose feeding a MatMul's A (rows 12 apart, batches 4 apart);
 *     attention's scores, a query Transpose times 0.5 into A and a key
 *     Transpose divided by 2 into B, nest into one node whose gemm call reads
 *     x twice (lda 6, ldb 6 transposed, batches 3 apart) with alpha 0.25;
 *     The key's Transpose as PyTorch's exporter writes it (Transpose,
 *     Reshape to rank 3, Transpose, Reshape back) gives the same one node;
 * (h) attention's context, Transpose(MatMul(p, value)): the product's call
 *     writes the [b,s,h,d] output directly, Y's rows 6 apart and batches 3
 *     apart (ldy), after reading the value through ldb;
 * (i) a producer that other nodes read too is kept: the pair's kernel also
 *     stores it, as the node's second output (an Add that is a graph output
 *     and Softmax's input; GPT-2's residual Add, read by LayerNormalization
 *     and by the next residual Add), one kernel, NumPy's values for both
 *     outputs; refused where the consumer's other input depends on the
 *     producer (LayerNormalization scaled by a mean of its own input);
 * (j) the epilogue form: a pointwise consumer of a producer that is no plain
 *     store (Softmax over the last axis, one kernel; over axis 0, three)
 *     runs in the producer's kernel that stores its output: Softmax -> Mul,
 *     and attention's mask, Softmax and Where(IsNaN(p), 0, p) as PyTorch's
 *     exporter writes them (also with a leading dim of 1, which the
 *     pointwise kernel reads at 0), one node each, NumPy's values; with
 *     FLAGOS_FUSE_EPILOGUE=0 the guard stays apart. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/bundle.h"
#include "check.h"
#include "fir_util.h"
#include "compiler/compiler.h"
#include "flagos/flagos.h"
#include "ops/fused.h"
#include "passes/passes.h"
#include "runtime/runtime.h"

#define HEAD "flagir 1\nir_version 8\nproducer \"\"\nopset \"\" 17\n"

static const char k_layernorm[] = HEAD
    "graph \"g\" (%x: f32[2,8]) -> (%y: f32[2,8]) {\n"
    "  %r: f32[2,8] = const [-1.5, 1, 0, -1, 1.5, 0.5, -0.5, -1.5, 1, 0, -1, 1.5, 0.5, -0.5, -1.5, 1]\n"
    "  %s: f32[8] = const [1, 0.5, 2, 1.5, 1, 1, 0.25, 3]\n"
    "  %b: f32[8] = const [0, 0.1, -0.1, 0.2, 0, 0.3, -0.2, 0.05]\n"
    "  %a: f32[2,8] = Add(%x, %r)\n"
    "  %y: f32[2,8] = LayerNormalization(%a, %s, %b) {axis = -1, epsilon = 1e-05}\n"
    "}\n";

static const char k_transpose[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[3,2,4]) {\n"
    "  %k: f32[4] = const [0.5, -1, 2, 0.25]\n"
    "  %t: f32[3,2,4] = Transpose(%x) {perm = [1, 0, 2]}\n"
    "  %y: f32[3,2,4] = Mul(%t, %k)\n"
    "}\n";

static const char k_softmax[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[2,3,4]) {\n"
    "  %mask: f32[1,1,4] = const [0, -10000, 0, -2]\n"
    "  %a: f32[2,3,4] = Add(%x, %mask)\n"
    "  %y: f32[2,3,4] = Softmax(%a) {axis = -1}\n"
    "}\n";

static const char k_softmax0[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[2,3,4]) {\n"
    "  %mask: f32[1,1,4] = const [0, -10000, 0, -2]\n"
    "  %a: f32[2,3,4] = Add(%x, %mask)\n"
    "  %y: f32[2,3,4] = Softmax(%a) {axis = 0}\n"
    "}\n";

/* mask = f16([0.1, -3.3, 0.7, -2]) */
static const char k_softmax_half[] = HEAD
    "graph \"g\" (%x: f16[2,3,4]) -> (%y: f16[2,3,4]) {\n"
    "  %mask: f16[1,1,4] = const dense<\"662e9ac29a3900c0\">\n"
    "  %a: f16[2,3,4] = Add(%x, %mask)\n"
    "  %y: f16[2,3,4] = Softmax(%a) {axis = -1}\n"
    "}\n";

/* %a is also a graph output: two readers; the pair keeps it. */
static const char k_two_readers[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[2,3,4], %a: f32[2,3,4]) {\n"
    "  %mask: f32[1,1,4] = const [0, -10000, 0, -2]\n"
    "  %a: f32[2,3,4] = Add(%x, %mask)\n"
    "  %y: f32[2,3,4] = Softmax(%a) {axis = -1}\n"
    "}\n";

static const char k_matmul[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[3,2,2]) {\n"
    "  %w: f32[4,2] = const [1, 0, 0, 1, 1, 1, -1, 0.5]\n"
    "  %t: f32[3,2,4] = Transpose(%x) {perm = [1, 0, 2]}\n"
    "  %y: f32[3,2,2] = MatMul(%t, %w)\n"
    "}\n";

#define A_VALUES                                                                                                       \
  "-2, 0.5, -1.5, 1, -1, 1.5, -0.5, 2, 0, -2, 0.5, -1.5, 1, -1, 1.5, -0.5, 2, 0, -2, 0.5, -1.5, 1, -1, 1.5, -0.5, 2, " \
  "0, -2, 0.5, -1.5"

static const char k_value[] = HEAD
    "graph \"g\" (%x: f32[1,4,2,3]) -> (%y: f32[1,2,5,3]) {\n"
    "  %a: f32[1,2,5,4] = const [" A_VALUES ", 1, -1, 1.5, -0.5, 2, 0, -2, 0.5, -1.5, 1]\n"
    "  %t: f32[1,2,4,3] = Transpose(%x) {perm = [0, 2, 1, 3]}\n"
    "  %y: f32[1,2,5,3] = MatMul(%a, %t)\n"
    "}\n";

static const char k_key[] = HEAD
    "graph \"g\" (%x: f32[1,4,2,3]) -> (%y: f32[1,2,5,4]) {\n"
    "  %a: f32[1,2,5,3] = const [" A_VALUES "]\n"
    "  %t: f32[1,2,3,4] = Transpose(%x) {perm = [0, 2, 3, 1]}\n"
    "  %y: f32[1,2,5,4] = MatMul(%a, %t)\n"
    "}\n";

static const char k_scores[] = HEAD
    "graph \"g\" (%x: f32[1,4,2,3]) -> (%y: f32[1,2,4,4]) {\n"
    "  %h: f32[] = const [0.5]\n"
    "  %two: f32[1] = const [2]\n"
    "  %tq: f32[1,2,4,3] = Transpose(%x) {perm = [0, 2, 1, 3]}\n"
    "  %q: f32[1,2,4,3] = Mul(%tq, %h)\n"
    "  %tk: f32[1,2,3,4] = Transpose(%x) {perm = [0, 2, 3, 1]}\n"
    "  %k: f32[1,2,3,4] = Div(%tk, %two)\n"
    "  %y: f32[1,2,4,4] = MatMul(%q, %k)\n"
    "}\n";

/* the same scores with the key's Transpose as PyTorch's exporter writes it:
 * Transpose, Reshape to rank 3, Transpose, Reshape back (one Transpose after
 * the Transpose chain pass) */
static const char k_scores_chain[] = HEAD
    "graph \"g\" (%x: f32[1,4,2,3]) -> (%y: f32[1,2,4,4]) {\n"
    "  %h: f32[] = const [0.5]\n"
    "  %s3: i64[3] = const [2, 4, 3]\n"
    "  %s4: i64[4] = const [1, 2, 3, 4]\n"
    "  %tq: f32[1,2,4,3] = Transpose(%x) {perm = [0, 2, 1, 3]}\n"
    "  %q: f32[1,2,4,3] = Mul(%tq, %h)\n"
    "  %t1: f32[1,2,4,3] = Transpose(%x) {perm = [0, 2, 1, 3]}\n"
    "  %r1: f32[2,4,3] = Reshape(%t1, %s3)\n"
    "  %t2: f32[2,3,4] = Transpose(%r1) {perm = [0, 2, 1]}\n"
    "  %r2: f32[1,2,3,4] = Reshape(%t2, %s4)\n"
    "  %k: f32[1,2,3,4] = Mul(%r2, %h)\n"
    "  %y: f32[1,2,4,4] = MatMul(%q, %k)\n"
    "}\n";

/* a Reshape that merges dims is no link of a Transpose chain */
static const char k_merge_chain[] = HEAD
    "graph \"g\" (%x: f32[1,4,2,3]) -> (%y: f32[3,8]) {\n"
    "  %s2: i64[2] = const [8, 3]\n"
    "  %t1: f32[1,2,4,3] = Transpose(%x) {perm = [0, 2, 1, 3]}\n"
    "  %r1: f32[8,3] = Reshape(%t1, %s2)\n"
    "  %y: f32[3,8] = Transpose(%r1) {perm = [1, 0]}\n"
    "}\n";

#define P32 A_VALUES ", 1, -1"

static const char k_context[] = HEAD
    "graph \"g\" (%x: f32[1,4,2,3]) -> (%y: f32[1,4,2,3]) {\n"
    "  %p: f32[1,2,4,4] = const [" P32 "]\n"
    "  %v: f32[1,2,4,3] = Transpose(%x) {perm = [0, 2, 1, 3]}\n"
    "  %c: f32[1,2,4,3] = MatMul(%p, %v)\n"
    "  %y: f32[1,4,2,3] = Transpose(%c) {perm = [0, 2, 1, 3]}\n"
    "}\n";

/* batch 2: the output's batches (b, h) are s*h*d and d apart, not one stride */
static const char k_context2[] = HEAD
    "graph \"g\" (%x: f32[2,4,2,3]) -> (%y: f32[2,4,2,3]) {\n"
    "  %p: f32[2,2,4,4] = const [" P32 ", " P32 "]\n"
    "  %v: f32[2,2,4,3] = Transpose(%x) {perm = [0, 2, 1, 3]}\n"
    "  %c: f32[2,2,4,3] = MatMul(%p, %v)\n"
    "  %y: f32[2,4,2,3] = Transpose(%c) {perm = [0, 2, 1, 3]}\n"
    "}\n";

/* GPT-2's pre-LN residual: %a is read by the LayerNormalization and by the
 * next residual Add. */
static const char k_residual[] = HEAD
    "graph \"g\" (%x: f32[2,8]) -> (%z: f32[2,8]) {\n"
    "  %r: f32[2,8] = const [-1.5, 1, 0, -1, 1.5, 0.5, -0.5, -1.5, 1, 0, -1, 1.5, 0.5, -0.5, -1.5, 1]\n"
    "  %s: f32[8] = const [1, 0.5, 2, 1.5, 1, 1, 0.25, 3]\n"
    "  %b: f32[8] = const [0, 0.1, -0.1, 0.2, 0, 0.3, -0.2, 0.05]\n"
    "  %a: f32[2,8] = Add(%x, %r)\n"
    "  %y: f32[2,8] = LayerNormalization(%a, %s, %b) {axis = -1, epsilon = 1e-05}\n"
    "  %z: f32[2,8] = Add(%a, %y)\n"
    "}\n";

/* the LayerNormalization's scale depends on %a: keeping %a in the pair would
 * make a cycle */
static const char k_dependent[] = HEAD
    "graph \"g\" (%x: f32[2,8]) -> (%y: f32[2,8]) {\n"
    "  %r: f32[2,8] = const [-1.5, 1, 0, -1, 1.5, 0.5, -0.5, -1.5, 1, 0, -1, 1.5, 0.5, -0.5, -1.5, 1]\n"
    "  %a: f32[2,8] = Add(%x, %r)\n"
    "  %m: f32[8] = ReduceMean(%a) {axes = [0], keepdims = 0}\n"
    "  %y: f32[2,8] = LayerNormalization(%a, %m) {axis = -1, epsilon = 1e-05}\n"
    "}\n";

/* The epilogue form: a pointwise consumer of a producer that reduces. */
static const char k_softmax_mul[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[2,3,4]) {\n"
    "  %k: f32[] = const [2]\n"
    "  %s: f32[2,3,4] = Softmax(%x) {axis = -1}\n"
    "  %y: f32[2,3,4] = Mul(%s, %k)\n"
    "}\n";

static const char k_softmax0_mul[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[2,3,4]) {\n"
    "  %k: f32[] = const [2]\n"
    "  %s: f32[2,3,4] = Softmax(%x) {axis = 0}\n"
    "  %y: f32[2,3,4] = Mul(%s, %k)\n"
    "}\n";

/* attention's probabilities as PyTorch's exporter writes them: mask, Softmax,
 * then Where(IsNaN(p), 0, p) */
static const char k_guard[] = HEAD
    "graph \"g\" (%x: f32[2,3,4]) -> (%y: f32[2,3,4]) {\n"
    "  %m: f32[4] = const [0, -1e30, 0.5, 0]\n"
    "  %z: f32[] = const [0]\n"
    "  %a: f32[2,3,4] = Add(%x, %m)\n"
    "  %s: f32[2,3,4] = Softmax(%a) {axis = -1}\n"
    "  %n: bool[2,3,4] = IsNaN(%s)\n"
    "  %y: f32[2,3,4] = Where(%n, %z, %s)\n"
    "}\n";

/* the same with a leading dim of 1, as attention's [1, heads, s, s] (the
 * pointwise kernel reads that dim at 0) */
static const char k_guard1[] = HEAD
    "graph \"g\" (%x: f32[1,2,3,4]) -> (%y: f32[1,2,3,4]) {\n"
    "  %m: f32[1,1,1,4] = const [0, -1e30, 0.5, 0]\n"
    "  %z: f32[] = const [0]\n"
    "  %a: f32[1,2,3,4] = Add(%x, %m)\n"
    "  %s: f32[1,2,3,4] = Softmax(%a) {axis = -1}\n"
    "  %n: bool[1,2,3,4] = IsNaN(%s)\n"
    "  %y: f32[1,2,3,4] = Where(%n, %z, %s)\n"
    "}\n";

/* refused: the consumer reads the producer's output broadcast into a larger shape */
static const char k_broadcast_consumer[] = HEAD
    "graph \"g\" (%x: f32[3,4], %b: f32[2,3,4]) -> (%y: f32[2,3,4]) {\n"
    "  %s: f32[3,4] = Softmax(%x) {axis = -1}\n"
    "  %y: f32[2,3,4] = Mul(%s, %b)\n"
    "}\n";

/* NumPy, float32, on x[i] = ((7 i) mod 11 - 5) / 4: 2 * softmax(x, -1), and
 * softmax(x + m, -1) with NaNs made 0 (2 * softmax(x, 0) is twice
 * want_softmax0, below). */
static const float want_softmax_mul[24] = {
    0.0949933976f, 0.546649218f, 0.201101005f, 1.15725636f, 0.469078302f, 0.172564268f, 0.993038833f, 0.365318537f,
    0.207245216f,  1.19261384f,  0.438738108f, 0.161402732f, 0.469078302f, 0.172564268f, 0.993038833f, 0.365318537f,
    0.207245216f,  1.19261384f,  0.438738108f, 0.161402732f, 0.876418293f, 0.322416246f, 0.118610315f, 0.682555199f};
static const float want_guard[24] = {
    0.0599778034f, 0.0f, 0.209343061f, 0.730679154f, 0.189784154f, 0.0f, 0.662411869f, 0.147804052f,
    0.189784154f,  0.0f, 0.662411869f, 0.147804052f, 0.189784154f, 0.0f, 0.662411869f, 0.147804052f,
    0.189784154f,  0.0f, 0.662411869f, 0.147804052f, 0.499517798f, 0.0f, 0.111457482f, 0.389024824f};

/* NumPy, float32, on x[i] = ((7 i) mod 11 - 5) / 4. */
static const float want_layernorm[16] = {
    -1.8782923f, 0.6813762f, -0.63665497f, 0.6024912f,  1.3416374f,  0.21055752f, -0.08819689f, -2.9016023f,
    -0.1106559f, 0.48729563f, -3.2721355f, 0.47663975f, 1.0696737f, -0.99098545f, -0.30143458f, 4.144268f};
static const float want_transpose[24] = {-0.625f, -0.5f,  -1.0f,  0.3125f,  0.25f,  0.5f,   2.5f,  0.0625f,
                                         0.125f,  0.75f,  2.0f,   0.0f,     -0.375f, -1.0f,  0.0f,  -0.25f,
                                         -0.5f,   -0.75f, -0.5f,  -0.3125f, 0.375f, 0.25f,  -2.5f, 0.125f};
static const float want_softmax[24] = {
    0.20983182f, 0.0f, 0.444214f,   0.34595418f, 0.31032777f, 0.0f, 0.65696394f, 0.032708306f,
    0.31032777f, 0.0f, 0.65696394f, 0.032708306f, 0.31032777f, 0.0f, 0.65696394f, 0.032708306f,
    0.31032777f, 0.0f, 0.65696394f, 0.032708306f, 0.8059741f,  0.0f, 0.10907674f, 0.084949046f};
static const float want_softmax0[24] = {
    0.1480472f,  0.7310586f,  0.1480472f,  0.7310586f,  0.7310586f,  0.1480472f,  0.7310586f,  0.7310586f,
    0.1480472f,  0.7310586f,  0.7310586f,  0.1480472f,  0.85195273f, 0.2689414f,  0.85195273f, 0.2689414f,
    0.2689414f,  0.85195273f, 0.2689414f,  0.2689414f,  0.85195273f, 0.2689414f,  0.2689414f,  0.85195273f};
/* NumPy float16: softmax(float32(f16(x) + f16(mask))) rounded to f16 */
static const uint16_t want_half[24] = {0x30e4, 0x2783, 0x38b8, 0x334c, 0x3272, 0x190f, 0x3a37, 0x24eb,
                                       0x3238, 0x28c6, 0x3a00, 0x24bf, 0x3272, 0x190f, 0x3a37, 0x24eb,
                                       0x3238, 0x28c6, 0x3a00, 0x24bf, 0x39e8, 0x20a3, 0x31d4, 0x2c82};

/* NumPy: a @ x.transpose(0, 2, 1, 3) and a @ x.transpose(0, 2, 3, 1), x[i] as below */
static const float want_value[30] = {2.25f,  -1.25f, -0.625f, 2.5f,  -2.25f, -0.125f, -1.75f,  1.25f, 1.5f,  -1.5f,
                                     0.25f,  2.0f,   -3.5f,   1.5f,  -3.125f, -1.75f, -1.75f,  -0.375f, 1.375f, 1.875f,
                                     -3.125f, 0.0f,  1.0f,    2.0f,  2.0f,   -1.0f,   1.5f,    -2.75f, -0.75f, -0.125f};
static const float want_key[40] = {3.5f,   -0.5f,  -3.125f, -1.625f, -2.5f,   -0.5f,  2.875f, 2.125f, 1.625f,  -0.5f,
                                   -1.25f, -2.0f,  3.5f,    -0.5f,   -3.125f, -1.625f, -2.5f, -0.5f,  2.875f,  2.125f,
                                   -0.125f, -0.875f, -1.625f, -2.375f, -1.25f, 0.25f, -2.375f, -0.875f, -0.125f, -0.875f,
                                   2.5f,   1.75f,  -0.125f, -0.875f, -1.625f, -2.375f, -1.25f, 0.25f, -2.375f, -0.875f};

static const float want_matmul[12] = {-3.0f, 0.625f, 1.5f, 0.875f, 1.25f, 0.25f, 0.25f, 0.5f, 0.0f, -0.125f, -1.0f, -1.25f};
static const float want_scores[32] = {
    0.515625f, -0.1875f,  -0.375f,   -0.21875f, -0.1875f,  0.5f,     -0.1875f, -0.1875f, -0.375f,   -0.1875f, 0.515625f,
    0.359375f, -0.21875f, -0.1875f,  0.359375f, 0.390625f, 0.546875f, 0.453125f, -0.15625f, -0.25f, 0.453125f, 0.546875f,
    -0.21875f, -0.125f,   -0.15625f, -0.21875f, 0.40625f,  0.34375f, -0.25f,    -0.125f,  0.34375f, 0.46875f};
static const float want_context[48] = {
    2.25f,  -1.25f, -0.625f, 1.875f, 1.375f, -3.25f, 2.5f,    -2.25f, -0.125f, -1.75f,  -1.75f, -0.375f,
    -1.75f, 1.25f,  1.5f,    1.375f, 1.875f, -3.125f, -1.5f,  0.25f,  2.0f,    0.0f,    1.0f,   2.0f, /* batch 2: */
    -0.625f, -2.75f, -0.75f, -3.25f, 1.75f,  2.625f, -0.125f, -0.75f, -2.75f,  -0.375f, -1.75f, 2.375f,
    1.5f,   -1.0f,  2.0f,    -3.125f, 1.5f,  -3.5f,  2.0f,    1.0f,   0.0f,    2.0f,    0.25f,  -1.5f};

/* Lowers node n as the compiler does, into c (allocations in a). */
static bool lower(const fir_node_t *n, fl_arena_t *a, ops_ctx_t *c) {
  const ops_def_t *d = ops_find(n->op_type, n->domain);
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * (size_t)(n->n_outputs + 1));
  for (int k = 0; k < n->n_inputs; k++) ops_info_from_value(&in[k], n->inputs[k]);
  ops_ctx_init(c, a, n, in, out, false);
  c->kernel_prefix = "t";
  flagos_status_t st = d ? ops_ctx_infer(c, d) : FL_ERR(FLAGOS_ERR_NOT_FOUND, "no operator");
  if (!st) st = d->lower(c);
  CHECK(!st, "lowering %s: %s", n->op_type, flagos_status_message(st));
  bool ok = !st;
  flagos_status_free(st);
  return ok;
}

/* Kernels of the model's nodes, as the compiler lowers them (-1 on failure). */
static int kernels_of(const fir_model_t *m) {
  int total = 0;
  for (int i = 0; i < m->graph->n_nodes; i++) {
    fl_arena_t *a = fl_arena_create();
    ops_ctx_t c;
    total = !lower(m->graph->nodes[i], a, &c) || total < 0 ? -1 : total + c.n_steps;
    fl_arena_destroy(a);
  }
  return total;
}

/* The gemm call of the model's one node, as the compiler lowers it: its ints
 * (n_ints, at most 12, returned), its alpha, and whether its A and B are the
 * graph's input x. */
static int gemm_call(const fir_model_t *m, int64_t *ints, double *alpha, bool *x_is[2]) {
  const fir_node_t *n = m->graph->nodes[0];
  fl_arena_t *a = fl_arena_create();
  ops_ctx_t c;
  int got = -1;
  for (int i = 0; lower(n, a, &c) && i < c.n_steps; i++) {
    const kir_libcall_t *lc = c.steps[i].kernel->libcall;
    if (!lc || strcmp(lc->name, "gemm") != 0 || lc->n_ints > 12) continue;
    got = lc->n_ints;
    for (int j = 0; j < lc->n_ints; j++) CHECK(kir_eval_int(lc->ints[j], NULL, 0, &ints[j]), "int %d is a constant", j);
    *alpha = lc->floats[0];
    for (int op = 0; op < 2; op++) {
      const ops_bind_t *bd = &c.steps[i].binds[lc->bufs[op]];
      *x_is[op] = bd->kind == OPS_BIND_INPUT && n->inputs[bd->index] == m->graph->inputs[0];
    }
    break;
  }
  fl_arena_destroy(a);
  return got;
}

/* The pass makes text one node whose gemm call has the ints want (-1: any),
 * alpha, and reads x as A and/or B where a_x and b_x say. */
static void check_call(const char *name, const char *text, int n_ints, const int64_t *want, double alpha, bool a_x,
                       bool b_x) {
  fir_model_t *m = parse(text);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  CHECK(m->graph->n_nodes == 1 && count_op(m, OPS_INLINE_OP) == 1, "%s: one node (%d)", name, m->graph->n_nodes);
  int64_t v[12] = {0};
  double al = 0;
  bool ax = false, bx = false, *x_is[2] = {&ax, &bx};
  int n = m->graph->n_nodes == 1 ? gemm_call(m, v, &al, x_is) : -1;
  CHECK(n == n_ints && ax == a_x && bx == b_x && al == alpha,
        "%s: the gemm call has %d ints (%d), alpha %g (%g), reads x as A %d (%d) and B %d (%d)", name, n_ints, n, alpha,
        al, a_x, ax, b_x, bx);
  for (int i = 0; n == n_ints && i < n; i++)
    CHECK(want[i] < 0 || v[i] == want[i], "%s: gemm int %d is %lld (%lld)", name, i, (long long)want[i],
          (long long)v[i]);
  fir_model_destroy(m);
}

static void check_strided(void) {
  /* batch, M, N, K, transA, transB, strideA, strideB, strideY, ldb, lda, ldy */
  static const int64_t value[10] = {2, 5, 3, 4, 0, 0, 20, 3, 15, 6}, key[10] = {2, 5, 4, 3, 0, 1, 15, 3, 20, 6};
  static const int64_t a[11] = {3, 2, 2, 4, 0, 0, 4, 0, 4, 0, 12};
  static const int64_t scores[11] = {2, 4, 4, 3, 0, 1, 3, 3, 16, 6, 6};
  static const int64_t context[12] = {2, 4, 3, 4, 0, 0, 16, 3, 3, 6, 0, 6};
  check_call("value", k_value, 10, value, 1, false, true);
  check_call("key", k_key, 10, key, 1, false, true);
  check_call("Transpose -> MatMul's A", k_matmul, 11, a, 1, true, false);
  check_call("scores", k_scores, 11, scores, 0.25, true, true);
  check_call("scores, the key's Transpose chain", k_scores_chain, 11, scores, 0.25, true, true);
  check_call("context", k_context, 12, context, 1, false, true);
}

/* Compiles text for target and opens a session of it on device (NULL and
 * the error in *st on failure; *b to close after the session). */
static flagos_session_t *open_session(const char *text, const char *target, const char *device, flagos_bundle_t **b,
                                      flagos_status_t *st) {
  *b = NULL;
  fir_model_t *m = parse(text);
  if (!m) {
    *st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the test's model does not parse");
    return NULL;
  }
  void *img = NULL;
  size_t len = 0;
  flagos_compile_options_t o = {.targets = target};
  *st = compiler_build_bundle(m, &o, &img, &len);
  fir_model_destroy(m);
  bundle_file_t *f = NULL;
  if (!*st) *st = bundle_file_from_memory(img, len, true, &f);
  if (!*st) *st = rt_bundle_from_file(f, b);
  flagos_session_t *s = NULL;
  flagos_session_options_t so = {.device = device};
  if (!*st) *st = flagos_session_create(*b, &so, &s);
  return s;
}

/* Compiles text for target and runs it on device with input x (of dims); the
 * n_y[k] elements of output k are copied to y[k], for k < n_out (at most 2). */
static bool run_outs(const char *text, const char *target, const char *device, flagos_dtype_t dt, const void *x,
                     const int64_t *dims, int rank, int n_out, void **y, const int64_t *n_y) {
  flagos_bundle_t *b;
  flagos_status_t st;
  flagos_session_t *s = open_session(text, target, device, &b, &st);
  flagos_value_t in = {.kind = FLAGOS_VALUE_TENSOR}, out[2];
  memset(out, 0, sizeof out);
  in.tensor.dtype = dt;
  in.tensor.rank = rank;
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= in.tensor.dims[i] = dims[i];
  in.tensor.data = (void *)x;
  in.tensor.nbytes = (size_t)n * flagos_dtype_size(dt);
  if (!st) st = flagos_session_run(s, &in, 1, out, (size_t)n_out);
  bool ok = !st;
  for (int k = 0; k < n_out && ok; k++)
    ok = out[k].tensor.data && flagos_tensor_numel(&out[k].tensor) == n_y[k] && out[k].tensor.dtype == dt;
  CHECK(ok, "run on %s: %s", device, st ? flagos_status_message(st) : "wrong output size or type");
  for (int k = 0; k < n_out && ok; k++) memcpy(y[k], out[k].tensor.data, (size_t)n_y[k] * flagos_dtype_size(dt));
  flagos_status_free(st);
  for (int k = 0; k < n_out; k++) flagos_value_clear(&out[k]);
  if (s) flagos_session_destroy(s);
  if (b) flagos_bundle_close(b);
  return ok;
}

static bool run(const char *text, const char *target, const char *device, flagos_dtype_t dt, const void *x,
                const int64_t *dims, int rank, void *y, int64_t n_y) {
  return run_outs(text, target, device, dt, x, dims, rank, 1, &y, &n_y);
}

static void xs(float *x, int n) {
  for (int i = 0; i < n; i++) x[i] = (float)((i * 7) % 11 - 5) * 0.25f;
}

/* The pass makes one InlinedProducer of text's two nodes, lowered to `kernels`
 * kernels, and the compiled model gives want on device. */
static void check_pair(const char *name, const char *text, int kernels, const int64_t *dims, int rank,
                       const float *want, int64_t n, const char *target, const char *device) {
  fir_model_t *m = parse(text);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  CHECK(m->graph->n_nodes == 1 && count_op(m, OPS_INLINE_OP) == 1, "%s: one %s node (%d nodes)", name, OPS_INLINE_OP,
        m->graph->n_nodes);
  CHECK(kernels_of(m) == kernels, "%s: %d kernels (%d)", name, kernels, kernels_of(m));
  fir_model_destroy(m);
  float x[64], y[64];
  xs(x, 64);
  if (!run(text, target, device, FLAGOS_FLOAT32, x, dims, rank, y, n)) return;
  for (int64_t i = 0; i < n; i++)
    CHECK(fabsf(y[i] - want[i]) <= 2e-6f + 2e-6f * fabsf(want[i]), "%s on %s: y[%lld] = %.9g, NumPy %.9g", name, device,
          (long long)i, y[i], want[i]);
}

static void check_half(const char *target, const char *device) {
  static const int64_t dims[3] = {2, 3, 4};
  float xf[24];
  uint16_t x[24], fused[24], plain[24];
  xs(xf, 24);
  for (int i = 0; i < 24; i++) x[i] = fl_f32_to_f16(xf[i]);
  if (!run(k_softmax_half, target, device, FLAGOS_FLOAT16, x, dims, 3, fused, 24)) return;
  setenv("FLAGOS_FUSE", "0", 1);
  bool ok = run(k_softmax_half, target, device, FLAGOS_FLOAT16, x, dims, 3, plain, 24);
  unsetenv("FLAGOS_FUSE");
  for (int i = 0; ok && i < 24; i++)
    CHECK(fused[i] == plain[i], "f16 on %s: y[%d] = 0x%04x inlined, 0x%04x unfused", device, i, fused[i], plain[i]);
  for (int i = 0; i < 24; i++)
    CHECK(abs((int)fused[i] - (int)want_half[i]) <= 1, "f16 on %s: y[%d] = 0x%04x, NumPy 0x%04x", device, i, fused[i],
          want_half[i]);
}

static void check_refused(void) {
  static const struct {
    const char *name, *text, *op;
  } cases[] = {
      {"a consumer reading a reducing producer's output broadcast", k_broadcast_consumer, "Softmax"},
      {"a consumer's other input depending on the producer", k_dependent, "Add"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fir_model_t *m = parse(cases[i].text);
    if (!m) continue;
    CHECK_OK(pass_run_default(m, NULL));
    CHECK(count_op(m, OPS_INLINE_OP) == 0 && count_op(m, cases[i].op) == 1, "%s: left alone", cases[i].name);
    fir_model_destroy(m);
  }
  setenv("FLAGOS_FUSE_EPILOGUE", "0", 1);
  fir_model_t *me = parse(k_guard);
  if (me) {
    CHECK_OK(pass_run_default(me, NULL));
    CHECK(me->graph->n_nodes == 2, "FLAGOS_FUSE_EPILOGUE=0: the guard stays apart from Softmax (%d nodes)",
          me->graph->n_nodes);
    fir_model_destroy(me);
  }
  unsetenv("FLAGOS_FUSE_EPILOGUE");
  fir_model_t *mc = parse(k_merge_chain);
  if (mc) {
    CHECK_OK(pass_run_default(mc, NULL));
    CHECK(count_op(mc, "Transpose") == 2 && mc->graph->n_nodes == 3, "a chain through a merging Reshape: left alone");
    fir_model_destroy(mc);
  }
  /* batch 2: the Transposes of the value and of the output stay */
  fir_model_t *c2 = parse(k_context2);
  if (c2) {
    CHECK_OK(pass_run_default(c2, NULL));
    CHECK(count_op(c2, OPS_INLINE_OP) == 0 && count_op(c2, "Transpose") == 2 && c2->graph->n_nodes == 3,
          "a Transpose spreading the batches over two strides: left alone (%d nodes)", c2->graph->n_nodes);
    fir_model_destroy(c2);
  }
  setenv("FLAGOS_FUSE", "0", 1);
  fir_model_t *m = parse(k_layernorm);
  if (m) {
    CHECK_OK(pass_run_default(m, NULL));
    CHECK(count_op(m, OPS_INLINE_OP) == 0 && m->graph->n_nodes == 2, "FLAGOS_FUSE=0 leaves Add and LayerNormalization");
    fir_model_destroy(m);
  }
  unsetenv("FLAGOS_FUSE");
}

/* The pair keeps its producer's output: the pass makes `nodes` nodes, one of
 * them an InlinedProducer of two outputs, lowered with the others to
 * `kernels` kernels; the model's two outputs (or one) are want0 and want1. */
static void check_keep(const char *name, const char *text, int nodes, int kernels, const int64_t *dims, int rank,
                       int n_out, const float *want0, const float *want1, int64_t n, const char *target,
                       const char *device) {
  fir_model_t *m = parse(text);
  if (!m) return;
  CHECK_OK(pass_run_default(m, NULL));
  int pairs = 0;
  for (int i = 0; i < m->graph->n_nodes; i++)
    pairs += strcmp(m->graph->nodes[i]->op_type, OPS_INLINE_OP) == 0 && m->graph->nodes[i]->n_outputs == 2;
  CHECK(m->graph->n_nodes == nodes && pairs == 1, "%s: %d nodes (%d), one pair of two outputs (%d)", name, nodes,
        m->graph->n_nodes, pairs);
  CHECK(kernels_of(m) == kernels, "%s: %d kernels (%d)", name, kernels, kernels_of(m));
  fir_model_destroy(m);
  float x[64], y0[64], y1[64];
  void *ys[2] = {y0, y1};
  const int64_t ns[2] = {n, n};
  const float *want[2] = {want0, want1};
  xs(x, 64);
  if (!run_outs(text, target, device, FLAGOS_FLOAT32, x, dims, rank, n_out, ys, ns)) return;
  for (int k = 0; k < n_out; k++)
    for (int64_t i = 0; i < n; i++) {
      float got = ((const float *)ys[k])[i];
      CHECK(fabsf(got - want[k][i]) <= 2e-6f + 2e-6f * fabsf(want[k][i]), "%s on %s: output %d [%lld] = %.9g, NumPy %.9g",
            name, device, k, (long long)i, got, want[k][i]);
    }
}

static void check_kept(const char *target, const char *device) {
  static const int64_t d28[2] = {2, 8}, d234[3] = {2, 3, 4};
  static const float mask[4] = {0, -10000, 0, -2}, r[16] = {-1.5f, 1, 0, -1, 1.5f, 0.5f, -0.5f, -1.5f,
                                                             1,     0, -1, 1.5f, 0.5f, -0.5f, -1.5f, 1};
  float x[24], a[24], z[16];
  xs(x, 24);
  for (int i = 0; i < 24; i++) a[i] = x[i] + mask[i % 4];
  check_keep("Add -> Softmax, the Add a graph output", k_two_readers, 1, 1, d234, 3, 2, want_softmax, a, 24, target,
             device);
  for (int i = 0; i < 16; i++) z[i] = (x[i] + r[i]) + want_layernorm[i];
  check_keep("GPT-2's residual Add -> LayerNormalization", k_residual, 2, 2, d28, 2, 1, z, NULL, 16, target, device);
}

static void check_device(const char *target, const char *device) {
  static const int64_t d28[2] = {2, 8}, d234[3] = {2, 3, 4};
  check_pair("Add -> LayerNormalization", k_layernorm, 1, d28, 2, want_layernorm, 16, target, device);
  check_pair("Transpose -> Mul", k_transpose, 1, d234, 3, want_transpose, 24, target, device);
  check_pair("Add -> Softmax", k_softmax, 1, d234, 3, want_softmax, 24, target, device);
  check_pair("Add -> Softmax(axis 0)", k_softmax0, 3, d234, 3, want_softmax0, 24, target, device);
  check_pair("Softmax -> Mul (epilogue)", k_softmax_mul, 1, d234, 3, want_softmax_mul, 24, target, device);
  float twice[24];
  for (int i = 0; i < 24; i++) twice[i] = 2 * want_softmax0[i];
  check_pair("Softmax(axis 0) -> Mul (epilogue)", k_softmax0_mul, 3, d234, 3, twice, 24, target, device);
  check_pair("Add -> Softmax -> Where(IsNaN) (epilogue)", k_guard, 1, d234, 3, want_guard, 24, target, device);
  static const int64_t d1234[4] = {1, 2, 3, 4};
  check_pair("the same, a leading dim of 1", k_guard1, 1, d1234, 4, want_guard, 24, target, device);
  static const int64_t d4123[4] = {1, 4, 2, 3};
  check_pair("Transpose -> MatMul's B (value)", k_value, 1, d4123, 4, want_value, 30, target, device);
  check_pair("Transpose -> MatMul's B (key)", k_key, 1, d4123, 4, want_key, 40, target, device);
  check_pair("Transpose -> MatMul's A", k_matmul, 1, d234, 3, want_matmul, 12, target, device);
  check_pair("scaled Transposes -> MatMul's A and B", k_scores, 1, d4123, 4, want_scores, 32, target, device);
  check_pair("scores, the key's Transpose chain", k_scores_chain, 1, d4123, 4, want_scores, 32, target, device);
  check_pair("MatMul -> Transpose", k_context, 1, d4123, 4, want_context, 24, target, device);
  static const int64_t d4223[4] = {2, 4, 2, 3};
  float x[48], y[48];
  xs(x, 48);
  if (run(k_context2, target, device, FLAGOS_FLOAT32, x, d4223, 4, y, 48))
    for (int i = 0; i < 48; i++)
      CHECK(fabsf(y[i] - want_context[i]) <= 2e-6f + 2e-6f * fabsf(want_context[i]),
            "context, batch 2, on %s: y[%d] = %.9g, NumPy %.9g", device, i, y[i], want_context[i]);
  check_half(target, device);
  check_kept(target, device);
}

static bool have(const char *target) {
  flagos_bundle_t *b;
  flagos_status_t st;
  flagos_session_t *s = open_session(k_transpose, target, target, &b, &st);
  if (st) printf("test_fuse_inline: %s skipped (%s)\n", target, flagos_status_message(st));
  bool ok = !st;
  flagos_status_free(st);
  if (s) flagos_session_destroy(s);
  if (b) flagos_bundle_close(b);
  return ok;
}

int main(void) {
  check_refused();
  check_strided();
  check_device("cpu", "cpu");
  if (have("opencl")) check_device("opencl", "opencl");
  if (have("cuda")) check_device("cuda", "cuda");
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
