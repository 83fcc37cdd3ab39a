/* One of this plugin's OpenCL GEMM programs, run through CUDA: the PTX that
 * NVIDIA's OpenCL compiler made for a tile variant (from the kernel cache,
 * backends/opencl/ocl_module.c's <key>.bin less its 16-byte header) loaded with
 * the CUDA driver API and its flagos_gemm kernel launched on a product, so that
 * the same machine code can be timed without NVIDIA's OpenCL runtime (in a
 * CUDA graph of back-to-back launches) and looked at with Nsight Compute,
 * which does not profile OpenCL. The kernel's arguments are GEMM_ARGS
 * (backends/opencl/ocl_gemm_src.c) for an f16 product, as ocl_gemm.c sets
 * them. NVIDIA's OpenCL passes a launch's group offsets and counts in
 * %envreg0-8, which CUDA does not set: scripts/gpu/ptx_probe.sh rewrites them
 * as zeros and %nctaid.
 *
 * Usage: ptx_gemm_probe FILE.ptx M N K TM TN THREADS [FLAGS [TRANS [CARVEOUT [PARTS [TK]]]]]
 *   THREADS the work-items of a group (the PTX's .reqntid); FLAGS the kernel's
 *   flags among 1 (bias), 128 (paired stores: cleared where N is odd, as the
 *   plugin does) and 256 (below), default 129; TRANS bit 0 A transposed, bit 1
 *   B transposed, which must be the transposes the program was built for (the
 *   f16 tensor-core programs fix them; scripts/gpu/ptx_probe.sh builds them
 *   untransposed: 0); CARVEOUT the preferred shared-memory carveout in percent
 *   (-1: the driver's choice, the default); PARTS > 1 splits K into that many
 *   slices of whole K steps of TK (default 64; flags & 4 set: the partial
 *   products into the workspace; with flags & 256 the last slice of a tile
 *   sums them in the kernel).
 * Prints one JSON line: the kernel's registers, local memory and resident
 * groups a multiprocessor, the device's microseconds a call over a graph of
 * 200 launches (the median of 5 replays), and the largest relative error of
 * 97 outputs against the host (null where the outputs are not written: the
 * partial products only). Exits 1 where that error passes 2e-3.
 *
 * Build (scripts/gpu/ptx_probe.sh does): cc -O2 ptx_gemm_probe.c
 *   -I/usr/local/cuda/include -L/usr/local/cuda/lib64/stubs -lcuda */
#include <cuda.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LAUNCHES a graph; COUNTS: ocl_gemm.c's GEMM_COUNTS, the workspace's tile counts */
enum { LAUNCHES = 200, REPLAYS = 5, COUNTS = 4096 };

static void check(CUresult r, const char *what) {
  if (r == CUDA_SUCCESS) return;
  const char *s = NULL;
  cuGetErrorString(r, &s);
  fprintf(stderr, "ptx_gemm_probe: %s: %s\n", what, s ? s : "unknown error");
  exit(1);
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "ptx_gemm_probe: cannot read %s\n", path);
    exit(1);
  }
  s[n] = 0;
  fclose(f);
  return s;
}

static float half_to_float(unsigned short h) {
  int e = (h >> 10) & 31, m = h & 1023;
  float v = e == 31 ? (m ? NAN : INFINITY) : e ? ldexpf((float)(m | 1024), e - 25) : ldexpf((float)m, -24);
  return h & 0x8000 ? -v : v;
}

