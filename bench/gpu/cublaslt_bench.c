/* The reference column of the matmul table: C = A x B (row-major, M x K times
 * K x N, float16 or bfloat16 in and out, float32 accumulation) through
 * cublasLtMatmul called directly, timed with CUDA events. cuBLASLt's heuristic
 * proposes up to 8 algorithms for a 32 MiB workspace; each is timed and the
 * report gives the first one's time (what a library call that trusts the
 * heuristic gets) and the best. Inputs are uniform in [-1, 1), as FlagOS's
 * `flagos profile` and bench.py make theirs.
 *
 * usage: cublaslt_bench M N K f16|bf16 [ITERS [WARMUP]]
 * prints one JSON object on stdout. Built by scripts/gpu/bench.sh:
 *   cc -O2 cublaslt_bench.c -I/usr/local/cuda/include -L/usr/local/cuda/lib64 -lcublasLt -lcudart */
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                     \
  do {                                                                                            \
    cudaError_t e_ = (x);                                                                         \
    if (e_ != cudaSuccess) {                                                                      \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));        \
      return 1;                                                                                   \
    }                                                                                             \
  } while (0)
#define LT(x)                                                                                     \
  do {                                                                                            \
    cublasStatus_t s_ = (x);                                                                      \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                            \
      fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #x, (int)s_);         \
      return 1;                                                                                   \
    }                                                                                             \
  } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float next_uniform(void) { /* xorshift64*, [-1, 1) */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  uint64_t r = rng * 0x2545F4914F6CDD1Dull;
  return (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even; inputs are finite */
  return (uint16_t)(u >> 16);
}

static uint16_t to_f16(float f) { /* |f| < 1 here: normals and subnormals, no overflow */
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  int32_t exp = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = u & 0x7FFFFFu;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s M N K f16|bf16 [ITERS [WARMUP]]\n", argv[0]);
    return 2;
  }
  int64_t m = atoll(argv[1]), n = atoll(argv[2]), k = atoll(argv[3]);
  int bf = strcmp(argv[4], "bf16") == 0;
  if ((!bf && strcmp(argv[4], "f16") != 0) || m <= 0 || n <= 0 || k <= 0) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  int iters = argc > 5 ? atoi(argv[5]) : 20, warm = argc > 6 ? atoi(argv[6]) : 5;
  if (iters < 1) iters = 1;
  cudaDataType_t dt = bf ? CUDA_R_16BF : CUDA_R_16F;

  size_t na = (size_t)(m * k), nb = (size_t)(k * n), nc = (size_t)(m * n);
  uint16_t *h = malloc(sizeof(uint16_t) * (na > nb ? na : nb));
  if (!h) return 1;
  void *a, *b, *c, *ws;
  size_t ws_size = 32u << 20;
  CK(cudaMalloc(&a, na * 2));
  CK(cudaMalloc(&b, nb * 2));
  CK(cudaMalloc(&c, nc * 2));
  CK(cudaMalloc(&ws, ws_size));
  for (size_t i = 0; i < na; i++) h[i] = bf ? to_bf16(next_uniform()) : to_f16(next_uniform());
  CK(cudaMemcpy(a, h, na * 2, cudaMemcpyHostToDevice));
  for (size_t i = 0; i < nb; i++) h[i] = bf ? to_bf16(next_uniform()) : to_f16(next_uniform());
  CK(cudaMemcpy(b, h, nb * 2, cudaMemcpyHostToDevice));
  free(h);

  /* Row-major C = A B is column-major C^T = B^T A^T: cuBLASLt sees B (n x k,
   * leading dimension n) times A (k x m, leading dimension k). */
  cublasLtHandle_t lt;
  LT(cublasLtCreate(&lt));
  cublasLtMatmulDesc_t op;
  LT(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasLtMatrixLayout_t lb, la, lc;
  LT(cublasLtMatrixLayoutCreate(&lb, dt, (uint64_t)n, (uint64_t)k, n));
  LT(cublasLtMatrixLayoutCreate(&la, dt, (uint64_t)k, (uint64_t)m, k));
  LT(cublasLtMatrixLayoutCreate(&lc, dt, (uint64_t)n, (uint64_t)m, n));
  cublasLtMatmulPreference_t pref;
  LT(cublasLtMatmulPreferenceCreate(&pref));
  LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_size, sizeof ws_size));
  cublasLtMatmulHeuristicResult_t res[8];
  int found = 0;
  LT(cublasLtMatmulAlgoGetHeuristic(lt, op, lb, la, lc, lc, pref, 8, res, &found));
  if (found <= 0) {
    fprintf(stderr, "cuBLASLt proposes no algorithm\n");
    return 1;
  }
  float alpha = 1.0f, beta = 0.0f;
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  double first_ms = -1, best_ms = -1;
  int best = -1, timed = 0;
  for (int i = 0; i < found; i++) {
    const cublasLtMatmulAlgo_t *al = &res[i].algo;
    if (cublasLtMatmul(lt, op, &alpha, b, lb, a, la, &beta, c, lc, c, lc, al, ws, ws_size, st) != CUBLAS_STATUS_SUCCESS)
      continue;
    for (int w = 0; w < warm; w++) LT(cublasLtMatmul(lt, op, &alpha, b, lb, a, la, &beta, c, lc, c, lc, al, ws, ws_size, st));
    CK(cudaEventRecord(e0, st));
    for (int it = 0; it < iters; it++)
      LT(cublasLtMatmul(lt, op, &alpha, b, lb, a, la, &beta, c, lc, c, lc, al, ws, ws_size, st));
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    double per = ms / iters;
    if (timed == 0) first_ms = per;
    if (best_ms < 0 || per < best_ms) {
      best_ms = per;
      best = i;
    }
    timed++;
  }
  if (timed == 0) {
    fprintf(stderr, "no proposed algorithm ran\n");
    return 1;
  }
  double flop = 2.0 * (double)m * (double)n * (double)k;
  printf("{\"m\":%lld,\"n\":%lld,\"k\":%lld,\"dtype\":\"%s\",\"algos\":%d,\"iters\":%d,\"first_ms\":%.6f,"
         "\"best_ms\":%.6f,\"best_index\":%d,\"first_tflops\":%.3f,\"best_tflops\":%.3f}\n",
         (long long)m, (long long)n, (long long)k, argv[4], timed, iters, first_ms, best_ms, best,
         flop / first_ms / 1e9, flop / best_ms / 1e9);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(lt);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cudaFree(ws);
  return 0;
}
