/* Kernel modules: the compiler's container of cubins and PTX (docs/kernel-ir.md,
 * "The CUDA kernel ABI"). module_load picks the cubin built for the device's
 * architecture (or the newest one of the same major version below it, which the
 * device runs too), else the newest PTX not above it, which the driver compiles
 * for the device. A launch passes buffers then symbols as the kernel's
 * parameters and covers `work` points with a grid-stride loop; a kernel with
 * static shared memory (the cooperative form, a block or warp per row) gets up
 * to one block per point, capped alike, and strides over its rows. A kernel
 * that takes dynamic shared memory says how much by the size of a global named
 * after it (docs/kernel-ir.md): it gets that much at every launch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

/* The container's layout (written by src/codegen/compile_cuda.c). */
#define FOCU_MAGIC "FLOSCUDA"
#define FOCU_VERSION 1u
#define FOCU_HEADER 16
#define FOCU_ENTRY 24
#define FOCU_CUBIN 1u
#define FOCU_PTX 2u

#define CUDA_BLOCK 256
#define CUDA_BLOCK_MAX 1024
/* Blocks per multiprocessor a launch asks for at most; the grid-stride loop
 * covers the rest of the points. */
#define CUDA_BLOCKS_PER_SM 32
/* CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: static shared memory marks the emitter's
 * cooperative form (docs/kernel-ir.md), whose blocks (or warps) share rows. */
#define CUDA_FUNC_SHARED_SIZE_BYTES 1

struct flagos_bkernel_s {
  struct flagos_bkernel_s *next;
  cu_func_t f;
  int device;
  int block;     /* threads per block: the kernel's bound, at most CUDA_BLOCK_MAX */
  bool rows;     /* the cooperative form: up to a block per point (each strides over rows) */
  unsigned dyn;  /* dynamic shared memory bytes each launch gives */
  int n_params;  /* checked against the launch once; -1 before, -2 unknowable */
  char name[];
};

struct flagos_bmodule_s {
  int device;
  cu_module_t mod;
  struct flagos_bkernel_s *kernels;
};

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

typedef struct entry {
  uint32_t kind, sm;
  uint64_t off, size;
} entry_t;

/* Chooses the entry to load on a device of architecture `sm`; -1 if none fits. */
static int choose(const entry_t *e, uint32_t n, int sm) {
  int best = -1;
  for (uint32_t i = 0; i < n; i++)
    if (e[i].kind == FOCU_CUBIN && (int)e[i].sm / 10 == sm / 10 && (int)e[i].sm <= sm &&
        (best < 0 || e[i].sm > e[best].sm))
      best = (int)i;
  if (best >= 0) return best;
  for (uint32_t i = 0; i < n; i++)
    if (e[i].kind == FOCU_PTX && (int)e[i].sm <= sm && (best < 0 || e[i].sm > e[best].sm)) best = (int)i;
  return best;
}

