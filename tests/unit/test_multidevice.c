/* Multi-device execution and hot-swapped plans (docs/sla.md "Running a plan"),
 * on cpu + opencl (PoCL in CI; skipped where no OpenCL device exists):
 * (a) examples/mlp.onnx and a 13-node model, placed by an SLA whose memory
 *     limits force a split, give NumPy's output (examples/mlp_expected.npy) and
 *     a hand-computed reference (double precision loops here), like the
 *     single-device sessions; both devices run kernels and values cross;
 * (b) 8 threads run one session while another thread swaps its SLA between the
 *     split plan and plans on the cpu alone and on opencl alone: every output
 *     right, and each plan runs where it says;
 * (c) an SLA that cannot be met (or does not parse) is an error and the old plan
 *     keeps running; a session forced onto one device refuses SLAs.
 * The device profiles are fixed (written to the test's FLAGOS_CACHE_DIR), not
 * measured, so that the plans do not move with the machine's load. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bundle/bundle.h"
#include "compiler/compiler.h"
#include "flagos/flagos.h"
#include "frontend/onnx/onnx_import.h"
#include "io/value_io.h"
#include "runtime/exec.h"

static int checks, failures;
#define CHECK(cond, ...)                                                                                               \
  do {                                                                                                                 \
    __atomic_fetch_add(&checks, 1, __ATOMIC_RELAXED);                                                                  \
    if (!(cond)) {                                                                                                     \
      __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);                                                              \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                             \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
    }                                                                                                                  \
  } while (0)

static char g_dir[2048];

static const char k_profile[] =
    "{\"format\": 1, \"date\": \"2026-01-01T00:00:00Z\", \"flagos_version\": \"0.1.0\", \"devices\": [\n"
    " {\"device\": \"cpu:0\", \"host_visible\": true, \"memory_bytes\": 1e9, \"peak_flops\": {\"f32\": 1e10, \"f16\": 1e9},\n"
    "  \"memory_bandwidth\": 1e10, \"h2d_bandwidth\": 1e10, \"d2h_bandwidth\": 1e10, \"link_latency_s\": 0,\n"
    "  \"launch_overhead_s\": 1e-6, \"power\": {\"active_w\": 10, \"idle_w\": 2, \"source\": \"test\", \"estimated\": true}},\n"
    " {\"device\": \"opencl:0\", \"host_visible\": false, \"memory_bytes\": 1e9, \"peak_flops\": {\"f32\": 1e10, \"f16\": 1e9},\n"
    "  \"memory_bandwidth\": 1e10, \"h2d_bandwidth\": 1e9, \"d2h_bandwidth\": 1e9, \"link_latency_s\": 2e-5,\n"
    "  \"launch_overhead_s\": 2e-5, \"power\": {\"active_w\": 10, \"idle_w\": 2, \"source\": \"test\", \"estimated\": true}}]}\n";

/* mlp: the first MatMul's 2 KB of weights cannot stay on a cpu limited to 1 KB. */
static const char k_sla_mlp_split[] =
    "{\"version\": 1, \"devices\": {\"cpu\": {\"memory_limit_mb\": 0.001}}}";
/* The 13-node model holds 13 KB (weights and outputs): neither 5 KB of cpu nor
 * 9 KB of opencl memory holds it all. */
static const char k_sla_split[] =
    "{\"version\": 1, \"devices\": {\"cpu\": {\"memory_limit_mb\": 0.005}, \"opencl\": {\"memory_limit_mb\": 0.009}}}";
/* mlp the other way round: fc1's weights (2 KB) fit on the cpu only, and then
 * fc2's (0.5 KB) do not: a value goes from the cpu to opencl. */
static const char k_sla_mlp_reverse[] =
    "{\"version\": 1, \"devices\": {\"cpu\": {\"memory_limit_mb\": 0.0025}, \"opencl\": {\"memory_limit_mb\": 0.001}}}";
static const char k_sla_cpu[] = "{\"forbidden\": [\"opencl\"]}";
static const char k_sla_ocl[] = "{\"forbidden\": [\"cpu\"]}";
static const char k_sla_never[] = "{\"max_latency_ms\": 0.000001}";

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(2);
  }
  fclose(f);
}

static flagos_tensor_t load_npy(const char *path) {
  flagos_value_t v;
  memset(&v, 0, sizeof v);
  flagos_status_t st = io_load_value(path, NULL, &v);
  if (st) {
    fprintf(stderr, "cannot read %s: %s\n", path, flagos_status_message(st));
    exit(2);
  }
  return v.tensor;
}

