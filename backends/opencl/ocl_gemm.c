/* FlagOS's own GEMM for the opencl plugin's "gemm" library call (issue 5).
 *
 * On NVIDIA's OpenCL a CLBlast call costs 16-22 us of host time (it makes its
 * cl_kernel on every call, looks up its database...), against about 4.4 us for
 * one clEnqueueNDRangeKernel: at batch 1 that host time, not the GPU, bounds a
 * model. Here a product is clSetKernelArg on kernels made once per device and
 * one clEnqueueNDRangeKernel (a second, the sum, when split over K); the bias
 * of a 4-buffer call is an epilogue, so MatMulBias and Gemm with a bias row end
 * their node in one launch.
 *
 * The kernel (k_src): each work-group computes a TM x TN tile of Y walking K in
 * steps of TK; both operand tiles go through local memory (k-major, padded so
 * the transposing stores of row-major A and column-major B spread over banks),
 * the next step's tile is fetched into registers while the current one is
 * multiplied, and each work-item keeps an RM x RN block of outputs in
 * registers. Transposes are uniform branches on an argument, so one kernel
 * serves the four cases. Each tile variant (k_variants) is its own program
 * (the source with its #defines in front), built at a device's first product
 * that needs it, through ocl_module.c's binary cache.
 *
 * Few output tiles (BERT at batch 1 has M = 128) leave most of a large GPU
 * idle: then the product is split over K, slices on the grid's third
 * dimension writing alpha * partial products to a per-device workspace, and a
 * second kernel sums them with beta * Y and the bias (no atomics: the result
 * does not depend on timing).
 *
 * FLAGOS_OPENCL_GEMM: 1 = ours for every f32/f64/f16 gemm the call takes, on
 * any device (tests, PoCL); 0 = never (CLBlast as before, and f16 to the
 * generic kernel); unset = ours on GPUs. f16 sums in float, rounding once to
 * half at the end (CLBlast's Hgemm sums in half and needs cl_khr_fp16).
 * FLAGOS_OPENCL_GEMM_TILE=i forces variant i of k_variants (measurements,
 * tests); FLAGOS_OPENCL_SPLITK=N forces N K slices on batch-1 products. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

/* The kernels. Defined in front by the host: T (the buffers' element: float,
 * double, or ushort holding half bits), C (the type computed in: float or
 * double), TM, TN, TK, RM, RN; GEMM_F64 for double, GEMM_F16 for half. Half
 * values are read and written with vload_half/vstore_half_rte, which every
 * OpenCL device has (no cl_khr_fp16 needed: NVIDIA's platform lacks it), and
 * summed in float. The work-group is NT = (TM/RM)*(TN/RN) work-items, x along
 * N. Indices within a matrix are int (the host keeps M*K, K*N and M*N below
 * 2^31); batch offsets are long. */
static const char k_pre[] =
    "#ifdef GEMM_F64\n"
    "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
    "#endif\n"
    "#ifdef GEMM_F16\n"
    "#define LD(p, i) vload_half(0, (__global const half *)((p) + (i)))\n"
    "#define ST(p, i, v) vstore_half_rte((v), 0, (__global half *)((p) + (i)))\n"
    "#else\n"
    "#define LD(p, i) ((p)[i])\n"
    "#define ST(p, i, v) ((p)[i] = (v))\n"
    "#endif\n"
    "#define GEMM_ARGS __global const T *restrict A, __global const T *restrict B, __global T *Y, __global C *W, \\\n"
    "  __global const T *restrict bias, int M, int N, int K, int trans, long sa, long sb, long sy, C alpha, C beta, \\\n"
    "  int kslice, int flags\n"
    "/* the group's tile (n0, m0), its batch or K slice (z: A, B and Y, or the\n"
    " * workspace W, moved to it; K from kbeg to ke), the transposes */\n"
    "#define GEMM_START                                                       \\\n"
    "  const int n0 = get_group_id(0) * TN, m0 = get_group_id(1) * TM;       \\\n"
    "  const int z = get_group_id(2), split = flags & 4;                       \\\n"
    "  const long b = split ? 0 : z;                                           \\\n"
    "  A += b * sa;                                                            \\\n"
    "  B += b * sb;                                                            \\\n"
    "  if (split)                                                              \\\n"
    "    W += (long)z * sy;                                                    \\\n"
    "  else                                                                    \\\n"
    "    Y += (long)z * sy;                                                    \\\n"
    "  const int kbeg = split ? z * kslice : 0;                                \\\n"
    "  const int ke = split ? min(K, kbeg + kslice) : K;                       \\\n"
    "  const int ta = trans & 1, tb = (trans >> 1) & 1;\n";

