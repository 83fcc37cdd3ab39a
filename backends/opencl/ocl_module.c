/* Programs, kernels and launches.
 *
 * A module is the OpenCL C source the compiler emitted (src/codegen's OpenCL
 * dialect), built at load for one device. Built programs are cached as
 * <cache_dir>/opencl/<key>.bin, the key hashing the source, the build options and
 * the device's identity (platform name and version, device name, vendor, OpenCL
 * version, driver version), so a driver update rebuilds. A cached binary the
 * driver refuses is deleted and the source built again. A failed build keeps the
 * source as <key>.failed.cl and reports the compiler's log.
 *
 * Before building, the "//! requires EXT" lines of the source are checked
 * against the device, so a model that needs cl_khr_fp64 on a device without it
 * fails at load with the device and the extension named.
 *
 * Launch ABI (see src/codegen/dialect_opencl.c): arguments are the kernel's
 * buffers in order, then the symbol array as a read-only buffer. A kernel with
 * reqd_work_group_size(1,1,1) runs as one work-item; any other covers its points
 * with a loop striding by the global size, launched with about one work-item per
 * point (capped; the loop does the rest), except kernels with local memory (the
 * cooperative form: a work-group per row), launched with up to one group per
 * point and groups of at most OCL_GROUP_MAX. Each kernel keeps the symbol
 * buffers of its last OCL_SYM_SETS symbol arrays (static shapes: created once;
 * a kernel shared by nodes of a few shapes does not make one per launch).
 *
 * Inside a capture (ocl_graph.c) a launch is recorded instead of queued. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ocl_internal.h"

/* Work-items per group at most for kernels in the cooperative form (the size
 * of their local arrays, CG_OCL_GROUP_MAX in src/codegen/dialect_opencl.c). */
#define OCL_GROUP_MAX 256
#define OCL_SYM_SETS 4

typedef struct ocl_syms {
  cl_mem mem;
  int64_t *val;
  int n;
} ocl_syms_t;

struct flagos_bkernel_s {
  flagos_bmodule_t m;
  cl_kernel k;
  char *name;
  bool single;     /* reqd_work_group_size(1,1,1): one work-item */
  bool rows;       /* uses local memory: a work-group per row (the cooperative form) */
  size_t local;    /* work-group size of every other launch */
  cl_uint n_args;
  pthread_mutex_t lock; /* argument setting and enqueue are one step */
  ocl_syms_t syms[OCL_SYM_SETS]; /* recent symbol arrays; replaced round-robin */
  int syms_next;
};

struct flagos_bmodule_s {
  int dev;
  cl_program prog;
  cl_mem no_syms; /* passed to kernels without symbols (a buffer argument may not be NULL everywhere) */
  int n_k, cap_k;
  flagos_bkernel_t *k;
};

/* ---- cache key: two independent 64-bit hashes over the identity and the source ---- */
typedef struct {
  uint64_t a, b;
} ocl_key_t;

static void key_add(ocl_key_t *k, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) {
    k->a = (k->a ^ c[i]) * 0x100000001b3ull; /* FNV-1a */
    k->b = (k->b ^ c[i]) * 0x9e3779b97f4a7c15ull;
    k->b ^= k->b >> 29;
  }
  k->a = (k->a ^ 0xffu) * 0x100000001b3ull; /* field separator: ("ab","c") != ("a","bc") */
  k->b = (k->b ^ 0xffu) * 0x9e3779b97f4a7c15ull;
}

static void key_str(ocl_key_t *k, const char *s) { key_add(k, s, strlen(s)); }

#define CACHE_MAGIC "FLOCLBN1"

static flagos_status_t mkdir_p(ocl_state_t *s, const char *path) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(tmp, 0755);
    *p = '/';
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
    return OCL_ERR(s, FLAGOS_ERR_IO, "opencl backend: cannot create '%s': %s", tmp, strerror(errno));
  return NULL;
}

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *d = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (d = malloc((size_t)n)) && fread(d, 1, (size_t)n, f) != (size_t)n) {
      free(d);
      d = NULL;
    }
    *len = n > 0 ? (size_t)n : 0;
  }
  fclose(f);
  return d;
}

/* Writes through a temporary file and a rename, so readers see all or nothing. */
static void write_atomic(const char *path, const void *a, size_t an, const void *b, size_t bn) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  bool ok = fwrite(a, 1, an, f) == an && (!bn || fwrite(b, 1, bn, f) == bn);
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

