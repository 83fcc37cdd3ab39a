/* The cuda target and plugin without a GPU (what CI can check):
 *  - the plugin loads and reports zero devices with no driver (a missing
 *    libcuda, and CUDA's stub libcuda whose cuInit refuses), and `flagos
 *    devices` lists it so; it refuses damaged containers;
 *  - a sample of ONNX conformance models compile through the CUDA C dialect and
 *    NVRTC for every default architecture. Each container entry is checked
 *    against facts of NVIDIA's formats, not against FlagOS's own output: a
 *    cubin is a 64-bit ELF for machine EM_CUDA (190) whose e_flags name its
 *    SM (bits 8-15 in the ELF ABI CUDA 12.8+ writes, bits 0-7 before), holding
 *    every kernel's name; the PTX declares `.target sm_90` and an `.entry` per
 *    kernel. The cache gives back identical bytes, and an NVRTC error names
 *    the architecture and keeps the source;
 *  - row reductions and a softmax are emitted in the cooperative form (warp
 *    shuffles, shared memory, one thread storing a row's result) and compile,
 *    and a pointwise kernel is not.
 * Without NVRTC the compile part is skipped with a message. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cgen.h"
#include "flagos/backend.h"
#include "flagos/flagos.h"
#include "runtime/runtime.h"

#include "check.h"

static bool msg_has(flagos_status_t st, const char *text) { return st && strstr(flagos_status_message(st), text); }

/* ---- the plugin with no driver ---- */
static const flagos_backend_t *load_plugin(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/backends/libflagos_backend_cuda.so", FLAGOS_BINARY_DIR);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(h != NULL, "cannot load %s: %s", path, dlerror());
  if (!h) return NULL;
  flagos_backend_entry_fn entry = (flagos_backend_entry_fn)(uintptr_t)dlsym(h, FLAGOS_BACKEND_ENTRY_SYMBOL);
  CHECK(entry != NULL, "no %s in the cuda plugin", FLAGOS_BACKEND_ENTRY_SYMBOL);
  if (!entry) return NULL;
  CHECK(entry(FLAGOS_BACKEND_ABI_VERSION + 1) == NULL, "an unknown ABI version is refused");
  const flagos_backend_t *api = entry(FLAGOS_BACKEND_ABI_VERSION);
  CHECK(api && strcmp(api->name, "cuda") == 0 && strcmp(api->code_format, "flagos-cuda") == 0,
        "the plugin is 'cuda' and loads flagos-cuda code");
  return api;
}

/* Starts the plugin with FLAGOS_CUDA_DRIVER=driver and checks it has no device. */
static void check_no_devices(const flagos_backend_t *api, const char *driver) {
  setenv("FLAGOS_CUDA_DRIVER", driver, 1);
  flagos_host_t host = {FLAGOS_BACKEND_ABI_VERSION, flagos_status_new, "/tmp"};
  void *state = NULL;
  flagos_status_t st = api->init(&host, &state);
  CHECK(!st && state, "init with driver '%s' succeeds: %s", driver, st ? flagos_status_message(st) : "no state");
  flagos_status_free(st);
  if (!state) return;
  CHECK(api->device_count(state) == 0, "driver '%s': zero devices, got %d", driver, api->device_count(state));
  flagos_device_info_t di;
  st = api->device_info(state, 0, &di);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT && msg_has(st, "no device 0"),
        "device_info(0) names the missing device: %s", st ? flagos_status_message(st) : "(success)");
  flagos_status_free(st);
  flagos_devptr_t p = NULL;
  st = api->mem_alloc(state, 0, 64, &p);
  CHECK(st && !p, "no memory without a device");
  flagos_status_free(st);
  flagos_bmodule_t m = NULL;
  st = api->module_load(state, 0, "not a container at all", 22, &m);
  CHECK(msg_has(st, "not a FlagOS CUDA container") && !m, "garbage is refused: %s",
        st ? flagos_status_message(st) : "(success)");
  flagos_status_free(st);
  api->shutdown(state);
  unsetenv("FLAGOS_CUDA_DRIVER");
}

static void check_devices_cli(void) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd,
           "FLAGOS_CUDA_DRIVER=/nonexistent/libcuda.so.1 FLAGOS_PLUGIN_PATH=%s/backends %s/flagos devices 2>&1",
           FLAGOS_BINARY_DIR, FLAGOS_BINARY_DIR);
  FILE *f = popen(cmd, "r");
  CHECK(f != NULL, "cannot run flagos devices");
  if (!f) return;
  char out[8192] = "";
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = 0;
  int rc = pclose(f);
  CHECK(rc == 0, "flagos devices exits 0 (got %d): %s", rc, out);
  CHECK(strstr(out, "cuda (plugin 0.1.0, code flagos-cuda): 0 device(s)") != NULL,
        "flagos devices lists cuda with zero devices:\n%s", out);
}