/* Compiles m for cpu,opencl (with a plan when sla is given) into an open bundle. */
static flagos_bundle_t *build(fir_model_t *m, const char *name, const char *sla) {
  char sla_path[4096], prof_path[4096], out[4096];
  snprintf(prof_path, sizeof prof_path, "%s/cache/profiles.json", g_dir);
  snprintf(sla_path, sizeof sla_path, "%s/%s.sla.json", g_dir, name);
  snprintf(out, sizeof out, "%s/%s.flagos", g_dir, name);
  if (sla) write_text(sla_path, sla);
  flagos_compile_options_t o = {.targets = "cpu,opencl"};
  compiler_plan_options_t po = {.sla_path = sla ? sla_path : NULL, .profile_path = prof_path};
  void *img = NULL;
  size_t n = 0;
  flagos_status_t st = compiler_build_bundle_ex(m, &o, &po, &img, &n);
  if (!st) st = fl_write_file(out, img, n);
  free(img);
  flagos_bundle_t *b = NULL;
  if (!st) st = flagos_bundle_open(out, &b);
  CHECK(!st, "compile %s: %s", name, flagos_status_message(st));
  flagos_status_free(st);
  return b;
}

static flagos_session_t *session(flagos_bundle_t *b, const char *device) {
  flagos_session_options_t o = {.device = device};
  flagos_session_t *s = NULL;
  flagos_status_t st = flagos_session_create(b, &o, &s);
  CHECK(!st, "session on %s: %s", device ? device : "(plan)", flagos_status_message(st));
  flagos_status_free(st);
  return s;
}

/* Runs a one-input model; true when every output is within 1e-4 of ref[k]. */
static bool run_check(flagos_session_t *s, const flagos_tensor_t *in, int n_out, const float *const *ref,
                      const int64_t *numel) {
  flagos_value_t vin = {.kind = FLAGOS_VALUE_TENSOR, .tensor = *in}, out[4];
  memset(out, 0, sizeof out);
  flagos_status_t st = flagos_session_run(s, &vin, 1, out, n_out);
  if (st) {
    fprintf(stderr, "run: %s\n", flagos_status_message(st));
    flagos_status_free(st);
    return false;
  }
  bool ok = true;
  for (int k = 0; k < n_out; k++) {
    ok = ok && flagos_tensor_numel(&out[k].tensor) == numel[k];
    for (int64_t i = 0; ok && i < numel[k]; i++) {
      float got = ((float *)out[k].tensor.data)[i];
      if (!(fabsf(got - ref[k][i]) <= 1e-4f + 1e-4f * fabsf(ref[k][i]))) {
        fprintf(stderr, "output %d element %lld: %g, expected %g\n", k, (long long)i, got, ref[k][i]);
        ok = false;
      }
    }
    flagos_value_clear(&out[k]);
  }
  return ok;
}

/* Kernel nodes run per slot ("cpu:0", "opencl:0"), summed into cpu/ocl. */
static void slot_nodes(flagos_session_t *s, int64_t *cpu, int64_t *ocl, int64_t *copies, int64_t *ocl_uploads) {
  *cpu = *ocl = *copies = 0;
  if (ocl_uploads) *ocl_uploads = 0;
  rt_slot_stats_t st;
  for (int i = 0; rt_session_slot_stats(s, i, &st); i++) {
    if (strcmp(st.id, "cpu:0") == 0) *cpu += st.nodes_run;
    if (strcmp(st.id, "opencl:0") == 0) {
      *ocl += st.nodes_run;
      if (ocl_uploads) *ocl_uploads = st.weight_uploads;
    }
    *copies += st.copies_in;
  }
}

/* Copies that ran while the run went on with other nodes, over every slot. */
static int64_t copies_ahead(flagos_session_t *s) {
  int64_t n = 0;
  rt_slot_stats_t st;
  for (int i = 0; rt_session_slot_stats(s, i, &st); i++) n += st.copies_ahead;
  return n;
}

/* ---- the 13-node model and its reference ---- */
enum { B = 4, I = 16, H = 32, O = 8 };
static float w1[I * H], b1[H], w2[H * H], b2[H], w3[H * O], b3[O], cc[H];