/* The "//! requires EXT" lines: each extension must be on the device. */
static flagos_status_t check_requires(ocl_state_t *s, const ocl_device_t *d, const char *src) {
  static const char tag[] = "//! requires ";
  for (const char *p = src; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    if (strncmp(p, tag, sizeof tag - 1) != 0) continue;
    const char *w = p + sizeof tag - 1;
    size_t l = strcspn(w, " \r\n");
    char ext[128];
    snprintf(ext, sizeof ext, "%.*s", (int)(l < sizeof ext ? l : sizeof ext - 1), w);
    bool ok;
    if (strcmp(ext, "cl_khr_fp64") == 0) {
      ok = d->fp64;
    } else {
      ok = false;
      size_t el = strlen(ext);
      for (const char *q = d->extensions; !ok && q && (q = strstr(q, ext)); q += el)
        ok = (q == d->extensions || q[-1] == ' ') && (q[el] == 0 || q[el] == ' ');
    }
    if (!ok)
      return OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED,
                     "opencl backend: device '%s' (platform '%s') does not support %s, which this model's kernels need%s; "
                     "run it on another device (`flagos devices` lists them)",
                     d->name, d->platform_name, ext,
                     strcmp(ext, "cl_khr_fp64") == 0 ? " (it computes in float64)" : "");
  }
  return NULL;
}

/* The first lines of a build log (a log can run to megabytes). */
static flagos_status_t build_error(ocl_state_t *s, const ocl_device_t *d, cl_program prog, cl_int e,
                                   const char *failed_path) {
  size_t n = 0;
  char *log = NULL;
  if (prog && s->cl.clGetProgramBuildInfo(prog, d->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) == CL_SUCCESS &&
      (log = calloc(n + 1, 1)) && s->cl.clGetProgramBuildInfo(prog, d->id, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS)
    log[0] = 0;
  size_t cut = 0;
  int lines = 0;
  while (log && log[cut] && lines < 40 && cut < 6000)
    if (log[cut++] == '\n') lines++;
  flagos_status_t st = OCL_ERR(s, FLAGOS_ERR_BACKEND,
                               "opencl backend: building the kernels for device '%s' (platform '%s') failed: %s (%d)%s%s\n%.*s%s",
                               d->name, d->platform_name, ocl_error_name(e), (int)e,
                               failed_path ? "; source kept as " : "", failed_path ? failed_path : "", (int)cut,
                               log ? log : "", log && log[cut] ? "\n..." : "");
  free(log);
  return st;
}

flagos_status_t ocl_program_build(ocl_state_t *s, ocl_device_t *d, const char *src, size_t len, cl_program *out) {
  return ocl_program_build_opt(s, d, src, len, out, NULL);
}

/* NVIDIA's OpenCL compiles for its device's plain target (sm_90 on an H100),
 * where sm_90a's wgmma is not an instruction. A kernel that wants it writes
 * each such instruction in its inline assembly behind "//FOWG", a PTX comment,
 * so that the source builds; the program's binary, which on that platform is
 * the PTX text, gets the instructions back and the target sm_90a, and is built
 * again from that binary. The edit keeps the binary's length (the target gains
 * a character, the first marker loses one). False where the binary is not such
 * PTX. */
static bool patch_sm90a(unsigned char *b, size_t n) {
  static const char target[] = ".target sm_90", mark[] = "//FOWG";
  const size_t nt = sizeof target - 1, nm = sizeof mark - 1;
  unsigned char *t = NULL, *f = NULL;
  for (size_t i = 0; i + nt < n && !t; i++)
    if (!memcmp(b + i, target, nt) && (b[i + nt] == ',' || b[i + nt] == '\n' || b[i + nt] == ' ')) t = b + i;
  for (unsigned char *i = t ? t : b; t && i + nm <= b + n && !f; i++)
    if (!memcmp(i, mark, nm)) f = i;
  if (!t || !f) return false;
  memmove(t + nt + 1, t + nt, (size_t)(f - (t + nt)));
  t[nt] = 'a';
  memset(f + 1, ' ', nm - 1);
  for (unsigned char *i = f + nm; i + nm <= b + n; i++)
    if (!memcmp(i, mark, nm)) memset(i, ' ', nm);
  return true;
}

/* A program's binary for its one device, malloc'ed (*n its size); NULL where there is none. */
static unsigned char *program_binary(ocl_state_t *s, cl_program prog, size_t *n) {
  *n = 0;
  if (s->cl.clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof *n, n, NULL) != CL_SUCCESS || !*n) return NULL;
  unsigned char *bin = malloc(*n);
  unsigned char *bins[1] = {bin};
  if (bin && s->cl.clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
    free(bin);
    bin = NULL;
  }
  return bin;
}