/* The general kernel: any shape, any alignment. */
static const char k_src[] =
    "#define NT ((TM / RM) * (TN / RN))\n"
    "#define LA (TM * TK / NT)\n"
    "#define LB (TN * TK / NT)\n"
    "#define PAD 4\n"
    "#if NT % TM != 0 || NT % TN != 0 || NT % TK != 0\n"
    "#error \"a tile's rows, columns and K step must divide the work-group\"\n"
    "#endif\n"
    "/* a work-item's outputs: adjacent (4-wide local reads), or INTER: TM/RM rows\n"
    " * and TN/RN columns apart (conflict-free scalar reads, coalesced stores) */\n"
    "#ifdef INTER\n"
    "#define ROW(i) (ty + (i) * (TM / RM))\n"
    "#define COL(j) (tx + (j) * (TN / RN))\n"
    "#else\n"
    "#define ROW(i) (ty * RM + (i))\n"
    "#define COL(j) (tx * RN + (j))\n"
    "#endif\n"
    "__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))\n"
    "void flagos_gemm(GEMM_ARGS) {\n"
    "  __local C As[TK][TM + PAD] __attribute__((aligned(16)));\n"
    "  __local C Bs[TK][TN + PAD] __attribute__((aligned(16)));\n"
    "  const int tid = get_local_id(0);\n"
    "  const int tx = tid % (TN / RN), ty = tid / (TN / RN);\n"
    "  GEMM_START\n"
    "  /* element e of this work-item's share of a tile: A's row ia + e*dia and step\n"
    "   * ka + e*dka, B's column jb + e*djb and step kb + e*dkb; consecutive\n"
    "   * work-items take consecutive addresses of the operand's contiguous dimension\n"
    "   * so that global reads coalesce */\n"
    "  const int ia = ta ? tid % TM : tid / TK, ka = ta ? tid / TM : tid % TK;\n"
    "  const int dia = ta ? 0 : NT / TK, dka = ta ? NT / TM : 0;\n"
    "  const int rsA = ta ? 1 : K, ksA = ta ? M : 1;\n"
    "  const int jb = tb ? tid / TK : tid % TN, kb = tb ? tid % TK : tid / TN;\n"
    "  const int djb = tb ? NT / TK : 0, dkb = tb ? 0 : NT / TN;\n"
    "  const int csB = tb ? K : 1, ksB = tb ? 1 : N;\n"
    "  C acc[RM][RN];\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < RM; i++)\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < RN; j++) acc[i][j] = 0;\n"
    "  C ra[LA], rb[LB];\n"
    "#define FETCH(k0)                                                            \\\n"
    "  {                                                                          \\\n"
    "    _Pragma(\"unroll\") for (int e = 0; e < LA; e++) {                         \\\n"
    "      int r = m0 + ia + e * dia, k = (k0) + ka + e * dka;                    \\\n"
    "      ra[e] = r < M && k < ke ? LD(A, r * rsA + k * ksA) : (C)0;             \\\n"
    "    }                                                                        \\\n"
    "    _Pragma(\"unroll\") for (int e = 0; e < LB; e++) {                         \\\n"
    "      int c = n0 + jb + e * djb, k = (k0) + kb + e * dkb;                    \\\n"
    "      rb[e] = c < N && k < ke ? LD(B, c * csB + k * ksB) : (C)0;             \\\n"
    "    }                                                                        \\\n"
    "  }\n"
    "  FETCH(kbeg)\n"
    "  for (int k0 = kbeg; k0 < ke; k0 += TK) {\n"
    "#pragma unroll\n"
    "    for (int e = 0; e < LA; e++) As[ka + e * dka][ia + e * dia] = ra[e];\n"
    "#pragma unroll\n"
    "    for (int e = 0; e < LB; e++) Bs[kb + e * dkb][jb + e * djb] = rb[e];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (k0 + TK < ke) FETCH(k0 + TK)\n"
    "#pragma unroll\n"
    "    for (int kk = 0; kk < TK; kk++) {\n"
    "      C a[RM], c[RN];\n"
    "#pragma unroll\n"
    "      for (int i = 0; i < RM; i++) a[i] = As[kk][ROW(i)];\n"
    "#pragma unroll\n"
    "      for (int j = 0; j < RN; j++) c[j] = Bs[kk][COL(j)];\n"
    "#pragma unroll\n"
    "      for (int i = 0; i < RM; i++)\n"
    "#pragma unroll\n"
    "        for (int j = 0; j < RN; j++) acc[i][j] = mad(a[i], c[j], acc[i][j]);\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  }\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < RM; i++) {\n"
    "    int m = m0 + ROW(i);\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < RN; j++) {\n"
    "      int n = n0 + COL(j);\n"
    "      if (m < M && n < N) {\n"
    "        C v = alpha * acc[i][j];\n"
    "        if (split) {\n"
    "          W[m * N + n] = v;\n"
    "        } else {\n"
    "          /* beta 0 ignores Y's old contents (NaN included), as the gemm contract says */\n"
    "          if (flags & 2) v += beta * LD(Y, m * N + n);\n"
    "          if (flags & 1) v += LD(bias, n);\n"
    "          ST(Y, m * N + n, v);\n"
    "        }\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "}\n";

/* The vector kernel, for f32 and f16 products whose operands' rows all start
 * on 16-byte (f16: 8-byte) boundaries (the host checks: A's and B's leading
 * dimensions and batch strides multiples of 4): operands read as float4
 * (vloada_half4), tiles read from local memory as float4; its bounds tests
 * are per float4, which lies wholly inside or outside an operand then. Y is
 * written as float4 where its rows are aligned too (flags & 8), else element
 * by element (GPT-2's logits: N = 50257). */