static fir_value_t *weight(fir_model_t *m, const char *name, const float *data, int rank, const int64_t *dims) {
  fir_tensor_t *t = fir_tensor_create(m, FLAGOS_FLOAT32, rank, dims);
  t->name = name;
  memcpy(t->data, data, t->nbytes);
  fir_value_t *v = fir_value_create(m->graph, name, fir_type_tensor(m, FLAGOS_FLOAT32, rank, dims));
  v->init = t;
  return v;
}

static fir_value_t *op(fir_model_t *m, const char *type, fir_value_t *a, fir_value_t *b, int rank, const int64_t *dims) {
  static int n;
  char name[32];
  snprintf(name, sizeof name, "v%d", n++);
  fir_value_t *out = fir_value_create(m->graph, fl_arena_strdup(m->arena, name), fir_type_tensor(m, FLAGOS_FLOAT32, rank, dims));
  fir_value_t *ins[2] = {a, b};
  fir_node_create(m->graph, type, "", NULL, b ? 2 : 1, ins, 1, &out);
  return out;
}

static fir_model_t *deep_model(void) {
  fir_model_t *m = fir_model_create();
  fir_model_set_opset(m, "", 17);
  m->graph = fir_graph_create(m, NULL, "deep");
  int64_t dx[2] = {B, I}, dh[2] = {B, H}, dout[2] = {B, O};
  int64_t d_w1[2] = {I, H}, d_w2[2] = {H, H}, d_w3[2] = {H, O}, d_h[1] = {H}, d_o[1] = {O};
  fir_value_t *x = fir_value_create(m->graph, "x", fir_type_tensor(m, FLAGOS_FLOAT32, 2, dx));
  fir_graph_add_input(m->graph, x);
  fir_value_t *W1 = weight(m, "w1", w1, 2, d_w1), *B1 = weight(m, "b1", b1, 1, d_h);
  fir_value_t *W2 = weight(m, "w2", w2, 2, d_w2), *B2 = weight(m, "b2", b2, 1, d_h);
  fir_value_t *W3 = weight(m, "w3", w3, 2, d_w3), *B3 = weight(m, "b3", b3, 1, d_o), *C = weight(m, "c", cc, 1, d_h);
  fir_value_t *h2 = op(m, "Relu", op(m, "Add", op(m, "MatMul", x, W1, 2, dh), B1, 2, dh), NULL, 2, dh);
  fir_value_t *h5 = op(m, "Sigmoid", op(m, "Add", op(m, "MatMul", h2, W2, 2, dh), B2, 2, dh), NULL, 2, dh);
  fir_value_t *h7 = op(m, "Sub", op(m, "Mul", h5, h2, 2, dh), C, 2, dh);
  fir_value_t *h10 = op(m, "Add", op(m, "MatMul", op(m, "Tanh", h7, NULL, 2, dh), W3, 2, dout), B3, 2, dout);
  fir_graph_add_output(m->graph, op(m, "Neg", h10, NULL, 2, dout));
  fir_graph_add_output(m->graph, op(m, "Abs", h7, NULL, 2, dh));
  return m;
}

/* y = -(tanh(sigmoid(relu(x w1 + b1) w2 + b2) * relu(...) - c) w3 + b3), z = |sigmoid(..) * relu(..) - c|. */
static void deep_reference(const float *x, float *y, float *z) {
  for (int r = 0; r < B; r++) {
    double h2[H], h7[H];
    for (int j = 0; j < H; j++) {
      double a = b1[j];
      for (int k = 0; k < I; k++) a += (double)x[r * I + k] * w1[k * H + j];
      h2[j] = a > 0 ? a : 0;
    }
    for (int j = 0; j < H; j++) {
      double a = b2[j];
      for (int k = 0; k < H; k++) a += h2[k] * w2[k * H + j];
      h7[j] = 1 / (1 + exp(-a)) * h2[j] - cc[j];
      z[r * H + j] = (float)fabs(h7[j]);
    }
    for (int j = 0; j < O; j++) {
      double a = b3[j];
      for (int k = 0; k < H; k++) a += tanh(h7[k]) * w3[k * O + j];
      y[r * O + j] = (float)-a;
    }
  }
}