/* A program built from a binary, or NULL where the device refuses it. */
static cl_program from_binary(ocl_state_t *s, ocl_device_t *d, const unsigned char *bin, size_t n, const char *opts) {
  cl_int e, bst = CL_SUCCESS;
  cl_program prog = s->cl.clCreateProgramWithBinary(d->ctx, 1, &d->id, &n, &bin, &bst, &e);
  if (prog && (e != CL_SUCCESS || bst != CL_SUCCESS || s->cl.clBuildProgram(prog, 1, &d->id, opts, NULL, NULL) != CL_SUCCESS)) {
    s->cl.clReleaseProgram(prog);
    prog = NULL;
  }
  return prog;
}

flagos_status_t ocl_program_build_opt(ocl_state_t *s, ocl_device_t *d, const char *src, size_t len, cl_program *out,
                                      bool *refused) {
  return ocl_program_build_ex(s, d, src, len, out, refused, false);
}

flagos_status_t ocl_program_build_ex(ocl_state_t *s, ocl_device_t *d, const char *src, size_t len, cl_program *out,
                                     bool *refused, bool sm90a) {
  *out = NULL;
  char opts[1024];
  const char *extra = getenv("FLAGOS_OPENCL_BUILD_OPTIONS");
  /* -w: warnings about generated code (constant conditions...) help no one, and
   * some implementations print them on stderr */
  snprintf(opts, sizeof opts, "-w%s%s%s%s%s%s", d->div_sqrt ? " -cl-fp32-correctly-rounded-divide-sqrt" : "",
           d->fp64 ? "" : " -DFO_NO_F64", d->warp32 ? " -DFO_WARP32" : "", d->vec_unaligned ? " -DFO_VEC_UNALIGNED" : "",
           extra && *extra ? " " : "", extra && *extra ? extra : "");

  ocl_key_t key = {0xcbf29ce484222325ull, 0x6a09e667f3bcc908ull};
  key_str(&key, CACHE_MAGIC);
  key_str(&key, d->platform_name);
  key_str(&key, d->platform_version);
  key_str(&key, d->name);
  key_str(&key, d->vendor);
  key_str(&key, d->version);
  key_str(&key, d->driver);
  key_str(&key, opts);
  key_str(&key, sm90a ? "sm_90a" : "");
  key_add(&key, src, len);
  char dir[4200], path[4300], failed[4300];
  snprintf(dir, sizeof dir, "%s/opencl", s->cache_dir);
  snprintf(path, sizeof path, "%s/%016llx%016llx.bin", dir, (unsigned long long)key.a, (unsigned long long)key.b);
  snprintf(failed, sizeof failed, "%s/%016llx%016llx.failed.cl", dir, (unsigned long long)key.a,
           (unsigned long long)key.b);
  bool cache_ok = mkdir_p(s, dir) == NULL; /* no cache folder: build every time */

  cl_int e;
  cl_program prog = NULL;
  size_t blen = 0;
  unsigned char *file = cache_ok ? read_file(path, &blen) : NULL;
  if (file && blen > 16 && memcmp(file, CACHE_MAGIC, 8) == 0) {
    uint64_t n;
    memcpy(&n, file + 8, 8);
    if (n == blen - 16) prog = from_binary(s, d, file + 16, (size_t)n, opts);
    if (!prog) unlink(path); /* stale or refused: rebuild from the source */
  }
  free(file);
  if (prog) {
    *out = prog;
    return NULL;
  }

  const char *sp = src;
  prog = s->cl.clCreateProgramWithSource(d->ctx, 1, &sp, &len, &e);
  if (!prog) return ocl_fail(s, e, "cannot create a program from the kernel source");
  e = s->cl.clBuildProgram(prog, 1, &d->id, opts, NULL, NULL);
  if (e != CL_SUCCESS) {
    if (cache_ok) write_atomic(failed, src, len, NULL, 0);
    if (refused && e == CL_BUILD_PROGRAM_FAILURE) {
      s->cl.clReleaseProgram(prog);
      *refused = true;
      return NULL;
    }
    flagos_status_t st = build_error(s, d, prog, e, cache_ok ? failed : NULL);
    s->cl.clReleaseProgram(prog);
    return st;
  }
  if (sm90a) {
    /* the instructions back in the binary, then built again from it */
    size_t bs;
    unsigned char *bin = program_binary(s, prog, &bs);
    cl_program p2 = bin && patch_sm90a(bin, bs) ? from_binary(s, d, bin, bs, opts) : NULL;
    free(bin);
    s->cl.clReleaseProgram(prog);
    if (!p2) {
      if (cache_ok) write_atomic(failed, src, len, NULL, 0);
      if (refused) {
        *refused = true;
        return NULL;
      }
      return OCL_ERR(s, FLAGOS_ERR_BACKEND, "opencl backend: '%s' did not take the kernels' sm_90a instructions", d->name);
    }
    prog = p2;
  }
  size_t bs;
  unsigned char *bin = cache_ok ? program_binary(s, prog, &bs) : NULL;
  if (bin) {
    unsigned char head[16];
    uint64_t n = bs;
    memcpy(head, CACHE_MAGIC, 8);
    memcpy(head + 8, &n, 8);
    write_atomic(path, head, sizeof head, bin, bs);
  }
  free(bin);
  *out = prog;
  return NULL;
}