/* ---- containers ---- */
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static bool has_bytes(const unsigned char *p, size_t n, const char *s) {
  size_t l = strlen(s);
  for (size_t i = 0; l <= n && i + l <= n; i++)
    if (p[i] == (unsigned char)s[0] && memcmp(p + i, s, l) == 0) return true;
  return false;
}

static const struct {
  uint32_t kind, sm;
} k_archs[] = {{CGEN_CUDA_CUBIN, 80}, {CGEN_CUDA_CUBIN, 86}, {CGEN_CUDA_CUBIN, 89}, {CGEN_CUDA_CUBIN, 90}, {CGEN_CUDA_PTX, 90}};

static void check_container(const char *test, const flagos_bundle_t *b, const unsigned char *c, size_t size) {
  flagos_status_t st = cgen_cuda_container_check(c, size);
  CHECK(!st, "%s: container: %s", test, st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  if (size < 16) return;
  uint32_t n = rd32(c + 12);
  CHECK(n == FL_ARRAY_LEN(k_archs), "%s: %u entries, expected %zu", test, n, FL_ARRAY_LEN(k_archs));
  for (uint32_t i = 0; i < n && i < FL_ARRAY_LEN(k_archs); i++) {
    const unsigned char *e = c + 16 + 24 * (size_t)i;
    uint32_t kind = rd32(e), sm = rd32(e + 4);
    uint64_t off = rd64(e + 8), len = rd64(e + 16);
    CHECK(kind == k_archs[i].kind && sm == k_archs[i].sm, "%s: entry %u is kind %u sm %u", test, i, kind, sm);
    if (off > size || len > size - off || len < 64) {
      CHECK(false, "%s: entry %u out of bounds", test, i);
      continue;
    }
    CHECK(off % 16 == 0, "%s: entry %u at offset %llu is not 16-byte aligned", test, i, (unsigned long long)off);
    const unsigned char *p = c + off;
    if (kind == CGEN_CUDA_CUBIN) {
      uint16_t machine = (uint16_t)(p[18] | p[19] << 8);
      uint32_t flags = rd32(p + 48);
      uint32_t elf_sm = p[7] == 0x41 ? (flags >> 8) & 0xff : flags & 0xff; /* EI_OSABI 0x41: CUDA's newer ELF ABI */
      CHECK(memcmp(p, "\x7f" "ELF", 4) == 0 && p[4] == 2 && machine == 190, "%s: sm_%u is not a 64-bit EM_CUDA ELF",
            test, sm);
      CHECK(elf_sm == sm, "%s: the sm_%u cubin's ELF says sm_%u", test, sm, elf_sm);
    } else {
      CHECK(p[len - 1] == 0, "%s: PTX is NUL-terminated", test);
      CHECK(has_bytes(p, len, ".target sm_90"), "%s: PTX targets sm_90", test);
    }
    for (int k = 0; k < b->n_kernels; k++) {
      char entry[300];
      snprintf(entry, sizeof entry, kind == CGEN_CUDA_PTX ? ".entry %s(" : "%s", b->kernel_names[k]);
      CHECK(has_bytes(p, len, entry), "%s: %s_%u lacks kernel %s", test, kind == CGEN_CUDA_PTX ? "compute" : "sm", sm,
            b->kernel_names[k]);
    }
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Ops and dtypes the dialect must handle: broadcasts, reductions, normalisation,
 * GEMM and convolution bodies, gathers, selects, serial scans, integer helpers,
 * every narrow float conversion family, sub-byte ints. */
static const char *const k_models[] = {
    "test_add_bcast", "test_softmax_axis_1", "test_cast_FLOAT_to_FLOAT8E4M3FN", "test_cast_FLOAT16_to_FLOAT",
    "test_cast_FLOAT_to_BFLOAT16", "test_cast_FLOAT_to_INT4", "test_reduce_sum_default_axes_keepdims_random",
    "test_layer_normalization_2d_axis0", "test_matmul_2d", "test_conv_with_strides_padding", "test_gather_0",
    "test_where_example", "test_bitshift_right_uint16", "test_mod_mixed_sign_int8", "test_argmax_default_axis_example",
    "test_cumsum_1d", "test_top_k", "test_gelu_tanh_1", "test_erf", "test_pow_types_int64_int64", "test_isinf",
    "test_round", "test_max_float16", "test_dequantizelinear_int4", "test_einsum_batch_matmul", "test_nonzero_example",
    "test_resize_upsample_scales_linear", "test_maxpool_2d_default", "test_bitwise_not_3d", "test_gridsample",
};

static void check_models(const char *cache) {
  flagos_compile_options_t co = {.targets = "cuda", .cache_dir = cache};
  double t0 = now_s();
  for (size_t i = 0; i < FL_ARRAY_LEN(k_models); i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/onnx-node/%s/model.onnx", FLAGOS_CONFORMANCE_DIR, k_models[i]);
    if (access(path, R_OK) != 0) {
      CHECK(false, "conformance model %s is missing", path);
      continue;
    }
    flagos_bundle_t *b = NULL;
    flagos_status_t st = flagos_compile_to_bundle(path, &co, &b);
    CHECK(!st, "%s: %s", k_models[i], st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    if (!b) continue;
    CHECK(b->n_kernels > 0, "%s has kernels", k_models[i]);
    int code = -1;
    for (int c = 0; c < b->n_code; c++)
      if (strcmp(b->code[c].target, "cuda") == 0) code = c;
    CHECK(code >= 0 && strcmp(b->code[code].format, "flagos-cuda") == 0, "%s: the bundle has flagos-cuda code",
          k_models[i]);
    if (code >= 0) check_container(k_models[i], b, b->code[code].data, b->code[code].size);
    flagos_bundle_close(b);
  }
  printf("test_cuda_nvrtc: %zu models compiled for 5 architectures in %.1f s\n", FL_ARRAY_LEN(k_models), now_s() - t0);
}

static void check_cache_and_errors(const char *cache) {
  kir_kernel_t *none[1] = {NULL};
  fl_buf_t src = {0};
  flagos_status_t st = cgen_cuda_emit(none, 0, &src);
  CHECK(!st, "emitting no kernels works");
  flagos_status_free(st);
  fl_buf_puts(&src, "extern \"C\" __global__ void probe(float *b0) { b0[threadIdx.x] = fo_dec_bf16((uint16_t)1); }\n");
  void *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  double t0 = now_s();
  st = cgen_cuda_compile(src.data, src.len, "sm_80,compute_80", cache, &a, &na);
  double t1 = now_s();
  CHECK(!st, "probe compiles: %s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  st = cgen_cuda_compile(src.data, src.len, "sm_80,compute_80", cache, &b, &nb);
  double t2 = now_s();
  CHECK(!st && a && b && na == nb && memcmp(a, b, na) == 0, "the cache gives back the same container");
  CHECK(t2 - t1 < (t1 - t0) / 2 + 0.01, "a cache hit (%.3f s) is faster than the compile (%.3f s)", t2 - t1, t1 - t0);
  flagos_status_free(st);
  free(a);
  free(b);

  fl_buf_t bad = {0};
  fl_buf_puts(&bad, "extern \"C\" __global__ void broken(float *b0) { b0[0] = undefined_name; }\n");
  st = cgen_cuda_compile(bad.data, bad.len, "sm_86", cache, &a, &na);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_BACKEND && msg_has(st, "failed for sm_86") &&
            msg_has(st, "undefined_name") && msg_has(st, ".failed.cu"),
        "an NVRTC error names the architecture, the diagnostic and the kept source: %s",
        st ? flagos_status_message(st) : "(success)");
  flagos_status_free(st);
  st = cgen_cuda_compile(bad.data, bad.len, "sm_8x", cache, &a, &na);
  CHECK(st && flagos_status_code(st) == FLAGOS_ERR_INVALID_ARGUMENT && msg_has(st, "sm_8x"),
        "a bad architecture is refused: %s", st ? flagos_status_message(st) : "(success)");
  flagos_status_free(st);
  fl_buf_free(&bad);
  fl_buf_free(&src);

  unsigned char hdr[16 + 24] = "FLOSCUDA";
  hdr[8] = 1;
  hdr[12] = 1;
  hdr[16] = 1;
  st = cgen_cuda_container_check(hdr, sizeof hdr);
  CHECK(st != NULL, "an entry of size 0 is refused");
  flagos_status_free(st);
}

/* The cooperative form (docs/kernel-ir.md, "The CUDA kernel ABI"): a row
 * reduction and a softmax whose row max and sum are hoisted out of the column
 * loop are shared by the threads of a block (or warp) — warp shuffles, shared
 * memory, one thread storing a row's result — and the source compiles; a
 * pointwise kernel stays one thread per point. */
static void check_coop(const char *cache) {
  fl_arena_t *A = fl_arena_create();
  kir_kernel_t *ks[3];
  kir_expr_t *v[2], *ext[2] = {kir_sym(A, 0), kir_sym(A, 1)};

  kir_kernel_t *k = ks[0] = kir_kernel_create(A, "coop_rowsum");
  k->n_syms = 2;
  int x = kir_add_buf(k, "x", FLAGOS_FLOAT16, 2, ext), y = kir_add_buf(k, "y", FLAGOS_FLOAT32, 1, ext);
  kir_set_space(k, 1, ext, v);
  int r = kir_new_var(k);
  kir_expr_t *ix[2] = {v[0], kir_var(A, r)}, *n = ext[1];
  kir_store(k, y, v, kir_reduce(A, KIR_RSUM, 1, &r, &n, kir_cast(A, FLAGOS_FLOAT32, kir_load(k, x, ix))), NULL);

  k = ks[1] = kir_kernel_create(A, "coop_softmax");
  k->n_syms = 2;
  x = kir_add_buf(k, "x", FLAGOS_FLOAT32, 2, ext);
  y = kir_add_buf(k, "y", FLAGOS_FLOAT32, 2, ext);
  kir_set_space(k, 2, ext, v);
  int jm = kir_new_var(k), js = kir_new_var(k);
  kir_expr_t *im[2] = {v[0], kir_var(A, jm)}, *is[2] = {v[0], kir_var(A, js)};
  kir_expr_t *m = kir_reduce(A, KIR_RMAX, 1, &jm, &n, kir_load(k, x, im));
  kir_expr_t *den =
      kir_reduce(A, KIR_RSUM, 1, &js, &n, kir_un(A, KIR_EXP, kir_bin(A, KIR_SUB, kir_load(k, x, is), m)));
  kir_store(k, y, v, kir_bin(A, KIR_DIV, kir_un(A, KIR_EXP, kir_bin(A, KIR_SUB, kir_load(k, x, v), m)), den), NULL);

  k = ks[2] = kir_kernel_create(A, "coop_none");
  k->n_syms = 2;
  x = kir_add_buf(k, "x", FLAGOS_FLOAT32, 2, ext);
  y = kir_add_buf(k, "y", FLAGOS_FLOAT32, 2, ext);
  kir_set_space(k, 2, ext, v);
  kir_store(k, y, v, kir_un(A, KIR_EXP, kir_load(k, x, v)), NULL);

  fl_buf_t src[3] = {{0}};
  for (int i = 0; i < 3; i++) {
    flagos_status_t st = cgen_cuda_emit(&ks[i], 1, &src[i]);
    CHECK(!st, "%s emits: %s", ks[i]->name, st ? flagos_status_message(st) : "");
    flagos_status_free(st);
  }
  for (int i = 0; i < 2; i++) {
    const char *t = src[i].data ? src[i].data : "";
    CHECK(strstr(t, "fo_shfl_xor(r") && strstr(t, "__syncthreads();") && strstr(t, "__shared__ float fo_sh0[32];") &&
              strstr(t, "+= fo_gw)") && strstr(t, "for (int64_t fo_row = fo_row0;"),
          "%s is emitted in the cooperative form", ks[i]->name);
  }
  CHECK(src[0].data && strstr(src[0].data, "if (fo_gt == 0) b1["), "one thread stores a row's sum");
  /* the softmax's max and sum are computed once per row, before its column loop */
  const char *sm = src[1].data ? src[1].data : "", *mx = strstr(sm, "fo_max_f32("), *cols = strstr(sm, "fo_j = fo_gt");
  CHECK(mx && cols && mx < cols && strstr(sm, "fo_sh1[32]") && !strstr(cols, "fo_shfl_xor(r"),
        "the softmax's row max and sum are shared reductions before the column loop");
  CHECK(src[2].data && !strstr(src[2].data, "__shared__") && !strstr(src[2].data, "fo_gt"),
        "a pointwise kernel keeps one thread per point");
  for (int i = 0; i < 3; i++) {
    void *blob = NULL;
    size_t nb = 0;
    flagos_status_t st = cgen_cuda_compile(src[i].data, src[i].len, "sm_90", cache, &blob, &nb);
    CHECK(!st && blob && nb > 0, "%s compiles for sm_90: %s", ks[i]->name, st ? flagos_status_message(st) : "");
    flagos_status_free(st);
    free(blob);
    fl_buf_free(&src[i]);
  }
  fl_arena_destroy(A);
}

int main(void) {
  const flagos_backend_t *api = load_plugin();
  if (api) {
    check_no_devices(api, "/nonexistent/libcuda.so.1");
    const char *stub = "/usr/local/cuda/lib64/stubs/libcuda.so";
    if (access(stub, R_OK) == 0) check_no_devices(api, stub);
  }
  check_devices_cli();

  int major = 0, minor = 0;
  if (!cgen_cuda_available(&major, &minor)) {
    printf("test_cuda_nvrtc: SKIP the NVRTC part: NVRTC not found (install the CUDA toolkit or set "
           "FLAGOS_NVRTC_LIBRARY)\n");
  } else {
    char cache[] = "/tmp/flagos-cuda-test-XXXXXX";
    CHECK(mkdtemp(cache) != NULL, "temporary cache directory");
    printf("test_cuda_nvrtc: NVRTC %d.%d\n", major, minor);
    unsetenv("FLAGOS_CUDA_ARCHS");
    check_models(cache);
    check_cache_and_errors(cache);
    check_coop(cache);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache);
  }
  printf("test_cuda_nvrtc: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