static int cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  bool help = argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
  if (help || argc < 8 || argc > 13) {
    fprintf(help ? stdout : stderr,
            "usage: ptx_gemm_probe FILE.ptx M N K TM TN THREADS [FLAGS [TRANS [CARVEOUT [PARTS [TK]]]]]\n"
            "  times the PTX's flagos_gemm kernel (an f16 product) through CUDA and checks 97 outputs\n"
            "  FLAGS of 1 (bias), 128 (paired stores), 256 (slices summed in the kernel); default 129\n");
    return !help;
  }
  int v[12];
  const int dflt[12] = {0, 0, 0, 0, 0, 0, 0, 129, 0, -1, 1, 64};
  for (int i = 1; i < 12; i++) {
    char *end = NULL;
    long x = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : dflt[i];
    if (i + 1 < argc && (*end || end == argv[i + 1] || x < INT32_MIN || x > INT32_MAX)) {
      fprintf(stderr, "ptx_gemm_probe: argument %d ('%s') is not an integer\n", i + 1, argv[i + 1]);
      return 1;
    }
    v[i] = (int)x;
  }
  int M = v[1], N = v[2], K = v[3], tm = v[4], tn = v[5], nt = v[6], flags = v[7], trans = v[8], carve = v[9];
  int parts = v[10], tk = v[11];
  if (M < 1 || N < 1 || K < 1 || tm < 1 || tn < 1 || nt < 32 || nt > 1024 || parts < 1 || parts > 64 ||
      trans < 0 || trans > 3 || carve < -1 || carve > 100 || tk < 16 || (flags & ~(1 | 128 | 256))) {
    fprintf(stderr, "ptx_gemm_probe: M, N, K, TM, TN >= 1, THREADS 32 to 1024, TRANS 0 to 3, CARVEOUT -1 to 100, "
                    "PARTS 1 to 64, TK >= 16, FLAGS of 1, 128 and 256 only\n");
    return 1;
  }
  if (N & 1) flags &= ~128; /* paired stores need rows on 4 bytes (ocl_gemm.c: ldy and sy even) */
  unsigned gx = (unsigned)((N + tn - 1) / tn), gy = (unsigned)((M + tm - 1) / tm);
  if (parts > 1) {
    flags |= 4;
    if (gx * gy > COUNTS) {
      fprintf(stderr, "ptx_gemm_probe: a split product has at most %d tiles\n", COUNTS);
      return 1;
    }
  } else
    flags &= ~(4 | 256);
  char *ptx = read_text(argv[1]);
  check(cuInit(0), "cuInit");
  CUdevice dev;
  CUcontext ctx;
  check(cuDeviceGet(&dev, 0), "cuDeviceGet");
  check(cuDevicePrimaryCtxRetain(&ctx, dev), "primary context");
  check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  CUmodule mod;
  char log[8192] = "";
  CUjit_option opt[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *optv[2] = {log, (void *)(size_t)sizeof log};
  if (cuModuleLoadDataEx(&mod, ptx, 2, opt, optv) != CUDA_SUCCESS) {
    fprintf(stderr, "ptx_gemm_probe: loading %s: %s\n", argv[1], log);
    return 1;
  }
  CUfunction f;
  check(cuModuleGetFunction(&f, mod, "flagos_gemm"), "the flagos_gemm kernel");
  if (carve >= 0)
    check(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, carve), "carveout");
  int regs = 0, smem = 0, groups = 0;
  cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, f);
  cuFuncGetAttribute(&smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f);
  check(cuOccupancyMaxActiveBlocksPerMultiprocessor(&groups, f, nt, 0), "occupancy");

  size_t na = (size_t)M * K, nb = (size_t)K * N, ny = (size_t)M * N;
  unsigned short *h = malloc(2 * (na > nb ? na : nb));
  for (size_t i = 0; i < (na > nb ? na : nb); i++) h[i] = (unsigned short)(0x3000 + (i * 2654435761u >> 22) % 0x800);
  CUdeviceptr A, B, Y, W, bias;
  check(cuMemAlloc(&A, 2 * na), "alloc A");
  check(cuMemAlloc(&B, 2 * nb), "alloc B");
  check(cuMemAlloc(&Y, 2 * ny), "alloc Y");
  size_t nw = COUNTS * 4 + (parts > 1 ? (size_t)parts * ny * 4 : 0);
  check(cuMemAlloc(&W, nw), "alloc W");
  check(cuMemAlloc(&bias, 2 * (size_t)(M > N ? M : N)), "alloc bias");
  check(cuMemcpyHtoD(A, h, 2 * na), "A");
  check(cuMemcpyHtoD(B, h, 2 * nb), "B");
  check(cuMemcpyHtoD(bias, h, 2 * (size_t)(M > N ? M : N)), "bias");
  check(cuMemsetD8(W, 0, nw), "W");
  long long sa = (long long)na, sb = (long long)nb, sy = (long long)ny;
  float alpha = 1, beta = 0;
  int kslice = parts > 1 ? ((K + parts - 1) / parts + tk - 1) / tk * tk : K, lda = trans & 1 ? M : K, ldb = trans & 2 ? K : N, ldy = N;
  void *args[] = {&A, &B, &Y, &W, &bias, &M, &N, &K, &trans, &sa, &sb, &sy, &alpha, &beta,
                  &kslice, &flags, &ldb, &lda, &ldy};
  CUstream st;
  check(cuStreamCreate(&st, CU_STREAM_NON_BLOCKING), "stream");
  check(cuLaunchKernel(f, gx, gy, (unsigned)parts, (unsigned)nt, 1, 1, 0, st, args, NULL), "launch");
  check(cuStreamSynchronize(st), "the first launch");
  CUgraph g;
  CUgraphExec ge;
  check(cuStreamBeginCapture(st, CU_STREAM_CAPTURE_MODE_GLOBAL), "capture");
  for (int i = 0; i < LAUNCHES; i++) check(cuLaunchKernel(f, gx, gy, (unsigned)parts, (unsigned)nt, 1, 1, 0, st, args, NULL), "launch");
  check(cuStreamEndCapture(st, &g), "capture end");
  check(cuGraphInstantiateWithFlags(&ge, g, 0), "instantiate");
  CUevent e0, e1;
  cuEventCreate(&e0, 0);
  cuEventCreate(&e1, 0);
  float us[REPLAYS];
  check(cuGraphLaunch(ge, st), "warm-up replay");
  for (int r = 0; r < REPLAYS; r++) {
    cuEventRecord(e0, st);
    check(cuGraphLaunch(ge, st), "replay");
    cuEventRecord(e1, st);
    check(cuEventSynchronize(e1), "replay's end");
    float ms = 0;
    cuEventElapsedTime(&ms, e0, e1);
    us[r] = ms * 1000 / LAUNCHES;
  }
  qsort(us, REPLAYS, sizeof us[0], cmp);
  /* 97 outputs against the host (the inputs' pattern is small halves): a probe
   * that ran the wrong groups would time less work */
  unsigned short *y = malloc(2 * ny);
  check(cuMemcpyDtoH(y, Y, 2 * ny), "Y");
  double worst = 0;
  const bool written = !(flags & 4) || (flags & 256); /* partial products only: Y is not written */
  for (int i = 0; written && i < 97; i++) {
    int m = (int)((i * 7919u) % (unsigned)M), n = (int)((i * 104729u) % (unsigned)N);
    double ref = flags & 1 ? half_to_float(h[n]) : 0;
    for (int k = 0; k < K; k++) {
      size_t ia = trans & 1 ? (size_t)k * M + m : (size_t)m * K + k, ib = trans & 2 ? (size_t)n * K + k : (size_t)k * N + n;
      ref += (double)half_to_float(h[ia]) * half_to_float(h[ib]);
    }
    double err = fabs(half_to_float(y[m * N + n]) - ref) / (fabs(ref) + 1e-3);
    if (err > worst || err != err) worst = err != err ? INFINITY : err;
  }
  char errs[32] = "null";
  if (written) snprintf(errs, sizeof errs, isfinite(worst) ? "%.2g" : "1e300", worst);
  printf("{\"M\": %d, \"N\": %d, \"K\": %d, \"tile\": \"%dx%d\", \"threads\": %d, \"groups\": %u, \"regs\": %d, "
         "\"smem\": %d, \"resident\": %d, \"carveout\": %d, \"parts\": %d, \"flags\": %d, \"us\": %.2f, "
         "\"us_min\": %.2f, \"max_rel_err\": %s}\n",
         M, N, K, tm, tn, nt, gx * gy * (unsigned)parts, regs, smem, groups, carve, parts, flags, us[REPLAYS / 2], us[0], errs);
  if (written && !(worst <= 2e-3)) {
    fprintf(stderr, "ptx_gemm_probe: outputs differ from the host's by %g (relative): the launch ran the wrong work\n",
            worst);
    return 1;
  }
  return 0;
}
