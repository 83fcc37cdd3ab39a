/* The runtime's path for devices with their own memory (weights placed once per
 * session, graphs captured and replayed), run on this machine through a plugin
 * named "cpu" that wraps the real one, says its memory is not host-visible and
 * counts copies and launches (tests/unit/fake_device_plugin.c). Results are
 * compared with NumPy's output for the example model (examples/mlp_expected.npy);
 * the counts with what the model holds (four initializers, one input); a planned
 * session whose plan keeps everything on that device replays too. Also: the
 * cuda plugin's graph entries without a GPU. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "io/value_io.h"
#include "runtime/exec.h"

#include "check.h"

typedef struct fake_counts {
  long h2d, d2h, d2d, h2d_bytes, launches, captured_launches, graph_launches, captures, capture_failures;
} fake_counts_t;
static void (*get_counts)(fake_counts_t *);
static void (*set_graph_abi)(int);

static flagos_tensor_t g_in, g_ref;
static flagos_bundle_t *g_bundle;

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

/* One run; true when the output matches NumPy's. */
static bool run_ok(flagos_session_t *s) {
  flagos_value_t in = {.kind = FLAGOS_VALUE_TENSOR, .tensor = g_in}, out;
  memset(&out, 0, sizeof out);
  flagos_status_t st = flagos_session_run(s, &in, 1, &out, 1);
  if (st) {
    fprintf(stderr, "run: %s\n", flagos_status_message(st));
    flagos_status_free(st);
    return false;
  }
  bool ok = out.tensor.rank == g_ref.rank && flagos_tensor_numel(&out.tensor) == flagos_tensor_numel(&g_ref);
  for (int64_t i = 0; ok && i < flagos_tensor_numel(&g_ref); i++)
    ok = fabsf(((float *)out.tensor.data)[i] - ((float *)g_ref.data)[i]) <= 1e-4f;
  flagos_value_clear(&out);
  return ok;
}

static flagos_session_t *new_session(void) {
  flagos_session_options_t o = {.device = "cpu"};
  flagos_session_t *s = NULL;
  flagos_status_t st = flagos_session_create(g_bundle, &o, &s);
  CHECK(!st, "session: %s", flagos_status_message(st));
  flagos_status_free(st);
  return s;
}

static void *thread_runs(void *arg) {
  long bad = 0;
  for (int i = 0; i < 10; i++) bad += !run_ok(arg);
  return (void *)bad;
}

/* The cuda plugin with no GPU: it has the graph entries, and they fail cleanly. */
static void cuda_plugin_without_gpu(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/backends/libflagos_backend_cuda.so", FLAGOS_BINARY_DIR);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("cuda plugin not built: skipped its part\n");
    return;
  }
  flagos_backend_entry_fn e = (flagos_backend_entry_fn)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL);
  const flagos_backend_t *api = e ? e(FLAGOS_BACKEND_ABI_VERSION) : NULL;
  CHECK(api && FLAGOS_BACKEND_HAS(api, capture_begin) && FLAGOS_BACKEND_HAS(api, capture_end) &&
            FLAGOS_BACKEND_HAS(api, graph_launch) && FLAGOS_BACKEND_HAS(api, graph_destroy),
        "the cuda plugin lacks the graph entries");
  if (!api) return;
  flagos_host_t host = {FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, "/tmp"};
  void *state = NULL;
  flagos_status_t st = api->init(&host, &state);
  CHECK(!st, "cuda init: %s", flagos_status_message(st));
  if (api->device_count(state) > 0) {
    printf("a CUDA device is present: its capture is tested on the GPU, not here\n");
  } else {
    st = api->capture_begin(state, 0, NULL);
    CHECK(st != NULL, "capture_begin with no device succeeded");
    flagos_status_free(st);
    flagos_bgraph_t g = (flagos_bgraph_t)1;
    st = api->capture_end(state, 0, NULL, &g);
    CHECK(st != NULL && g == NULL, "capture_end with no device: no error or a graph");
    flagos_status_free(st);
    st = api->graph_launch(state, NULL, NULL);
    CHECK(st != NULL, "launch of a NULL graph succeeded");
    flagos_status_free(st);
    api->graph_destroy(state, NULL);
    setenv("FLAGOS_CUDA_GRAPHS", "0", 1);
    st = api->capture_begin(state, 0, NULL);
    CHECK(st && flagos_status_code(st) == FLAGOS_ERR_UNSUPPORTED, "FLAGOS_CUDA_GRAPHS=0 is not UNSUPPORTED: %s",
          flagos_status_message(st));
    flagos_status_free(st);
    unsetenv("FLAGOS_CUDA_GRAPHS");
  }
  api->shutdown(state);
}