flagos_status_t ocl_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out) {
  ocl_state_t *s = state;
  *out = NULL;
  ocl_device_t *d;
  flagos_status_t st = ocl_device_ready(s, device, &d);
  if (st) return st;
  if (!code || !size || memchr(code, 0, size))
    return OCL_ERR(s, FLAGOS_ERR_CORRUPT, "opencl backend: the kernel code (%zu bytes) is not OpenCL C source text", size);
  char *src = malloc(size + 1);
  if (!src) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  memcpy(src, code, size);
  src[size] = 0;
  st = check_requires(s, d, src);
  flagos_bmodule_t m = st ? NULL : calloc(1, sizeof(*m));
  if (!st && !m) st = OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  if (!st) st = ocl_program_build(s, d, src, size, &m->prog);
  free(src);
  if (!st) {
    cl_int e;
    m->dev = device;
    m->no_syms = s->cl.clCreateBuffer(d->ctx, CL_MEM_READ_ONLY, 8, NULL, &e);
    if (!m->no_syms) st = ocl_fail(s, e, "cannot allocate a symbol buffer");
  }
  if (st) {
    ocl_module_unload(s, m);
    return st;
  }
  *out = m;
  return NULL;
}

void ocl_module_unload(void *state, flagos_bmodule_t m) {
  ocl_state_t *s = state;
  if (!m) return;
  for (int i = 0; i < m->n_k; i++) {
    flagos_bkernel_t k = m->k[i];
    s->cl.clReleaseKernel(k->k);
    for (int j = 0; j < OCL_SYM_SETS; j++) {
      if (k->syms[j].mem) s->cl.clReleaseMemObject(k->syms[j].mem);
      free(k->syms[j].val);
    }
    pthread_mutex_destroy(&k->lock);
    free(k->name);
    free(k);
  }
  free(m->k);
  if (m->no_syms) s->cl.clReleaseMemObject(m->no_syms);
  if (m->prog) s->cl.clReleaseProgram(m->prog);
  free(m);
}