static float frand(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* ---- (b) threads ---- */
enum { N_THREADS = 8, N_RUNS = 25, N_SWAPS = 12 };
typedef struct worker {
  flagos_session_t *s;
  float x[B * I], y[B * O], z[B * H];
  int bad, runs;
} worker_t;
static int g_stop, g_swaps, g_runs_done;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  int64_t dims[2] = {B, I};
  flagos_tensor_t in = {FLAGOS_FLOAT32, 2, {0}, w->x, sizeof w->x};
  memcpy(in.dims, dims, sizeof dims);
  const float *ref[2] = {w->y, w->z};
  int64_t numel[2] = {B * O, B * H};
  /* At least N_RUNS each, and on until the swapper is done. */
  for (int i = 0; i < N_RUNS || !__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE); i++) {
    w->bad += !run_check(w->s, &in, 2, ref, numel);
    w->runs++;
    __atomic_fetch_add(&g_runs_done, 1, __ATOMIC_RELEASE);
  }
  return NULL;
}

static void *swapper_main(void *arg) {
  flagos_session_t *s = arg;
  const char *slas[3] = {k_sla_cpu, k_sla_split, k_sla_ocl};
  for (int i = 0; i < N_SWAPS; i++) {
    /* Each plan gets some runs: the next swap waits for N_THREADS more runs to end. */
    int start = __atomic_load_n(&g_runs_done, __ATOMIC_ACQUIRE);
    while (__atomic_load_n(&g_runs_done, __ATOMIC_ACQUIRE) < start + N_THREADS) sched_yield();
    flagos_status_t st = flagos_session_set_sla(s, slas[i % 3]);
    CHECK(!st, "swap %d: %s", i, flagos_status_message(st));
    flagos_status_free(st);
    g_swaps++;
  }
  __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
  return NULL;
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "%s/tests/multidevice", FLAGOS_BINARY_DIR);
  mkdir(g_dir, 0755);
  char p[4096];
  snprintf(p, sizeof p, "%s/cache", g_dir);
  mkdir(p, 0755);
  setenv("FLAGOS_CACHE_DIR", p, 1);
  /* The plans below count the 13 nodes as written; elementwise fusion would merge some. */
  setenv("FLAGOS_FUSE", "0", 1);
  snprintf(p, sizeof p, "%s/cache/profiles.json", g_dir);
  write_text(p, k_profile);

  rt_backend_t *ocl = NULL;
  flagos_status_t st = rt_backend_get("opencl", &ocl);
  if (st || ocl->api->device_count(ocl->state) < 1) {
    printf("no OpenCL device: multi-device tests skipped (%s)\n", st ? flagos_status_message(st) : "0 devices");
    flagos_status_free(st);
    return 0;
  }

  /* ---- (a) examples/mlp.onnx, split by its compile-time plan ---- */
  snprintf(p, sizeof p, "%s/examples/mlp.onnx", FLAGOS_SOURCE_DIR);
  fir_model_t *mm = NULL;
  st = onnx_import_file(p, &mm);
  CHECK(!st, "import mlp: %s", flagos_status_message(st));
  if (st) return 1;
  flagos_bundle_t *mlp = build(mm, "mlp", k_sla_mlp_split);
  fir_model_destroy(mm);
  if (!mlp) return 1;
  snprintf(p, sizeof p, "%s/examples/mlp_input.npy", FLAGOS_SOURCE_DIR);
  flagos_tensor_t mx = load_npy(p);
  snprintf(p, sizeof p, "%s/examples/mlp_expected.npy", FLAGOS_SOURCE_DIR);
  flagos_tensor_t my = load_npy(p);
  const float *mref[1] = {my.data};
  int64_t mnumel[1] = {flagos_tensor_numel(&my)};
  flagos_session_t *planned = session(mlp, NULL), *on_cpu = session(mlp, "cpu"), *on_ocl = session(mlp, "opencl");
  if (!planned || !on_cpu || !on_ocl) return 1;
  CHECK(run_check(planned, &mx, 1, mref, mnumel), "mlp placed on cpu+opencl differs from NumPy");
  CHECK(run_check(on_cpu, &mx, 1, mref, mnumel), "mlp on the cpu differs from NumPy");
  CHECK(run_check(on_ocl, &mx, 1, mref, mnumel), "mlp on opencl differs from NumPy");
  int64_t c, o, cp, up;
  slot_nodes(planned, &c, &o, &cp, NULL);
  /* The plan (tests/cli/test_partition_cli.sh checks the same): fc1 on opencl, the 4 others on the cpu. */
  CHECK(c == 4 && o == 1 && cp == 1, "mlp plan ran %lld nodes on the cpu, %lld on opencl, %lld copies; expected 4, 1, 1",
        (long long)c, (long long)o, (long long)cp);
  st = flagos_session_set_sla(planned, k_sla_mlp_reverse);
  CHECK(!st, "set_sla reverse: %s", flagos_status_message(st));
  flagos_status_free(st);
  int64_t c2, o2, cp2;
  CHECK(run_check(planned, &mx, 1, mref, mnumel), "mlp placed the other way round differs from NumPy");
  slot_nodes(planned, &c2, &o2, &cp2, NULL);
  CHECK(c2 > c && o2 > o && cp2 > cp, "mlp reverse plan: %lld nodes on the cpu, %lld on opencl, %lld copies",
        (long long)(c2 - c), (long long)(o2 - o), (long long)(cp2 - cp));
  rt_slot_stats_t ss;
  CHECK(!rt_session_slot_stats(on_cpu, 0, &ss), "a session forced onto the cpu has device slots");
  /* A forced session refuses SLAs. */
  st = flagos_session_set_sla(on_cpu, k_sla_cpu);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED, "set_sla on a one-device session: %s",
        flagos_status_message(st));
  flagos_status_free(st);
  flagos_session_destroy(planned);
  flagos_session_destroy(on_cpu);
  flagos_session_destroy(on_ocl);
  flagos_bundle_close(mlp);

  /* ---- (a) the 13-node model ---- */
  unsigned seed = 12345;
  for (int i = 0; i < I * H; i++) w1[i] = frand(&seed) * 0.5f;
  for (int i = 0; i < H * H; i++) w2[i] = frand(&seed) * 0.4f;
  for (int i = 0; i < H * O; i++) w3[i] = frand(&seed) * 0.6f;
  for (int i = 0; i < H; i++) b1[i] = frand(&seed) * 0.2f, b2[i] = frand(&seed) * 0.2f, cc[i] = frand(&seed) * 0.3f;
  for (int i = 0; i < O; i++) b3[i] = frand(&seed) * 0.2f;
  fir_model_t *dm = deep_model();
  flagos_bundle_t *deep = build(dm, "deep", k_sla_split);
  fir_model_destroy(dm);
  if (!deep) return 1;
  static worker_t w[N_THREADS];
  for (int t = 0; t < N_THREADS; t++) {
    for (int i = 0; i < B * I; i++) w[t].x[i] = frand(&seed) * (float)(t + 1);
    deep_reference(w[t].x, w[t].y, w[t].z);
  }
  flagos_tensor_t dx = {FLAGOS_FLOAT32, 2, {B, I}, w[0].x, sizeof w[0].x};
  const float *dref[2] = {w[0].y, w[0].z};
  int64_t dnumel[2] = {B * O, B * H};
  planned = session(deep, NULL);
  on_cpu = session(deep, "cpu");
  on_ocl = session(deep, "opencl:0");
  if (!planned || !on_cpu || !on_ocl) return 1;
  CHECK(run_check(on_cpu, &dx, 2, dref, dnumel), "13-node model on the cpu differs from the reference");
  CHECK(run_check(on_ocl, &dx, 2, dref, dnumel), "13-node model on opencl differs from the reference");
  CHECK(run_check(planned, &dx, 2, dref, dnumel) && run_check(planned, &dx, 2, dref, dnumel),
        "13-node model placed on cpu+opencl differs from the reference");
  slot_nodes(planned, &c, &o, &cp, &up);
  CHECK(c > 0 && o > 0 && c + o == 2 * 13 && cp > 0,
        "13-node plan over two runs: %lld nodes on the cpu, %lld on opencl, %lld copies", (long long)c, (long long)o,
        (long long)cp);
  CHECK(up > 0 && up <= 7, "opencl holds %lld weight uploads after two runs (7 initializers, each placed once at most)",
        (long long)up);
  /* The copies run on the copier's thread while the nodes that do not need
   * them are issued; with FLAGOS_ASYNC_COPIES=0 on the run's thread, in turn. */
  int64_t ahead = copies_ahead(planned);
  CHECK(ahead > 0, "13-node plan: no copy ran ahead of its reader (%lld copies)", (long long)cp);
  setenv("FLAGOS_ASYNC_COPIES", "0", 1);
  CHECK(run_check(planned, &dx, 2, dref, dnumel), "13-node model placed on cpu+opencl, copies in turn, differs");
  unsetenv("FLAGOS_ASYNC_COPIES");
  CHECK(copies_ahead(planned) == ahead, "copies in turn ran ahead: %lld, before %lld", (long long)copies_ahead(planned),
        (long long)ahead);
  flagos_session_destroy(on_cpu);
  flagos_session_destroy(on_ocl);
  flagos_session_destroy(planned);

  /* ---- (b) swaps: each plan runs where it says, then under 8 threads ---- */
  flagos_session_t *s = session(deep, "plan");
  if (!s) return 1;
  struct {
    const char *sla;
    bool cpu, ocl;
  } plans[3] = {{k_sla_cpu, true, false}, {k_sla_ocl, false, true}, {k_sla_split, true, true}};
  for (int k = 0; k < 3; k++) {
    st = flagos_session_set_sla(s, plans[k].sla);
    CHECK(!st, "set_sla %s: %s", plans[k].sla, flagos_status_message(st));
    flagos_status_free(st);
    int64_t c0, o0, c1, o1;
    slot_nodes(s, &c0, &o0, &cp, NULL);
    CHECK(run_check(s, &dx, 2, dref, dnumel), "after set_sla %s: wrong output", plans[k].sla);
    slot_nodes(s, &c1, &o1, &cp, NULL);
    CHECK((c1 > c0) == plans[k].cpu && (o1 > o0) == plans[k].ocl && c1 - c0 + o1 - o0 == 13,
          "after set_sla %s: %lld nodes ran on the cpu, %lld on opencl", plans[k].sla, (long long)(c1 - c0),
          (long long)(o1 - o0));
  }
  int64_t cb, ob, cpb;
  slot_nodes(s, &cb, &ob, &cpb, NULL);
  /* The swapper is a thread of its own that ends: GLPK keeps an environment
   * per thread, which the solver frees (LeakSanitizer, under ASan, says if not). */
  pthread_t th[N_THREADS], swapper;
  for (int t = 0; t < N_THREADS; t++) {
    w[t].s = s;
    pthread_create(&th[t], NULL, worker_main, &w[t]);
  }
  int bad = 0, runs = 0;
  pthread_create(&swapper, NULL, swapper_main, s);
  pthread_join(swapper, NULL);
  for (int t = 0; t < N_THREADS; t++) {
    pthread_join(th[t], NULL);
    bad += w[t].bad;
    runs += w[t].runs;
  }
  CHECK(bad == 0, "%d of %d runs failed or differed during swaps", bad, runs);
  slot_nodes(s, &c, &o, &cp, &up);
  /* Under the threads, runs took all three plans (the split one copies between devices). */
  CHECK(c > cb && o > ob && cp > cpb, "during the swaps: %lld cpu nodes, %lld opencl nodes, %lld copies", (long long)(c - cb),
        (long long)(o - ob), (long long)(cp - cpb));
  printf("%d runs on 8 threads during %d swaps: %lld nodes ran on the cpu, %lld on opencl, %lld cross-device copies, "
         "%lld weights uploaded to opencl\n",
         runs, g_swaps, (long long)c, (long long)o, (long long)cp, (long long)up);

  /* ---- (c) an SLA that cannot be met keeps the old plan ---- */
  st = flagos_session_set_sla(s, k_sla_split);
  CHECK(!st, "set_sla split: %s", flagos_status_message(st));
  flagos_status_free(st);
  st = flagos_session_set_sla(s, k_sla_never);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT &&
            strstr(flagos_status_message(st), "the SLA cannot be met: max_latency_ms = 1e-06"),
        "an unmeetable SLA: %s", st ? flagos_status_message(st) : "accepted");
  flagos_status_free(st);
  st = flagos_session_set_sla(s, "{\"mode\": \"fastest\"}");
  CHECK(st && strstr(flagos_status_message(st), "field 'mode'"), "a bad SLA: %s",
        st ? flagos_status_message(st) : "accepted");
  flagos_status_free(st);
  int64_t c0, o0, c1, o1;
  slot_nodes(s, &c0, &o0, &cp, NULL);
  CHECK(run_check(s, &dx, 2, dref, dnumel), "after a refused SLA: wrong output");
  slot_nodes(s, &c1, &o1, &cp, NULL);
  CHECK(c1 > c0 && o1 > o0, "after a refused SLA the split plan no longer runs (%lld cpu, %lld opencl nodes)",
        (long long)(c1 - c0), (long long)(o1 - o0));
  flagos_session_destroy(s);
  flagos_bundle_close(deep);
  flagos_value_t v = {.kind = FLAGOS_VALUE_TENSOR, .tensor = mx};
  flagos_value_clear(&v);
  v.tensor = my;
  flagos_value_clear(&v);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