int main(void) {
  /* The wrapping plugin must be the "cpu" found first, before any plugin loads. */
  char plug[2048];
  snprintf(plug, sizeof plug, "%s/tests/fakeplug", FLAGOS_BINARY_DIR);
  setenv("FLAGOS_PLUGIN_PATH", plug, 1);
  unsetenv("FLAGOS_GRAPHS");
  char model[4096], bundle[4096], p[4096];
  snprintf(model, sizeof model, "%s/examples/mlp.onnx", FLAGOS_SOURCE_DIR);
  snprintf(bundle, sizeof bundle, "%s/tests/test_runtime_graphs.flagos", FLAGOS_BINARY_DIR);
  snprintf(p, sizeof p, "%s/examples/mlp_input.npy", FLAGOS_SOURCE_DIR);
  g_in = load_npy(p);
  snprintf(p, sizeof p, "%s/examples/mlp_expected.npy", FLAGOS_SOURCE_DIR);
  g_ref = load_npy(p);
  flagos_status_t st = flagos_compile_file(model, bundle, NULL);
  if (!st) st = flagos_bundle_open(bundle, &g_bundle);
  if (st) {
    fprintf(stderr, "compile/open: %s\n", flagos_status_message(st));
    return 1;
  }
  flagos_session_t *s = new_session();
  if (!s) return 1;
  snprintf(p, sizeof p, "%s/libflagos_backend_cpu.so", plug);
  void *fh = dlopen(p, RTLD_NOW | RTLD_NOLOAD);
  get_counts = fh ? (void (*)(fake_counts_t *))dlsym(fh, "fake_counts") : NULL;
  set_graph_abi = fh ? (void (*)(int))dlsym(fh, "fake_set_graph_abi") : NULL;
  if (!get_counts || !set_graph_abi) {
    fprintf(stderr, "the session did not load the counting plugin (%s)\n", p);
    return 1;
  }
  const long in_bytes = (long)g_in.nbytes;
  const long weight_bytes = (16 * 32 + 32 + 32 * 4 + 4) * 4; /* w1, b1, w2, b2 of examples/make_mlp.py */

  /* 1. Weights once, graph captured at the first run and replayed after. */
  fake_counts_t c0, c1, c3;
  get_counts(&c0);
  CHECK(run_ok(s), "first run differs from NumPy");
  get_counts(&c1);
  CHECK(c1.h2d - c0.h2d == 4 + 1, "first run: %ld uploads, expected 4 weights + 1 input", c1.h2d - c0.h2d);
  CHECK(c1.h2d_bytes - c0.h2d_bytes == weight_bytes + in_bytes, "first run uploaded %ld bytes, expected %ld",
        c1.h2d_bytes - c0.h2d_bytes, weight_bytes + in_bytes);
  CHECK(c1.captures - c0.captures == 1 && c1.graph_launches - c0.graph_launches == 1,
        "first run: %ld captures, %ld graph launches", c1.captures - c0.captures, c1.graph_launches - c0.graph_launches);
  CHECK(c1.launches == c0.launches && c1.captured_launches > c0.captured_launches,
        "first run: %ld kernels launched directly, %ld recorded", c1.launches - c0.launches,
        c1.captured_launches - c0.captured_launches);
  CHECK(run_ok(s) && run_ok(s), "replayed runs differ from NumPy");
  get_counts(&c3);
  CHECK(c3.h2d - c1.h2d == 2 && c3.h2d_bytes - c1.h2d_bytes == 2 * in_bytes,
        "two later runs: %ld uploads of %ld bytes, expected the input only", c3.h2d - c1.h2d, c3.h2d_bytes - c1.h2d_bytes);
  CHECK(c3.graph_launches - c1.graph_launches == 2 && c3.launches == c1.launches && c3.captures == c1.captures,
        "later runs: %ld graph launches, %ld direct launches, %ld captures", c3.graph_launches - c1.graph_launches,
        c3.launches - c1.launches, c3.captures - c1.captures);
  int64_t uploads;
  rt_graph_stats_t gst;
  rt_session_stats(s, &uploads, &gst);
  CHECK(uploads == 4 && gst.captures == 1 && gst.replays == 2 && gst.fallbacks == 0,
        "stats: %lld uploads, %lld captures, %lld replays, %lld fallbacks", (long long)uploads, (long long)gst.captures,
        (long long)gst.replays, (long long)gst.fallbacks);
  /* A caller-owned output buffer on the replay path. */
  float buf[64];
  flagos_value_t in = {.kind = FLAGOS_VALUE_TENSOR, .tensor = g_in}, out;
  memset(&out, 0, sizeof out);
  out.kind = FLAGOS_VALUE_TENSOR;
  out.tensor.data = buf;
  out.tensor.nbytes = sizeof buf;
  st = flagos_session_run(s, &in, 1, &out, 1);
  CHECK(!st && out.tensor.rank == g_ref.rank, "run into a caller's buffer: %s", flagos_status_message(st));
  for (int64_t i = 0; !st && i < flagos_tensor_numel(&g_ref); i++)
    CHECK(fabsf(buf[i] - ((float *)g_ref.data)[i]) <= 1e-4f, "caller buffer element %lld", (long long)i);
  flagos_status_free(st);
  /* A wrong input on the replay path is still an error, not a crash. */
  flagos_value_t small = in;
  small.tensor.nbytes = 4;
  memset(&out, 0, sizeof out);
  st = flagos_session_run(s, &small, 1, &out, 1);
  CHECK(st != NULL, "a too-small input buffer was accepted");
  flagos_status_free(st);
  flagos_session_destroy(s);

  /* 2. FLAGOS_GRAPHS=0: plain launches, weights still once per session. */
  setenv("FLAGOS_GRAPHS", "0", 1);
  s = new_session();
  get_counts(&c0);
  CHECK(s && run_ok(s) && run_ok(s), "FLAGOS_GRAPHS=0 runs differ from NumPy");
  get_counts(&c1);
  CHECK(c1.captures == c0.captures && c1.graph_launches == c0.graph_launches && c1.launches > c0.launches,
        "FLAGOS_GRAPHS=0 still captured");
  CHECK(c1.h2d - c0.h2d == 4 + 2, "FLAGOS_GRAPHS=0: %ld uploads in two runs, expected 4 + 2", c1.h2d - c0.h2d);
  flagos_session_destroy(s);
  unsetenv("FLAGOS_GRAPHS");

  /* 3. A capture that fails: the run goes the plain way, and so do later runs. */
  setenv("FAKE_CAPTURE_FAIL", "1", 1);
  s = new_session();
  get_counts(&c0);
  CHECK(s && run_ok(s) && run_ok(s), "runs after a failed capture differ from NumPy");
  get_counts(&c1);
  rt_session_stats(s, &uploads, &gst);
  CHECK(c1.capture_failures - c0.capture_failures == 1 && gst.fallbacks == 1 && gst.captures == 0,
        "failed capture: %ld failures, %lld fallbacks", c1.capture_failures - c0.capture_failures,
        (long long)gst.fallbacks);
  CHECK(uploads == 4, "failed capture: weights uploaded %lld times", (long long)uploads);
  flagos_session_destroy(s);
  unsetenv("FAKE_CAPTURE_FAIL");

  /* 4. A plugin that refuses to capture, and one built before the graph entries. */
  setenv("FAKE_NO_CAPTURE", "1", 1);
  s = new_session();
  CHECK(s && run_ok(s) && run_ok(s), "runs with capture refused differ from NumPy");
  rt_session_stats(s, NULL, &gst);
  CHECK(gst.captures == 0 && gst.replays == 0, "capture refused but counted");
  flagos_session_destroy(s);
  unsetenv("FAKE_NO_CAPTURE");
  set_graph_abi(0);
  s = new_session();
  get_counts(&c0);
  CHECK(s && run_ok(s), "run with an older plugin table differs from NumPy");
  get_counts(&c1);
  CHECK(c1.captures == c0.captures && c1.launches > c0.launches, "an older plugin table was asked to capture");
  flagos_session_destroy(s);
  set_graph_abi(1);

  /* 5. Several threads on one fresh session: the weights are still placed once. */
  s = new_session();
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, thread_runs, s);
  long bad = 0;
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(th[i], &r);
    bad += (long)r;
  }
  CHECK(bad == 0, "%ld of 40 threaded runs differ from NumPy", bad);
  rt_session_stats(s, &uploads, &gst);
  CHECK(uploads == 4, "threads: weights uploaded %lld times", (long long)uploads);
  CHECK(gst.captures == 1 && gst.captures + gst.replays <= 40, "threads: %lld captures, %lld replays",
        (long long)gst.captures, (long long)gst.replays);
  flagos_session_destroy(s);

  /* 4. A planned session whose plan keeps everything on the device runs like
   * a session for that device: captured at the first run, replayed after. */
  flagos_session_options_t po = {.device = "plan"};
  s = NULL;
  st = flagos_session_create(g_bundle, &po, &s);
  CHECK(!st && s, "planned session: %s", flagos_status_message(st));
  flagos_status_free(st);
  if (s) {
    get_counts(&c0);
    CHECK(run_ok(s) && run_ok(s) && run_ok(s), "planned session: runs differ from NumPy");
    get_counts(&c1);
    rt_session_stats(s, &uploads, &gst);
    CHECK(gst.captures == 1 && gst.replays == 2 && c1.graph_launches - c0.graph_launches == 3 &&
              c1.launches == c0.launches,
          "planned session on one device: %lld captures, %lld replays, %ld graph launches, %ld direct launches",
          (long long)gst.captures, (long long)gst.replays, c1.graph_launches - c0.graph_launches,
          c1.launches - c0.launches);
    flagos_session_destroy(s);
  }

  cuda_plugin_without_gpu();
  flagos_bundle_close(g_bundle);
  printf("test_runtime_graphs: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