flagos_status_t ocl_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out) {
  ocl_state_t *s = state;
  *out = NULL;
  if (!m || !m->prog || !name)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: kernel_get without a module or name");
  for (int i = 0; i < m->n_k; i++)
    if (strcmp(m->k[i]->name, name) == 0) {
      *out = m->k[i];
      return NULL;
    }
  ocl_device_t *d = &s->dev[m->dev];
  cl_int e;
  cl_kernel ck = s->cl.clCreateKernel(m->prog, name, &e);
  if (!ck) {
    if (e == CL_INVALID_KERNEL_NAME)
      return OCL_ERR(s, FLAGOS_ERR_NOT_FOUND, "opencl backend: kernel '%s' is not in the module", name);
    return ocl_fail(s, e, "cannot create a kernel");
  }
  flagos_bkernel_t k = calloc(1, sizeof(*k));
  flagos_bkernel_t *grown = m->n_k == m->cap_k ? realloc(m->k, sizeof(*m->k) * (size_t)(m->cap_k ? m->cap_k * 2 : 16)) : m->k;
  char *nm = strdup(name);
  if (!k || !grown || !nm) {
    free(k);
    free(nm);
    if (grown) m->k = grown;
    s->cl.clReleaseKernel(ck);
    return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  }
  if (m->n_k == m->cap_k) m->cap_k = m->cap_k ? m->cap_k * 2 : 16;
  m->k = grown;
  k->m = m;
  k->k = ck;
  k->name = nm;
  pthread_mutex_init(&k->lock, NULL);
  s->cl.clGetKernelInfo(ck, CL_KERNEL_NUM_ARGS, sizeof k->n_args, &k->n_args, NULL);
  size_t req[3] = {0, 0, 0}, kmax = d->max_wg, mult = 1;
  s->cl.clGetKernelWorkGroupInfo(ck, d->id, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof req, req, NULL);
  s->cl.clGetKernelWorkGroupInfo(ck, d->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax, NULL);
  s->cl.clGetKernelWorkGroupInfo(ck, d->id, CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE, sizeof mult, &mult, NULL);
  k->single = req[0] == 1 && req[1] == 1 && req[2] == 1;
  /* GPUs want a few warps per group; CPU implementations run a group as one task. */
  size_t want = (d->type & CL_DEVICE_TYPE_GPU) ? 256 : 64;
  const char *env = getenv("FLAGOS_OPENCL_LOCAL_SIZE");
  if (env && atol(env) > 0) want = (size_t)atol(env);
  /* A kernel with local memory is the emitter's cooperative form: its groups
   * share rows through local arrays of OCL_GROUP_MAX entries. */
  cl_ulong lmem = 0;
  s->cl.clGetKernelWorkGroupInfo(ck, d->id, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL);
  k->rows = lmem > 0;
  if (k->rows && want > OCL_GROUP_MAX) want = OCL_GROUP_MAX;
  size_t local = want < kmax ? want : kmax;
  if (mult > 1 && local >= mult) local -= local % mult;
  /* the cooperative form's warps (-DFO_WARP32, src/codegen/dialect_opencl.c) assume groups of whole warps */
  if (d->warp32 && k->rows) {
    if (kmax < 32) {
      flagos_status_t err = OCL_ERR(s, FLAGOS_ERR_UNSUPPORTED,
                     "opencl backend: kernel '%s' runs in groups of at most %zu work-items on '%s'; its rows need whole warps "
                     "of 32 (FLAGOS_OPENCL_WARP=0 builds it without them)",
                     name, kmax, d->name);
      s->cl.clReleaseKernel(ck);
      pthread_mutex_destroy(&k->lock);
      free(k->name);
      free(k);
      return err;
    }
    local = local < 32 ? 32 : local - local % 32;
  }
  k->local = local ? local : 1;
  m->k[m->n_k++] = k;
  *out = k;
  return NULL;
}

/* Under the kernel's lock. */
static cl_int run_locked(ocl_state_t *s, flagos_bkernel_t k, const cl_mem *args, cl_uint n_args, size_t global,
                         size_t local, cl_command_queue q) {
  cl_int e = CL_SUCCESS;
  for (cl_uint i = 0; i < n_args && e == CL_SUCCESS; i++) e = s->cl.clSetKernelArg(k->k, i, sizeof(cl_mem), &args[i]);
  if (e == CL_SUCCESS) e = s->cl.clEnqueueNDRangeKernel(q, k->k, 1, NULL, &global, &local, 0, NULL, NULL);
  return e;
}

cl_int ocl_kernel_run(ocl_state_t *s, flagos_bkernel_t k, const cl_mem *args, cl_uint n_args, size_t global,
                      size_t local, cl_command_queue q) {
  pthread_mutex_lock(&k->lock);
  cl_int e = run_locked(s, k, args, n_args, global, local, q);
  pthread_mutex_unlock(&k->lock);
  return e;
}

cl_kernel ocl_kernel_clone(ocl_state_t *s, flagos_bkernel_t k, cl_int *e) {
  return s->cl.clCreateKernel(k->m->prog, k->name, e);
}