static const char k_vec[] =
    "#if defined(GEMM_F16)\n"
    "#define LD4(p, i) vloada_half4(0, (__global const half *)((p) + (i)))\n"
    "#define ST4(p, i, v) vstorea_half4_rte((v), 0, (__global half *)((p) + (i)))\n"
    "#else\n"
    "#define LD4(p, i) (*(__global const float4 *)((p) + (i)))\n"
    "#define ST4(p, i, v) (*(__global float4 *)((p) + (i)) = (v))\n"
    "#endif\n"
    "#define TX (TN / RN)\n"
    "#define TY (TM / RM)\n"
    "#define NT (TX * TY)\n"
    "#define VM (RM / 4)\n"
    "#define VN (RN / 4)\n"
    "#define FA (TM * TK / 4 / NT)\n"
    "#define FB (TN * TK / 4 / NT)\n"
    "#define PAD 4\n"
    "#if TX % 8 != 0 || TY % 4 != 0 || FA * NT * 4 != TM * TK || FB * NT * 4 != TN * TK || TK % 4 != 0\n"
    "#error \"a work-group of 8x4-work-item warps must load whole float4s of both tiles\"\n"
    "#endif\n"
    "/* Rows (columns) of a work-item's outputs: VM (VN) runs of 4 adjacent ones,\n"
    " * TM/VM (TN/VN) apart, read from local memory as float4s; the work-items of a\n"
    " * warp of 32 form an 8 (along N) x 4 (along M) block. */\n"
    "__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))\n"
    "void flagos_gemm(GEMM_ARGS) {\n"
    "  __local float As[TK][TM + PAD] __attribute__((aligned(16)));\n"
    "  __local float Bs[TK][TN + PAD] __attribute__((aligned(16)));\n"
    "  const int tid = get_local_id(0), lane = tid % 32, w = tid / 32;\n"
    "  const int tx = (w % (TX / 8)) * 8 + lane % 8, ty = (w / (TX / 8)) * 4 + lane / 8;\n"
    "  GEMM_START\n"
    "  float acc[RM][RN];\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < RM; i++)\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < RN; j++) acc[i][j] = 0;\n"
    "  float4 ra[FA], rb[FB];\n"
    "  /* float4 f = tid + e*NT of a tile: along the operand's contiguous dimension\n"
    "   * (K for A, N for B untransposed; M for A, K for B transposed) */\n"
    "#define FETCH(k0)                                                                    \\\n"
    "  {                                                                                  \\\n"
    "    _Pragma(\"unroll\") for (int e = 0; e < FA; e++) {                                 \\\n"
    "      int f = tid + e * NT, r, k;                                                    \\\n"
    "      if (ta) {                                                                      \\\n"
    "        k = (k0) + f / (TM / 4), r = m0 + f % (TM / 4) * 4;                          \\\n"
    "        ra[e] = k < ke && r < M ? LD4(A, k * M + r) : (float4)0;                     \\\n"
    "      } else {                                                                       \\\n"
    "        r = m0 + f / (TK / 4), k = (k0) + f % (TK / 4) * 4;                          \\\n"
    "        ra[e] = k < ke && r < M ? LD4(A, r * K + k) : (float4)0;                     \\\n"
    "      }                                                                              \\\n"
    "    }                                                                                \\\n"
    "    _Pragma(\"unroll\") for (int e = 0; e < FB; e++) {                                 \\\n"
    "      int f = tid + e * NT, c, k;                                                    \\\n"
    "      if (tb) {                                                                      \\\n"
    "        c = n0 + f / (TK / 4), k = (k0) + f % (TK / 4) * 4;                          \\\n"
    "        rb[e] = k < ke && c < N ? LD4(B, c * K + k) : (float4)0;                     \\\n"
    "      } else {                                                                       \\\n"
    "        k = (k0) + f / (TN / 4), c = n0 + f % (TN / 4) * 4;                          \\\n"
    "        rb[e] = k < ke && c < N ? LD4(B, k * N + c) : (float4)0;                     \\\n"
    "      }                                                                              \\\n"
    "    }                                                                                \\\n"
    "  }\n"
    "  FETCH(kbeg)\n"
    "  for (int k0 = kbeg; k0 < ke; k0 += TK) {\n"
    "#pragma unroll\n"
    "    for (int e = 0; e < FA; e++) {\n"
    "      int f = tid + e * NT;\n"
    "      if (ta) {\n"
    "        *(__local float4 *)&As[f / (TM / 4)][f % (TM / 4) * 4] = ra[e];\n"
    "      } else {\n"
    "        int r = f / (TK / 4), k = f % (TK / 4) * 4;\n"
    "        As[k][r] = ra[e].x;\n"
    "        As[k + 1][r] = ra[e].y;\n"
    "        As[k + 2][r] = ra[e].z;\n"
    "        As[k + 3][r] = ra[e].w;\n"
    "      }\n"
    "    }\n"
    "#pragma unroll\n"
    "    for (int e = 0; e < FB; e++) {\n"
    "      int f = tid + e * NT;\n"
    "      if (tb) {\n"
    "        int c = f / (TK / 4), k = f % (TK / 4) * 4;\n"
    "        Bs[k][c] = rb[e].x;\n"
    "        Bs[k + 1][c] = rb[e].y;\n"
    "        Bs[k + 2][c] = rb[e].z;\n"
    "        Bs[k + 3][c] = rb[e].w;\n"
    "      } else {\n"
    "        *(__local float4 *)&Bs[f / (TN / 4)][f % (TN / 4) * 4] = rb[e];\n"
    "      }\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    if (k0 + TK < ke) FETCH(k0 + TK)\n"
    "#pragma unroll\n"
    "    for (int kk = 0; kk < TK; kk++) {\n"
    "      float a[RM], c[RN];\n"
    "#pragma unroll\n"
    "      for (int v = 0; v < VM; v++) {\n"
    "        float4 t = *(__local const float4 *)&As[kk][v * (TM / VM) + ty * 4];\n"
    "        a[v * 4] = t.x, a[v * 4 + 1] = t.y, a[v * 4 + 2] = t.z, a[v * 4 + 3] = t.w;\n"
    "      }\n"
    "#pragma unroll\n"
    "      for (int v = 0; v < VN; v++) {\n"
    "        float4 t = *(__local const float4 *)&Bs[kk][v * (TN / VN) + tx * 4];\n"
    "        c[v * 4] = t.x, c[v * 4 + 1] = t.y, c[v * 4 + 2] = t.z, c[v * 4 + 3] = t.w;\n"
    "      }\n"
    "#pragma unroll\n"
    "      for (int i = 0; i < RM; i++)\n"
    "#pragma unroll\n"
    "        for (int j = 0; j < RN; j++) acc[i][j] = mad(a[i], c[j], acc[i][j]);\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  }\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < RM; i++) {\n"
    "    int m = m0 + i / 4 * (TM / VM) + ty * 4 + i % 4;\n"
    "#pragma unroll\n"
    "    for (int v = 0; v < VN; v++) {\n"
    "      int n = n0 + v * (TN / VN) + tx * 4;\n"
    "      if (m < M && n < N) {\n"
    "        float4 r = alpha * (float4)(acc[i][v * 4], acc[i][v * 4 + 1], acc[i][v * 4 + 2], acc[i][v * 4 + 3]);\n"
    "        if (flags & 8) {\n"
    "          /* Y's rows on float4s (N a multiple of 4) */\n"
    "          if (split) {\n"
    "            *(__global float4 *)(W + m * N + n) = r;\n"
    "          } else {\n"
    "            if (flags & 2) r += beta * LD4(Y, m * N + n);\n"
    "            if (flags & 1) r += LD4(bias, n);\n"
    "            ST4(Y, m * N + n, r);\n"
    "          }\n"
    "        } else {\n"
    "          float rr[4] = {r.x, r.y, r.z, r.w};\n"
    "#pragma unroll\n"
    "          for (int c = 0; c < 4; c++)\n"
    "            if (n + c < N) {\n"
    "              if (split) {\n"
    "                W[m * N + n + c] = rr[c];\n"
    "              } else {\n"
    "                if (flags & 2) rr[c] += beta * LD(Y, m * N + n + c);\n"
    "                if (flags & 1) rr[c] += LD(bias, n + c);\n"
    "                ST(Y, m * N + n + c, rr[c]);\n"
    "              }\n"
    "            }\n"
    "        }\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "}\n";

/* The tensor-core kernel, for f16 products on NVIDIA GPUs of compute
 * capability 8.0 and later (FLAGOS_OPENCL_TENSOR): PTX's mma.sync (half in,
 * float sums) as inline assembly, which NVIDIA's OpenCL compiler takes. Each
 * warp computes a WM x WN block of the work-group's TM x TN tile from tiles in
 * local memory held as pairs of halves along K, the layout the instruction's
 * fragments read; operands come in 16-byte loads, so the host asks for leading
 * dimensions and batch strides that are multiples of 8 halves. */