flagos_status_t cuda_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out) {
  cuda_state_t *s = state;
  *out = NULL;
  const unsigned char *p = code;
  if (!p || size < FOCU_HEADER || memcmp(p, FOCU_MAGIC, 8) != 0)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: the kernels are not a FlagOS CUDA container");
  if (rd32(p + 8) != FOCU_VERSION)
    return CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED, "cuda backend: CUDA container version %u (this plugin reads %u)",
                    rd32(p + 8), FOCU_VERSION);
  uint32_t n = rd32(p + 12);
  if (n > 1024 || FOCU_HEADER + (uint64_t)n * FOCU_ENTRY > size)
    return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: CUDA container: %u entries do not fit in %zu bytes", n,
                    size);
  entry_t e[1024];
  char have[256] = "";
  for (uint32_t i = 0; i < n; i++) {
    const unsigned char *q = p + FOCU_HEADER + (size_t)i * FOCU_ENTRY;
    e[i] = (entry_t){rd32(q), rd32(q + 4), rd64(q + 8), rd64(q + 16)};
    if (e[i].off > size || e[i].size > size - e[i].off || e[i].size == 0 ||
        (e[i].kind == FOCU_PTX && p[e[i].off + e[i].size - 1] != 0))
      return CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: CUDA container entry %u is damaged", i);
    size_t l = strlen(have);
    snprintf(have + l, sizeof have - l, "%s%s_%u", l ? ", " : "", e[i].kind == FOCU_PTX ? "compute" : "sm", e[i].sm);
  }
  flagos_status_t st = cuda_use(s, device);
  if (st) return st;
  int sm = s->dev[device].sm, pick = choose(e, n, sm);
  if (pick < 0)
    return CUDA_ERR(s, FLAGOS_ERR_UNSUPPORTED,
                    "cuda backend: the bundle has no code for device %d (sm_%d): it holds %s (set FLAGOS_CUDA_ARCHS "
                    "when compiling)",
                    device, sm, have[0] ? have : "nothing");
  flagos_bmodule_t m = calloc(1, sizeof(*m));
  if (!m) return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  m->device = device;
  char log[2048] = "";
  int opts[2] = {CU_JIT_ERROR_LOG, CU_JIT_ERROR_LOG_SIZE};
  void *vals[2] = {log, (void *)(uintptr_t)sizeof log};
  cu_result_t rc = s->drv.ModuleLoadDataEx(&m->mod, p + e[pick].off, 2, opts, vals);
  if (rc != CU_OK) {
    const char *name = NULL;
    s->drv.GetErrorName(rc, &name);
    log[sizeof log - 1] = 0;
    free(m);
    return CUDA_ERR(s, FLAGOS_ERR_BACKEND, "cuda backend: cannot load the %s_%u code on device %d (sm_%d): %s%s%s",
                    e[pick].kind == FOCU_PTX ? "compute" : "sm", e[pick].sm, device, sm, name ? name : "error",
                    log[0] ? ": " : "", log);
  }
  *out = m;
  return NULL;
}

void cuda_module_unload(void *state, flagos_bmodule_t m) {
  cuda_state_t *s = state;
  if (!m) return;
  for (struct flagos_bkernel_s *k = m->kernels, *next; k; k = next) {
    next = k->next;
    free(k);
  }
  if (s->dev[m->device].ready && s->drv.CtxSetCurrent(s->dev[m->device].ctx) == CU_OK) s->drv.ModuleUnload(m->mod);
  free(m);
}

/* The dynamic shared memory kernel `name` takes: the size of its global
 * fo_dynsmem_<name> times 256 bytes (0 without one). Past 48 KB with its
 * static shared memory the kernel must be allowed it first; where the driver
 * cannot (an old one, a device with less), it is launched without: the kernel
 * then reads memory instead. */
static unsigned dynamic_shared(cuda_state_t *s, flagos_bmodule_t m, cu_func_t f, const char *name, int shared) {
  char gname[512];
  cu_ptr_t p;
  size_t units = 0;
  if (!s->drv.ModuleGetGlobal || snprintf(gname, sizeof gname, "fo_dynsmem_%s", name) >= (int)sizeof gname ||
      s->drv.ModuleGetGlobal(&p, &units, m->mod, gname) != CU_OK || units == 0 || units > 16384)
    return 0;
  unsigned bytes = (unsigned)units * 256;
  bool allowed = s->drv.FuncSetAttribute && s->drv.FuncSetAttribute(f, CU_FUNC_MAX_DYNAMIC_SHARED, (int)bytes) == CU_OK;
  return allowed || bytes + (unsigned)shared <= 48 * 1024 ? bytes : 0;
}

flagos_status_t cuda_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out) {
  cuda_state_t *s = state;
  *out = NULL;
  flagos_status_t st = cuda_use(s, m->device);
  if (st) return st;
  cu_func_t f;
  cu_result_t rc = s->drv.ModuleGetFunction(&f, m->mod, name);
  if (rc != CU_OK) {
    const char *en = NULL;
    s->drv.GetErrorName(rc, &en);
    return CUDA_ERR(s, FLAGOS_ERR_NOT_FOUND, "cuda backend: kernel '%s' is not in the module (%s)", name,
                    en ? en : "error");
  }
  int maxt = CUDA_BLOCK;
  st = cuda_check(s, s->drv.FuncGetAttribute(&maxt, CU_FUNC_MAX_THREADS_PER_BLOCK, f), "cuFuncGetAttribute");
  if (st) return st;
  int shared = 0;
  st = cuda_check(s, s->drv.FuncGetAttribute(&shared, CUDA_FUNC_SHARED_SIZE_BYTES, f), "cuFuncGetAttribute");
  if (st) return st;
  unsigned dyn = dynamic_shared(s, m, f, name, shared);
  size_t nl = strlen(name) + 1;
  struct flagos_bkernel_s *k = malloc(sizeof(*k) + nl);
  if (!k) return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  k->f = f;
  k->device = m->device;
  /* the kernel's bound: 256, 1 for serial kernels, more for a cooperative
   * kernel the emitter gave wider blocks (FLAGOS_CODEGEN_WIDE_BLOCK) */
  k->block = maxt < 1 ? 1 : maxt < CUDA_BLOCK_MAX ? maxt : CUDA_BLOCK_MAX;
  k->rows = shared > 0;
  k->dyn = dyn;
  k->n_params = s->drv.FuncGetParamInfo ? -1 : -2;
  memcpy(k->name, name, nl);
  k->next = m->kernels;
  m->kernels = k;
  *out = k;
  return NULL;
}