/* The symbol buffer holding syms[0..n) (under the kernel's lock). */
static flagos_status_t syms_buffer(ocl_state_t *s, flagos_bkernel_t k, const int64_t *syms, int n, cl_mem *out) {
  size_t sb = sizeof(int64_t) * (size_t)n;
  for (int i = 0; i < OCL_SYM_SETS; i++)
    if (k->syms[i].mem && k->syms[i].n == n && memcmp(k->syms[i].val, syms, sb) == 0) {
      *out = k->syms[i].mem;
      return NULL;
    }
  cl_int e;
  int64_t *copy = malloc(sb);
  cl_mem nb = copy ? s->cl.clCreateBuffer(s->dev[k->m->dev].ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sb,
                                          (void *)syms, &e)
                   : NULL;
  if (!nb) {
    free(copy);
    return copy ? ocl_fail(s, e, "cannot allocate a symbol buffer")
                : OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  }
  memcpy(copy, syms, sb);
  ocl_syms_t *slot = &k->syms[k->syms_next];
  k->syms_next = (k->syms_next + 1) % OCL_SYM_SETS;
  /* freed once the launches using it are done (a captured one holds its own reference) */
  if (slot->mem) s->cl.clReleaseMemObject(slot->mem);
  free(slot->val);
  *slot = (ocl_syms_t){nb, copy, n};
  *out = nb;
  return NULL;
}

flagos_status_t ocl_launch(void *state, flagos_bstream_t st, flagos_bkernel_t k, const flagos_launch_t *args) {
  ocl_state_t *s = state;
  if (!k || !args) return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: launch without a kernel");
  /* the buffers, then the symbol array unless the kernel reads no symbol (src/codegen/dialect_opencl.c) */
  bool takes_syms = k->n_args == (cl_uint)args->n_bufs + 1;
  if (!takes_syms && k->n_args != (cl_uint)args->n_bufs)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT,
                   "opencl backend: kernel '%s' takes %u arguments, the launch passes %d buffers (and the symbols)",
                   k->name, k->n_args, args->n_bufs);
  if (args->work <= 0) return NULL; /* no points */
  flagos_bmodule_t m = k->m;
  ocl_device_t *d = &s->dev[m->dev];
  if (st && st->dev != m->dev)
    return OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: kernel '%s' of device %d launched on a stream of device %d",
                   k->name, m->dev, st->dev);
  cl_mem small[32];
  cl_mem *cm = k->n_args <= 32 ? small : malloc(sizeof(cl_mem) * k->n_args);
  if (!cm) return OCL_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "opencl backend: out of memory");
  flagos_status_t err = NULL;
  for (int i = 0; i < args->n_bufs && !err; i++) {
    const ocl_buf_t *b = args->bufs[i];
    if (!b || b->dev != m->dev)
      err = OCL_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "opencl backend: kernel '%s': buffer %d is %s", k->name, i,
                    b ? "on another device" : "NULL");
    else
      cm[i] = b->mem;
  }
  size_t local = k->single ? 1 : k->local, global = 1;
  if (!k->single) {
    /* Enough groups to fill the device; beyond that the kernel's loop strides. */
    uint64_t cap = (uint64_t)(d->compute_units ? d->compute_units : 1) * ((d->type & CL_DEVICE_TYPE_GPU) ? 32 : 64);
    /* A group per point would cover every row: `work` is rows times the
     * points of a row, at least the number of rows. */
    uint64_t groups = k->rows ? (uint64_t)args->work : ((uint64_t)args->work + local - 1) / local;
    if (groups > cap) groups = cap;
    global = (size_t)groups * local;
  }
  ocl_capture_t *cap = err ? NULL : ocl_capturing(s, st, m->dev);
  cl_int e = CL_SUCCESS;
  pthread_mutex_lock(&k->lock);
  if (takes_syms) cm[args->n_bufs] = m->no_syms;
  if (!err && takes_syms && args->n_syms > 0) err = syms_buffer(s, k, args->syms, args->n_syms, &cm[args->n_bufs]);
  if (!err && cap) err = ocl_record_kernel(s, cap, k, cm, k->n_args, global, local);
  if (!err && !cap) e = run_locked(s, k, cm, k->n_args, global, local, ocl_queue(s, st, m->dev));
  pthread_mutex_unlock(&k->lock);
  if (e != CL_SUCCESS) {
    char what[256];
    snprintf(what, sizeof what, "launching kernel '%s' (%zu work-items in groups of %zu)", k->name, global, local);
    err = ocl_fail(s, e, what);
  }
  if (cm != small) free(cm);
  return err;
}