static const char k_tc[] =
    "#define NW ((TM / WM) * (TN / WN))\n"
    "#define NT (NW * 32)\n"
    "#define MI (WM / 16)\n"
    "#define NI (WN / 8)\n"
    "#define KW (TK / 2 + 4)\n"
    "#define RA (TM * TK / 8 / NT)\n"
    "#define RB (TN * TK / 8 / NT)\n"
    "#if TM % WM != 0 || TN % WN != 0 || WM % 16 != 0 || WN % 8 != 0 || TK % 16 != 0 || RA % 2 != 0 || RB % 2 != 0\n"
    "#error \"warp tiles must divide the tile, and each work-item load whole pairs of 8-half rows of both tiles\"\n"
    "#endif\n"
    "/* D += A B on a warp's 16x8 block, k 16: A 16x16 row-major, B 16x8 column-major,\n"
    " * half in, float sums; the fragments as PTX's mma.m16n8k16 lays them out\n"
    " * (a[0..3]: rows g, g+8, g, g+8 and halves 2t, 2t+1 (+8 for a[2], a[3]); b[0..1]:\n"
    " * column g, halves 2t, 2t+1 (+8); d: row g (+8 for d[2], d[3]), columns 2t, 2t+1,\n"
    " * where g = lane / 4 and t = lane % 4). MMA_EMULATE computes the same through\n"
    " * local memory on any device (the tests' way to check this kernel without a GPU). */\n"
    "#ifdef MMA_EMULATE\n"
    "#define MMA(d, a, b)                                                                        \\\n"
    "  {                                                                                         \\\n"
    "    xa[w][lane][0] = a[0], xa[w][lane][1] = a[1], xa[w][lane][2] = a[2], xa[w][lane][3] = a[3]; \\\n"
    "    xb[w][lane][0] = b[0], xb[w][lane][1] = b[1];                                          \\\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);                                                           \\\n"
    "    _Pragma(\"unroll\") for (int o = 0; o < 4; o++) {                                        \\\n"
    "      int r = g + (o >> 1) * 8, c = 2 * t + (o & 1);                                        \\\n"
    "      float s = d[o];                                                                       \\\n"
    "      for (int k = 0; k < 16; k++) {                                                        \\\n"
    "        int ia = (((r % 8) * 4 + (k % 8) / 2) * 4 + (r / 8) + (k / 8) * 2) * 2 + k % 2;     \\\n"
    "        int ib = ((c * 4 + (k % 8) / 2) * 2 + k / 8) * 2 + k % 2;                           \\\n"
    "        s = fma(vload_half(ia, (__local const half *)xa[w]), vload_half(ib, (__local const half *)xb[w]), s); \\\n"
    "      }                                                                                     \\\n"
    "      d[o] = s;                                                                             \\\n"
    "    }                                                                                       \\\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);                                                           \\\n"
    "  }\n"
    "#else\n"
    "#define MMA(d, a, b)                                                                               \\\n"
    "  asm(\"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, \" \\\n"
    "      \"{%0,%1,%2,%3};\"                                                                             \\\n"
    "      : \"+f\"(d[0]), \"+f\"(d[1]), \"+f\"(d[2]), \"+f\"(d[3])                                              \\\n"
    "      : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b[0]), \"r\"(b[1]))\n"
    "#endif\n"
    "/* Pair of halves (lo, hi) from the words x and y of two rows, half i of 8. */\n"
    "#define PAIR(x, y, i) ((i) % 2 ? ((x) >> 16) | ((y) & 0xffff0000u) : ((x) & 0xffffu) | ((y) << 16))\n"
    "/* An operand tile of R rows (of M for A, of N for B) by TK, into S[R][KW] words\n"
    " * (pairs of halves along k): \"direct\" when the operand's rows run along k (A\n"
    " * untransposed, B transposed): 8 halves of a row per load, copied; \"pair\" when\n"
    " * they run along M or N: 8 halves of two consecutive k rows per two loads,\n"
    " * interleaved into pairs. Loads f = tid + e*NT; r[] holds RX uint4s. */\n"
    "#define FETCH_OP(X, r, RX, R, alongk, row0, lim, ld)                                    \\\n"
    "  _Pragma(\"unroll\") for (int e = 0; e < RX; e++) {                                      \\\n"
    "    if (alongk) {                                                                       \\\n"
    "      int f = tid + e * NT, i = (row0) + f / (TK / 8), k = k0 + f % (TK / 8) * 8;      \\\n"
    "      r[e] = i < (lim) && k < ke ? *(__global const uint4 *)((X) + (long)i * (ld) + k) : (uint4)0; \\\n"
    "    } else {                                                                            \\\n"
    "      int f = tid + e / 2 * NT, i = (row0) + f % ((R) / 8) * 8, k = k0 + f / ((R) / 8) * 2 + e % 2; \\\n"
    "      r[e] = i < (lim) && k < ke ? *(__global const uint4 *)((X) + (long)k * (ld) + i) : (uint4)0; \\\n"
    "    }                                                                                   \\\n"
    "  }\n"
    "#define STORE_OP(S, r, RX, R, alongk)                                                   \\\n"
    "  _Pragma(\"unroll\") for (int e = 0; e < RX; e++) {                                      \\\n"
    "    if (alongk) {                                                                       \\\n"
    "      int f = tid + e * NT;                                                             \\\n"
    "      *(__local uint4 *)&S[f / (TK / 8)][f % (TK / 8) * 4] = r[e];                      \\\n"
    "    } else if (e % 2 == 0) {                                                            \\\n"
    "      int f = tid + e / 2 * NT, i = f % ((R) / 8) * 8, kp = f / ((R) / 8);              \\\n"
    "      uint4 x = r[e], y = r[e + 1];                                                     \\\n"
    "      S[i][kp] = PAIR(x.x, y.x, 0), S[i + 1][kp] = PAIR(x.x, y.x, 1);                   \\\n"
    "      S[i + 2][kp] = PAIR(x.y, y.y, 0), S[i + 3][kp] = PAIR(x.y, y.y, 1);               \\\n"
    "      S[i + 4][kp] = PAIR(x.z, y.z, 0), S[i + 5][kp] = PAIR(x.z, y.z, 1);               \\\n"
    "      S[i + 6][kp] = PAIR(x.w, y.w, 0), S[i + 7][kp] = PAIR(x.w, y.w, 1);               \\\n"
    "    }                                                                                   \\\n"
    "  }\n"
    "__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))\n"
    "void flagos_gemm(GEMM_ARGS) {\n"
    "  __local uint As[TM][KW] __attribute__((aligned(16)));\n"
    "  __local uint Bs[TN][KW] __attribute__((aligned(16)));\n"
    "#ifdef MMA_EMULATE\n"
    "  __local uint xa[NW][32][4], xb[NW][32][2];\n"
    "#endif\n"
    "  const int tid = get_local_id(0), lane = tid % 32, w = tid / 32, g = lane / 4, t = lane % 4;\n"
    "  const int wm0 = w / (TN / WN) * WM, wn0 = w % (TN / WN) * WN;\n"
    "  GEMM_START\n"
    "  float acc[MI][NI][4];\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < MI; i++)\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < NI; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;\n"
    "  uint4 ra[RA], rb[RB];\n"
    "  int k0 = kbeg;\n"
    "  FETCH_OP(A, ra, RA, TM, !ta, m0, M, ta ? M : K)\n"
    "  FETCH_OP(B, rb, RB, TN, tb, n0, N, tb ? K : N)\n"
    "  for (; k0 < ke;) {\n"
    "    STORE_OP(As, ra, RA, TM, !ta)\n"
    "    STORE_OP(Bs, rb, RB, TN, tb)\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    k0 += TK;\n"
    "    if (k0 < ke) {\n"
    "      FETCH_OP(A, ra, RA, TM, !ta, m0, M, ta ? M : K)\n"
    "      FETCH_OP(B, rb, RB, TN, tb, n0, N, tb ? K : N)\n"
    "    }\n"
    "#pragma unroll\n"
    "    for (int s = 0; s < TK / 16; s++) {\n"
    "      uint af[MI][4], bf[NI][2];\n"
    "#pragma unroll\n"
    "      for (int i = 0; i < MI; i++) {\n"
    "        int r = wm0 + i * 16 + g;\n"
    "        af[i][0] = As[r][s * 8 + t], af[i][1] = As[r + 8][s * 8 + t];\n"
    "        af[i][2] = As[r][s * 8 + t + 4], af[i][3] = As[r + 8][s * 8 + t + 4];\n"
    "      }\n"
    "#pragma unroll\n"
    "      for (int j = 0; j < NI; j++) {\n"
    "        int c = wn0 + j * 8 + g;\n"
    "        bf[j][0] = Bs[c][s * 8 + t], bf[j][1] = Bs[c][s * 8 + t + 4];\n"
    "      }\n"
    "#pragma unroll\n"
    "      for (int i = 0; i < MI; i++)\n"
    "#pragma unroll\n"
    "        for (int j = 0; j < NI; j++) MMA(acc[i][j], af[i], bf[j]);\n"
    "    }\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  }\n"
    "#pragma unroll\n"
    "  for (int i = 0; i < MI; i++)\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < NI; j++)\n"
    "#pragma unroll\n"
    "      for (int o = 0; o < 4; o++) {\n"
    "        int m = m0 + wm0 + i * 16 + g + (o >> 1) * 8, n = n0 + wn0 + j * 8 + 2 * t + (o & 1);\n"
    "        if (m < M && n < N) {\n"
    "          float v = alpha * acc[i][j][o];\n"
    "          if (split) {\n"
    "            W[m * N + n] = v;\n"
    "          } else {\n"
    "            if (flags & 2) v += beta * LD(Y, m * N + n);\n"
    "            if (flags & 1) v += LD(bias, n);\n"
    "            ST(Y, m * N + n, v);\n"
    "          }\n"
    "        }\n"
    "      }\n"
    "}\n";