/* Checks (once per kernel, where the driver can tell) that the launch passes as
 * many parameters as the kernel declares: a mismatch would read garbage. */
static flagos_status_t check_params(cuda_state_t *s, flagos_bkernel_t k, int n) {
  if (k->n_params == -2 || k->n_params == n) return NULL;
  size_t off, sz;
  int have = 0;
  while (have <= n && s->drv.FuncGetParamInfo(k->f, (size_t)have, &off, &sz) == CU_OK) have++;
  if (have == 0 && n > 0) { /* the driver cannot tell after all: nothing to check */
    k->n_params = -2;
    return NULL;
  }
  if (have != n)
    return CUDA_ERR(s, FLAGOS_ERR_INTERNAL, "cuda backend: kernel '%s' takes %d parameter(s)%s, the launch passes %d",
                    k->name, have, have > n ? " or more" : "", n);
  k->n_params = n;
  return NULL;
}

flagos_status_t cuda_launch(void *state, flagos_bstream_t t, flagos_bkernel_t k, const flagos_launch_t *args) {
  cuda_state_t *s = state;
  int n = args->n_bufs + args->n_syms;
  flagos_status_t st = cuda_use(s, k->device);
  if (!st) st = check_params(s, k, n);
  if (st) return st;
  cuda_device_t *dv = &s->dev[k->device];
  uint64_t local_slots[64];
  void *local_ptrs[64];
  uint64_t *slots = n <= 64 ? local_slots : malloc(sizeof(uint64_t) * (size_t)n);
  void **ptrs = n <= 64 ? local_ptrs : malloc(sizeof(void *) * (size_t)n);
  if (!slots || !ptrs) {
    if (n > 64) {
      free(slots);
      free(ptrs);
    }
    return CUDA_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  }
  for (int i = 0; i < args->n_bufs; i++) slots[i] = (uint64_t)(uintptr_t)args->bufs[i];
  for (int i = 0; i < args->n_syms; i++) slots[args->n_bufs + i] = (uint64_t)args->syms[i];
  for (int i = 0; i < n; i++) ptrs[i] = &slots[i];
  int64_t blocks = 1;
  if (k->block > 1 && args->work > 0) {
    int64_t cap = (int64_t)(dv->sm_count > 0 ? dv->sm_count : 1) * CUDA_BLOCKS_PER_SM;
    if (dv->max_grid_x > 0 && cap > dv->max_grid_x) cap = dv->max_grid_x;
    /* `work` (rows times the points of a row) is at least the number of rows:
     * a block per point covers every row, blocks past the last row return. */
    blocks = k->rows ? args->work : (args->work + k->block - 1) / k->block;
    if (blocks > cap) blocks = cap;
  }
  cu_stream_t cs = t ? t->st : dv->stream;
  cu_result_t rc =
      s->drv.LaunchKernel(k->f, (unsigned)blocks, 1, 1, (unsigned)k->block, 1, 1, k->dyn, cs, n ? ptrs : NULL, NULL);
  if (n > 64) {
    free(slots);
    free(ptrs);
  }
  if (rc == CU_OK && s->sync_launches) rc = s->drv.StreamSynchronize(cs);
  if (rc != CU_OK) {
    const char *en = NULL;
    s->drv.GetErrorName(rc, &en);
    return CUDA_ERR(s, FLAGOS_ERR_BACKEND, "cuda backend: kernel '%s' (%lld blocks of %d threads): %s (%d)", k->name,
                    (long long)blocks, k->block, en ? en : "error", rc);
  }
  return NULL;
}
