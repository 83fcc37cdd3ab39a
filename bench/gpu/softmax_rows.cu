// Softmax over rows of 32768 floats (8192 rows, 1 GiB): hand-written designs timed against a
// device-to-device copy, to find what the generated kernel lacks (bench/gpu/results-h100-2026-11-22-s6.md).
// Build: nvcc -O3 -arch=sm_90 -std=c++17 softmax_rows.cu -o softmax_rows; run on the GPU, no arguments.
// rc<T,V,MODE,STORE>: the row in registers, T threads x V float4 each; MODE bit 0 keeps exp(x-max) from
// the sum for the store, bit 1 multiplies by 1/sum instead of dividing; STORE 1 __stcs, 2 __stcg.
// l2<T,ONLINE>: nothing cached, the row read again (from L2 if it stays there), three passes or an
// online max+sum and one more.
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cmath>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(1); } } while (0)

__device__ __forceinline__ float wmax(float v) { for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }
__device__ __forceinline__ float wsum(float v) { for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
template <int T> __device__ __forceinline__ float bmax(float v, float *sh) {
  v = wmax(v); if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v; __syncthreads();
  float r = sh[0]; for (int w = 1; w < T / 32; w++) r = fmaxf(r, sh[w]); __syncthreads(); return r; }
template <int T> __device__ __forceinline__ float bsum(float v, float *sh) {
  v = wsum(v); if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v; __syncthreads();
  float r = sh[0]; for (int w = 1; w < T / 32; w++) r += sh[w]; __syncthreads(); return r; }

// register cache: T threads x V float4 each = whole row
template <int T, int V, int MODE, int STORE>
__global__ void __launch_bounds__(T) rc(const float *__restrict__ x, float *__restrict__ y, int rows) {
  constexpr int N = T * V * 4;
  __shared__ float sh[32];
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    const float4 *xr = (const float4 *)(x + (size_t)row * N);
    float4 *yr = (float4 *)(y + (size_t)row * N);
    float4 r[V];
#pragma unroll
    for (int v = 0; v < V; v++) r[v] = xr[threadIdx.x + v * T];
    float m = -INFINITY;
#pragma unroll
    for (int v = 0; v < V; v++) m = fmaxf(m, fmaxf(fmaxf(r[v].x, r[v].y), fmaxf(r[v].z, r[v].w)));
    m = bmax<T>(m, sh);
    float s = 0.f;
#pragma unroll
    for (int v = 0; v < V; v++) {
      float4 e = make_float4(expf(r[v].x - m), expf(r[v].y - m), expf(r[v].z - m), expf(r[v].w - m));
      s += (e.x + e.y) + (e.z + e.w);
      if (MODE & 1) r[v] = e;
    }
    s = bsum<T>(s, sh);
    const float inv = 1.f / s;
#pragma unroll
    for (int v = 0; v < V; v++) {
      float4 o;
      if (MODE & 1) o = r[v]; else o = make_float4(expf(r[v].x - m), expf(r[v].y - m), expf(r[v].z - m), expf(r[v].w - m));
      if (MODE & 2) { o.x *= inv; o.y *= inv; o.z *= inv; o.w *= inv; } else { o.x /= s; o.y /= s; o.z /= s; o.w /= s; }
      if (STORE == 1) __stcs(&yr[threadIdx.x + v * T], o); else if (STORE == 2) __stcg(&yr[threadIdx.x + v * T], o); else yr[threadIdx.x + v * T] = o;
    }
  }
}

// L2 re-read: 3 passes (max, sum, write), only pass 1 from HBM if the row stays in L2
template <int T, int ONLINE>
__global__ void __launch_bounds__(T) l2(const float *__restrict__ x, float *__restrict__ y, int rows, int N) {
  __shared__ float sh[32], sh2[32];
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    const float4 *xr = (const float4 *)(x + (size_t)row * N);
    float4 *yr = (float4 *)(y + (size_t)row * N);
    const int n4 = N / 4;
    float m = -INFINITY, s = 0.f;
    if (ONLINE) {
#pragma unroll 8
      for (int i = threadIdx.x; i < n4; i += T) {
        float4 v = xr[i];
        float nm = fmaxf(m, fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w)));
        s = s * __expf(m - nm) + ((expf(v.x - nm) + expf(v.y - nm)) + (expf(v.z - nm) + expf(v.w - nm)));
        m = nm;
      }
      float wm = wmax(m);
      s = s * expf(m - wm); s = wsum(s);
      if ((threadIdx.x & 31) == 0) { sh[threadIdx.x >> 5] = wm; sh2[threadIdx.x >> 5] = s; }
      __syncthreads();
      float M = sh[0]; for (int w = 1; w < T / 32; w++) M = fmaxf(M, sh[w]);
      float S = 0.f; for (int w = 0; w < T / 32; w++) S += sh2[w] * expf(sh[w] - M);
      __syncthreads();
      m = M; s = S;
    } else {
#pragma unroll 8
      for (int i = threadIdx.x; i < n4; i += T) { float4 v = xr[i]; m = fmaxf(m, fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w))); }
      m = bmax<T>(m, sh);