static const char k_sum[] =
    "__kernel void flagos_gemm_sum(__global T *Y, __global const C *restrict W, __global const T *restrict bias,\n"
    "                              int mn, int n, int parts, C beta, int flags) {\n"
    "  int i = get_global_id(0);\n"
    "  if (i >= mn) return;\n"
    "  C acc = 0;\n"
    "  for (int p = 0; p < parts; p++) acc += W[(long)p * mn + i];\n"
    "  if (flags & 2) acc += beta * LD(Y, i);\n"
    "  if (flags & 1) acc += LD(bias, i % n);\n"
    "  ST(Y, i, acc);\n"
    "}\n";

/* Tile shapes: TM x TN outputs a group, K steps of TK, RM x RN a work-item. */
typedef struct {
  int tm, tn, tk, rm, rn;
  bool f64;   /* also built for double */
  bool inter; /* a work-item's outputs interleaved (INTER) */
  bool vec;   /* k_vec (f32 and f16 products with rows on 16-byte boundaries) */
  bool tc;    /* k_tc (f16 products, rows on 16-byte boundaries), warp tiles wm x wn */
  int wm, wn;
} gemm_variant_t;

static const gemm_variant_t k_variants[] = {
    {128, 128, 8, 8, 8, false, true, false},  /* 0: 256 work-items; GEMM_LARGE */
    {32, 64, 16, 4, 4, true, false, false},   /* 1: 128; GEMM_SMALL */
    {32, 64, 32, 4, 4, true, false, false},   /* 2: 128; GEMM_SMALL_K32 */
    {64, 32, 32, 4, 4, true, false, false},   /* 3: 128 */
    {64, 64, 16, 4, 4, false, true, false},   /* 4: 256; GEMM_MID */
    {128, 128, 16, 8, 8, false, false, true}, /* 5: 256; GEMM_VLARGE */
    {64, 128, 16, 4, 8, false, false, true},  /* 6: 256; GEMM_VWIDE */
    {64, 64, 16, 4, 4, false, false, true},   /* 7: 256; GEMM_VMID */
    {32, 64, 32, 4, 4, false, false, true},   /* 8: 128; GEMM_VSMALL */
    {128, 64, 16, 8, 4, false, false, true},  /* 9: 256 */
    {64, 64, 32, 4, 4, false, false, true},   /* 10: 256 */
    {128, 128, 32, 0, 0, .tc = true, .wm = 64, .wn = 32}, /* 11: 256 */
    {64, 128, 32, 0, 0, .tc = true, .wm = 32, .wn = 64},  /* 12: 128 */
    {64, 64, 32, 0, 0, .tc = true, .wm = 32, .wn = 32},   /* 13: 128; GEMM_TMID */
    {32, 64, 64, 0, 0, .tc = true, .wm = 16, .wn = 32},   /* 14: 128; GEMM_TSMALL */
    {128, 64, 32, 0, 0, .tc = true, .wm = 64, .wn = 32},  /* 15: 128; GEMM_TLARGE */
};
#define GEMM_NV ((int)(sizeof k_variants / sizeof k_variants[0]))
#define GEMM_LARGE 0
#define GEMM_SMALL 1
#define GEMM_SMALL_K32 2
#define GEMM_MID 4
#define GEMM_VLARGE 5
#define GEMM_VWIDE 6
#define GEMM_VMID 7
#define GEMM_VSMALL 8
#define GEMM_TLARGE 15
#define GEMM_TMID 13
#define GEMM_TSMALL 14

/* Work-items of a variant's group. */
static size_t threads(const gemm_variant_t *t) {
  return t->tc ? (size_t)(t->tm / t->wm) * (size_t)(t->tn / t->wn) * 32 : (size_t)(t->tm / t->rm) * (size_t)(t->tn / t->rn);
}

typedef struct {
  cl_program prog;
  cl_kernel gemm, sum;
  bool failed; /* built, but the device cannot run it: not tried again */
  cl_int why;
} gemm_prog_t;

struct ocl_gemm_dev {
  pthread_mutex_t lock;      /* kernel arguments are shared: setting them and queuing are one step */
  gemm_prog_t p[4][GEMM_NV]; /* [kind: f32, f64, f16, f16 with mma emulated][variant] */
  int tc;                    /* -1 not yet known; else whether this device takes k_tc */
  cl_mem ws;                 /* split-K partial products */
  size_t ws_size;
};

static pthread_mutex_t g_gemm_new_lock = PTHREAD_MUTEX_INITIALIZER;

bool ocl_gemm_wanted(const ocl_device_t *d, int32_t dt) {
  if (dt != FLAGOS_FLOAT32 && dt != FLAGOS_FLOAT64 && dt != FLAGOS_FLOAT16) return false;
  const char *v = getenv("FLAGOS_OPENCL_GEMM");
  if (v && *v) return strcmp(v, "0") != 0 && strcmp(v, "off") != 0;
  return (d->type & CL_DEVICE_TYPE_GPU) != 0;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The variant and number of K slices for a product, from measurements on an
 * H100 (scripts/gpu/gemm.sh; bench/gpu/results-h100-2026-11-22-s8.md). The
 * kernel: tensor cores for f16 (k_tc), else the vector kernel where the rows
 * allow (k_vec), else the general one. The tile: the first of the kernel's two
 * large ones that gives every compute unit a group and wastes at most a
 * quarter of its outputs past M and N (128x128 then 64x64 for the general
 * kernel, 128x128 then 64x128 for the vector one: 4096^3 f32 at 41.8 TFLOP/s
 * against 25 before; 128x64 then 64x64 on tensor cores); else a 64x64 tile for
 * products with a bias epilogue or a batch (BERT's linear layers and
 * attention) and 32x64 for the rest (on tensor cores: 64x64, and 32x64 with
 * K steps of 64; the general kernel's 32x64 with K steps of 32 and 16, as
 * measured on the models in the sixth session). Batch-1 products with a long K
 * (at least GEMM_SPLIT_K) are split over K until there are about 2.5 groups
 * per compute unit (slices of at least GEMM_MIN_SLICE, at most GEMM_MAX_SPLIT
 * of them). */
#define GEMM_SPLIT_K 512
#define GEMM_MIN_SLICE 128
#define GEMM_MAX_SPLIT 16
static int pick(const ocl_device_t *d, bool f64, bool vec, bool tc, bool bias, int64_t batch, int64_t M, int64_t N,
                int64_t K, int *parts) {
  *parts = 1;
  const char *tv = getenv("FLAGOS_OPENCL_GEMM_TILE");
  int v = -1;
  if (tv && *tv) {
    v = atoi(tv);
    if (v < 0 || v >= GEMM_NV || (f64 && !k_variants[v].f64) || (k_variants[v].vec && !vec) ||
        (k_variants[v].tc && !tc))
      v = -1;
  }
  int64_t cu = d->compute_units ? d->compute_units : 1;
  int kind = tc ? 2 : vec ? 1 : 0;
  if (v < 0 && !f64) {
    /* the first tile that fills the GPU (a group per compute unit) and wastes
     * at most a quarter of its outputs past M and N */
    static const int big[3][2] = {{GEMM_LARGE, GEMM_MID}, {GEMM_VLARGE, GEMM_VWIDE}, {GEMM_TLARGE, GEMM_TMID}};
    for (int i = 0; i < 2 && v < 0; i++) {
      const gemm_variant_t *t = &k_variants[big[kind][i]];
      int64_t gm = cdiv(M, t->tm), gn = cdiv(N, t->tn);
      if (gm * gn * batch >= cu && 4 * M * N >= 3 * gm * t->tm * gn * t->tn) v = big[kind][i];
    }
  }
  if (v < 0 && tc) v = bias || batch > 1 ? GEMM_TMID : GEMM_TSMALL;
  if (v < 0 && vec) v = bias || batch > 1 ? GEMM_VMID : GEMM_VSMALL;
  if (v < 0) v = bias || batch > 1 ? GEMM_SMALL_K32 : GEMM_SMALL;
  const char *env = getenv("FLAGOS_OPENCL_SPLITK");
  if (batch != 1) return v;
  if (env && *env) {
    long f = atol(env);
    if (f > 1 && f <= 64 && f <= K) *parts = (int)f;
    return v;
  }
  if (!(d->type & CL_DEVICE_TYPE_GPU) || K < GEMM_SPLIT_K) return v;
  int64_t groups = cdiv(M, k_variants[v].tm) * cdiv(N, k_variants[v].tn);
  for (int f = 2; f <= GEMM_MAX_SPLIT && 2 * groups * *parts < 5 * cu; f *= 2) {
    if (K / f < GEMM_MIN_SLICE) break;
    *parts = f;
  }
  return v;
}

/* Builds variant v into p. A source that does not build is an error (the log
 * says why; FLAGOS_OPENCL_GEMM=0 avoids it); a device that cannot run its
 * work-group size marks it failed, and CLBlast takes the products. */
static flagos_status_t build_variant(ocl_state_t *s, ocl_device_t *d, int kind, int v, gemm_prog_t *p) {
  const gemm_variant_t *t = &k_variants[v];
  size_t nt = threads(t);
  /* reqd_work_group_size past the device's limit fails the build itself on some compilers */
  if (d->max_wg && d->max_wg < nt) {
    *p = (gemm_prog_t){.failed = true, .why = CL_INVALID_WORK_GROUP_SIZE};
    return NULL;
  }
  static const char *const types[4] = {
      "#define T float\n#define C float\n", "#define T double\n#define C double\n#define GEMM_F64 1\n",
      "#define T ushort\n#define C float\n#define GEMM_F16 1\n",
      "#define T ushort\n#define C float\n#define GEMM_F16 1\n#define MMA_EMULATE 1\n"};
  char head[320];
  int hn = snprintf(head, sizeof head,
                    "%s%s#define TM %d\n#define TN %d\n#define TK %d\n#define RM %d\n#define RN %d\n#define WM %d\n"
                    "#define WN %d\n",
                    types[kind], t->inter ? "#define INTER 1\n" : "", t->tm, t->tn, t->tk, t->rm, t->rn, t->wm, t->wn);
  const char *body = t->tc ? k_tc : t->vec ? k_vec : k_src;
  size_t nb = strlen(body), n = (size_t)hn + sizeof k_pre - 1 + nb + sizeof k_sum;
  char *src = malloc(n);
  if (!src) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  memcpy(src, head, (size_t)hn);
  memcpy(src + hn, k_pre, sizeof k_pre - 1);
  memcpy(src + hn + sizeof k_pre - 1, body, nb);
  memcpy(src + hn + sizeof k_pre - 1 + nb, k_sum, sizeof k_sum);
  bool refused = false;
  flagos_status_t err = ocl_program_build_opt(s, d, src, n - 1, &p->prog, t->tc ? &refused : NULL);
  free(src);
  if (err) return err;
  if (refused) {
    *p = (gemm_prog_t){.failed = true, .why = CL_BUILD_PROGRAM_FAILURE};
    return NULL;
  }
  cl_int e;
  p->gemm = s->cl.clCreateKernel(p->prog, "flagos_gemm", &e);
  if (p->gemm) p->sum = s->cl.clCreateKernel(p->prog, "flagos_gemm_sum", &e);
  size_t wg = 0;
  if (p->sum) e = s->cl.clGetKernelWorkGroupInfo(p->gemm, d->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
  if (e == CL_SUCCESS && wg < nt) e = CL_INVALID_WORK_GROUP_SIZE;
  if (e != CL_SUCCESS) {
    if (p->sum) s->cl.clReleaseKernel(p->sum);
    if (p->gemm) s->cl.clReleaseKernel(p->gemm);
    s->cl.clReleaseProgram(p->prog);
    *p = (gemm_prog_t){.failed = true, .why = e};
  }
  return NULL;
}

/* Whether products go to k_tc (under g->lock): 0 no; 1 through PTX's mma.sync,
 * on NVIDIA devices of compute capability 8.0 and later (unless
 * FLAGOS_OPENCL_TENSOR=0, or their compiler refused the kernel before); 2
 * emulated, on any device (FLAGOS_OPENCL_TENSOR=emulate: tests). */
static int tc_mode(ocl_state_t *s, const ocl_device_t *d, ocl_gemm_dev_t *g) {
  const char *e = getenv("FLAGOS_OPENCL_TENSOR");
  if (e && (!strcmp(e, "0") || !strcmp(e, "off"))) return 0;
  if (e && !strcmp(e, "emulate")) return 2;
  if (g->tc < 0) {
    cl_uint major = 0;
    g->tc = strstr(d->vendor, "NVIDIA") && ocl_has_word(d->extensions, "cl_nv_device_attribute_query") &&
            s->cl.clGetDeviceInfo(d->id, 0x4000 /* CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV */, sizeof major, &major,
                                  NULL) == CL_SUCCESS &&
            major >= 8;
  }
  return g->tc;
}

static ocl_gemm_dev_t *gemm_dev(ocl_device_t *d) {
  pthread_mutex_lock(&g_gemm_new_lock);
  if (!d->gemm && (d->gemm = calloc(1, sizeof(*d->gemm)))) {
    pthread_mutex_init(&d->gemm->lock, NULL);
    d->gemm->tc = -1;
  }
  ocl_gemm_dev_t *g = d->gemm;
  pthread_mutex_unlock(&g_gemm_new_lock);
  return g;
}

/* A workspace of at least `bytes` (under g->lock); false where there is no room (no split then). */
static bool split_room(ocl_state_t *s, ocl_device_t *d, ocl_gemm_dev_t *g, size_t bytes) {
  if (g->ws_size >= bytes) return true;
  /* the old workspace may still be read by queued commands: OpenCL frees it after them */
  if (g->ws) s->cl.clReleaseMemObject(g->ws);
  cl_int e;
  g->ws = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
  g->ws_size = g->ws ? bytes : 0;
  return g->ws != NULL;
}

/* Under g->lock. */
static cl_int set_args(ocl_state_t *s, cl_kernel k, const void *const *vals, const size_t *sizes, cl_uint n) {
  cl_int e = CL_SUCCESS;
  for (cl_uint i = 0; i < n && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k, i, sizes[i], vals[i]);
  return e;
}

flagos_status_t ocl_gemm_run(ocl_state_t *s, ocl_device_t *d, cl_command_queue q, const ocl_gemm_args_t *a,
                             ocl_trace_fn *trace, bool *taken) {
  *taken = false;
  bool f64 = a->dtype == FLAGOS_FLOAT64, f16 = a->dtype == FLAGOS_FLOAT16;
  int kind = f64 ? 1 : f16 ? 2 : 0;
  /* 32-bit indices within a matrix, with room for the sums past an extent
   * (a row one tile beyond M, a K slice's end beyond K): products up to 2^30 */
  const int64_t lim = (int64_t)1 << 30;
  if (a->K <= 0 || a->N <= 0 || a->M > lim / a->K || a->K > lim / a->N || a->M > lim / a->N) return NULL;
  ocl_gemm_dev_t *g = gemm_dev(d);
  if (!g) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  /* k_vec: every row of A and B starts on a float4 (f16: 4 halves) */
  int64_t lda = a->ta ? a->M : a->K, ldb = a->tb ? a->K : a->N;
  bool vec = !f64 && lda % 4 == 0 && ldb % 4 == 0 && a->sa % 4 == 0 && a->sb % 4 == 0;
  /* and Y's (else the vector kernel writes Y element by element) */
  bool yvec = a->N % 4 == 0 && a->sy % 4 == 0;
  /* k_tc: f16 on rows of whole 16-byte loads, on a device that has mma.sync (or emulated) */
  pthread_mutex_lock(&g->lock);
  int tcm = f16 && lda % 8 == 0 && ldb % 8 == 0 && a->sa % 8 == 0 && a->sb % 8 == 0 ? tc_mode(s, d, g) : 0;
  int parts, v;
  const gemm_variant_t *t;
  gemm_prog_t *kp = NULL;
  size_t es = f64 ? 8 : 4, mn = (size_t)a->M * (size_t)a->N; /* es: the computed type's size (workspace, alpha) */
  for (;;) {
    v = pick(d, f64, vec, tcm != 0, a->bias != NULL, a->batch, a->M, a->N, a->K, &parts);
    /* the workspace is shared: only the default queue's order keeps its uses apart */
    if (q != d->queue) parts = 1;
    t = &k_variants[v];
    /* the grid's second and third dimensions: 65535 groups at most on some
     * platforms (NVIDIA's maps them onto CUDA's grid) */
    if (cdiv(a->M, t->tm) > 65535 || (parts > 1 ? parts : a->batch) > 65535) {
      pthread_mutex_unlock(&g->lock);
      return NULL;
    }
    int k = t->tc && tcm == 2 ? 3 : kind;
    gemm_prog_t *p = &g->p[k][v];
    flagos_status_t err = NULL;
    if (!p->gemm && !p->failed) {
      err = build_variant(s, d, k, v, p);
      if (err) {
        p->failed = true;
        p->why = CL_BUILD_PROGRAM_FAILURE;
      }
      if (p->failed && trace)
        trace("flagos trace: opencl gemm: '%s' cannot run our %dx%d tile kernel%s (%s): %s instead\n", d->name, t->tm,
              t->tn, t->tc ? " on tensor cores" : "", ocl_error_name(p->why),
              t->tc ? "the other kernels" : "CLBlast or the generic kernel");
    }
    if (p->gemm) {
      kp = p;
      break;
    }
    if (t->tc && !err) {
      /* the tensor-core kernel is a fast path: a device whose compiler does
       * not take it (or cannot run it) goes on without it */
      g->tc = 0;
      tcm = 0;
      continue;
    }
    /* The run gets the build's error (with its log) once; after that the
     * variant is marked and CLBlast or the generic kernel takes its products,
     * rather than a build of several seconds failing every call. */
    pthread_mutex_unlock(&g->lock);
    return err;
  }
  if (parts > 1 && !split_room(s, d, g, (size_t)parts * mn * es)) parts = 1;
  int M = (int)a->M, N = (int)a->N, K = (int)a->K, trans = (a->ta ? 1 : 0) | (a->tb ? 2 : 0);
  float beta32 = (float)a->beta;
  /* beta 0 (as the kernel sees it) must not read Y, whose contents may be NaN */
  int flags = (a->bias ? 1 : 0) | ((f64 ? a->beta != 0 : beta32 != 0) ? 2 : 0) | (parts > 1 ? 4 : 0) | (yvec ? 8 : 0);
  /* slices of whole K steps; the last ones may be short or empty */
  int kslice = parts > 1 ? (int)((cdiv(K, parts) + t->tk - 1) / t->tk * t->tk) : K;
  cl_long sa = a->sa, sb = a->sb, sy = parts > 1 ? (cl_long)mn : a->sy;
  float alpha32 = (float)a->alpha;
  const void *alpha = f64 ? (const void *)&a->alpha : &alpha32, *beta = f64 ? (const void *)&a->beta : &beta32;
  /* unused bias and workspace arguments still need valid buffers */
  cl_mem w = parts > 1 ? g->ws : a->Y, bias = a->bias ? a->bias : a->Y;
  const void *vals[16] = {&a->A, &a->B, &a->Y, &w, &bias, &M, &N, &K, &trans, &sa, &sb, &sy, alpha, beta, &kslice,
                          &flags};
  size_t sizes[16] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, 8, 8, 8,
                      es, es, 4, 4};
  size_t nt = threads(t);
  size_t global[3] = {(size_t)cdiv(a->N, t->tn) * nt, (size_t)cdiv(a->M, t->tm),
                      parts > 1 ? (size_t)parts : (size_t)a->batch};
  size_t local[3] = {nt, 1, 1};
  cl_int e = set_args(s, kp->gemm, vals, sizes, 16);
  if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, kp->gemm, 3, NULL, global, local, 0, NULL, NULL);
  if (e == CL_SUCCESS && parts > 1) {
    int imn = (int)mn, pp = parts;
    const void *sv[8] = {&a->Y, &g->ws, &bias, &imn, &N, &pp, beta, &flags};
    size_t ss[8] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, es, 4};
    e = set_args(s, kp->sum, sv, ss, 8);
    size_t sl = d->max_wg && d->max_wg < 256 ? d->max_wg : 256, sg = (mn + sl - 1) / sl * sl;
    if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, kp->sum, 1, NULL, &sg, &sl, 0, NULL, NULL);
  }
  pthread_mutex_unlock(&g->lock);
  if (e != CL_SUCCESS) return ocl_fail(s, e, "queuing the gemm kernel");
  *taken = true;
  if (trace)
    trace("flagos trace: opencl gemm by flagos: %s batch %lld M %lld N %lld K %lld%s%s%s, tile %d (%dx%d/%d%s), %d K "
          "slice%s on '%s'\n",
          f64 ? "f64" : f16 ? "f16" : "f32", (long long)a->batch, (long long)a->M, (long long)a->N, (long long)a->K,
          a->ta ? " transA" : "", a->tb ? " transB" : "", a->bias ? " bias" : "", v, t->tm, t->tn, t->tk,
          t->vec ? " vec" : !t->tc ? "" : tcm == 2 ? " mma emulated" : " mma", parts, parts > 1 ? "s" : "", d->name);
  return NULL;
}

void ocl_gemm_release(ocl_state_t *s, ocl_device_t *d) {
  ocl_gemm_dev_t *g = d->gemm;
  if (!g) return;
  for (int f = 0; f < 4; f++)
    for (int v = 0; v < GEMM_NV; v++) {
      gemm_prog_t *p = &g->p[f][v];
      if (p->sum) s->cl.clReleaseKernel(p->sum);
      if (p->gemm) s->cl.clReleaseKernel(p->gemm);
      if (p->prog) s->cl.clReleaseProgram(p->prog);
    }
  if (g->ws) s->cl.clReleaseMemObject(g->ws);
  pthread_mutex_destroy(&g->lock);
  free(g);
  d->gemm = NULL;
}