#pragma unroll 8
      for (int i = threadIdx.x; i < n4; i += T) { float4 v = xr[i]; s += (expf(v.x - m) + expf(v.y - m)) + (expf(v.z - m) + expf(v.w - m)); }
      s = bsum<T>(s, sh);
    }
    const float inv = 1.f / s;
#pragma unroll 8
    for (int i = threadIdx.x; i < n4; i += T) {
      float4 v = xr[i];
      float4 o = make_float4(expf(v.x - m) * inv, expf(v.y - m) * inv, expf(v.z - m) * inv, expf(v.w - m) * inv);
      __stcs(&yr[i], o);
    }
  }
}

static float median(std::vector<float> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }

int main() {
  const int N = 32768, R = 8192;
  const size_t bytes = (size_t)N * R * 4;
  float *x, *y; CK(cudaMalloc(&x, bytes)); CK(cudaMalloc(&y, bytes));
  std::vector<float> h((size_t)N * 4);
  srand(1); for (auto &v : h) v = (rand() / (float)RAND_MAX) * 8.f - 4.f;
  for (int r = 0; r < R; r += 4) CK(cudaMemcpy(x + (size_t)r * N, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
  int sms; CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  auto timeit = [&](auto fn) { std::vector<float> t; for (int i = 0; i < 23; i++) { CK(cudaEventRecord(a)); fn(); CK(cudaEventRecord(b)); CK(cudaEventSynchronize(b)); float ms; CK(cudaEventElapsedTime(&ms, a, b)); if (i >= 3) t.push_back(ms); } CK(cudaGetLastError()); return median(t); };
  float cms = timeit([&] { CK(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice)); });
  printf("copy 1 GiB d2d: %.3f ms = %.0f GB/s\n", cms, 2.0 * bytes / cms / 1e6);
  std::vector<double> ref(N * 4);
  for (int r = 0; r < 4; r++) { double m = -1e30, s = 0; for (int i = 0; i < N; i++) m = std::max(m, (double)h[r * N + i]); for (int i = 0; i < N; i++) s += exp(h[r * N + i] - m); for (int i = 0; i < N; i++) ref[r * N + i] = exp(h[r * N + i] - m) / s; }
  std::vector<float> out(N * 4);
  auto report = [&](const char *name, float ms) {
    CK(cudaMemcpy(out.data(), y + (size_t)4 * N * 100, out.size() * 4, cudaMemcpyDeviceToHost));
    double e = 0; for (size_t i = 0; i < out.size(); i++) e = std::max(e, fabs(out[i] - ref[i]) / ref[i]);
    printf("%-40s %.3f ms  %5.1f%% of copy  maxrel %.2e\n", name, ms, 100.0 * cms / ms, e); fflush(stdout);
  };
#define OCC(K, T) ([&] { int nb; CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, K, T, 0)); return nb; }())
#define RC(T, V, MODE, ST) { auto k = rc<T, V, MODE, ST>; int nb = OCC(k, T); for (int g = 0; g < 2; g++) { int grid = g ? R : nb * sms; CK(cudaMemset(y, 0, bytes)); float ms = timeit([&] { k<<<grid, T>>>(x, y, R); }); char nm[96]; snprintf(nm, sizeof nm, "rc T%d V%d mode%d st%d occ%d grid%s", T, V, MODE, ST, nb, g ? "=rows" : "=persist"); report(nm, ms); } }
#define L2(T, ON) { auto k = l2<T, ON>; int nb = OCC(k, T); for (int g = 0; g < 2; g++) { int grid = g ? R : nb * sms; CK(cudaMemset(y, 0, bytes)); float ms = timeit([&] { k<<<grid, T>>>(x, y, R, N); }); char nm[96]; snprintf(nm, sizeof nm, "l2 T%d online%d occ%d grid%s", T, ON, nb, g ? "=rows" : "=persist"); report(nm, ms); } }
  RC(256, 32, 0, 0) RC(256, 32, 3, 0) RC(256, 32, 3, 1) RC(256, 32, 3, 2)
  RC(512, 16, 0, 0) RC(512, 16, 3, 0) RC(512, 16, 3, 1)
  RC(1024, 8, 0, 0) RC(1024, 8, 3, 0) RC(1024, 8, 3, 1)
  L2(256, 0) L2(512, 0) L2(1024, 0) L2(256, 1) L2(512, 1) L2(1024, 1)
  float cms2 = timeit([&] { CK(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice)); });
  printf("copy again: %.3f ms\n", cms2);
  return 0;
}
