/* Compiling CUDA C ahead of time with NVRTC into one container of cubins (one per
 * architecture) plus PTX, with a content-addressed cache.
 *
 * NVRTC is opened with dlopen on first use, so libflagos has no link-time
 * dependency on the CUDA toolkit: a machine without it compiles for every other
 * target, and `--target cuda` fails there with a message saying what was looked
 * for. Cache writes are atomic (unique temporary name, then rename), as for C. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/cgen.h"

#define CU_DIAG_LINES 40
#define CU_MAX_ARCHS 16

/* ---- NVRTC, loaded at run time ---- */
typedef struct nvrtc_prog *nvrtc_prog_t;
typedef struct nvrtc_api {
  const char *(*GetErrorString)(int);
  int (*Version)(int *, int *);
  int (*CreateProgram)(nvrtc_prog_t *, const char *, const char *, int, const char *const *, const char *const *);
  int (*DestroyProgram)(nvrtc_prog_t *);
  int (*CompileProgram)(nvrtc_prog_t, int, const char *const *);
  int (*GetProgramLogSize)(nvrtc_prog_t, size_t *);
  int (*GetProgramLog)(nvrtc_prog_t, char *);
  int (*GetPTXSize)(nvrtc_prog_t, size_t *);
  int (*GetPTX)(nvrtc_prog_t, char *);
  int (*GetCUBINSize)(nvrtc_prog_t, size_t *);
  int (*GetCUBIN)(nvrtc_prog_t, char *);
  int major, minor;
  char path[PATH_MAX];
} nvrtc_api_t;

static pthread_once_t g_nvrtc_once = PTHREAD_ONCE_INIT;
static nvrtc_api_t g_nvrtc;
static char g_nvrtc_err[1024]; /* why NVRTC is unusable; empty when loaded */

static bool nvrtc_bind(void *h, nvrtc_api_t *a) {
#define NV_SYM(f)                                                     \
  do {                                                                \
    *(void **)(&a->f) = dlsym(h, "nvrtc" #f);                         \
    if (!a->f) {                                                      \
      snprintf(g_nvrtc_err, sizeof g_nvrtc_err, "it has no nvrtc" #f); \
      return false;                                                   \
    }                                                                 \
  } while (0)
  NV_SYM(GetErrorString);
  NV_SYM(Version);
  NV_SYM(CreateProgram);
  NV_SYM(DestroyProgram);
  NV_SYM(CompileProgram);
  NV_SYM(GetProgramLogSize);
  NV_SYM(GetProgramLog);
  NV_SYM(GetPTXSize);
  NV_SYM(GetPTX);
  NV_SYM(GetCUBINSize);
  NV_SYM(GetCUBIN);
#undef NV_SYM
  return a->Version(&a->major, &a->minor) == 0;
}

static void nvrtc_load(void) {
  const char *cands[8];
  int n = 0;
  const char *env = getenv("FLAGOS_NVRTC_LIBRARY");
  if (env && *env) cands[n++] = env;
#ifdef FLAGOS_NVRTC_DEFAULT
  cands[n++] = FLAGOS_NVRTC_DEFAULT;
#endif
  cands[n++] = "libnvrtc.so.13";
  cands[n++] = "libnvrtc.so.12";
  cands[n++] = "libnvrtc.so";
  cands[n++] = "/usr/local/cuda/lib64/libnvrtc.so";
  char tried[768] = "";
  for (int i = 0; i < n; i++) {
    void *h = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
    size_t l = strlen(tried);
    snprintf(tried + l, sizeof tried - l, "%s%s", l ? ", " : "", cands[i]);
    if (!h) continue;
    nvrtc_api_t a;
    memset(&a, 0, sizeof a);
    if (nvrtc_bind(h, &a)) {
      snprintf(a.path, sizeof a.path, "%s", cands[i]);
      g_nvrtc = a;
      g_nvrtc_err[0] = 0;
      return; /* kept open for the life of the process */
    }
    dlclose(h);
  }
  snprintf(g_nvrtc_err, sizeof g_nvrtc_err,
           "NVRTC (the CUDA toolkit's run-time compiler) was not found: tried %s; set FLAGOS_NVRTC_LIBRARY to "
           "libnvrtc.so's path",
           tried);
}

static flagos_status_t nvrtc_get(const nvrtc_api_t **out) {
  pthread_once(&g_nvrtc_once, nvrtc_load);
  if (g_nvrtc_err[0]) return FL_ERR(FLAGOS_ERR_NOT_FOUND, "%s", g_nvrtc_err);
  *out = &g_nvrtc;
  return NULL;
}

bool cgen_cuda_available(int *major, int *minor) {
  const nvrtc_api_t *a;
  flagos_status_t st = nvrtc_get(&a);
  if (st) {
    flagos_status_free(st);
    return false;
  }
  if (major) *major = a->major;
  if (minor) *minor = a->minor;
  return true;
}

/* ---- architectures ---- */
typedef struct cu_arch {
  uint32_t kind; /* CGEN_CUDA_CUBIN or CGEN_CUDA_PTX */
  uint32_t sm;   /* 90 for sm_90 / compute_90 */
} cu_arch_t;

static flagos_status_t parse_archs(const char *spec, cu_arch_t *out, int *n) {
  *n = 0;
  const char *p = spec;
  while (*p) {
    size_t l = strcspn(p, ", ");
    if (l) {
      char w[32];
      if (l >= sizeof w) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "CUDA architecture '%.*s' is too long", (int)l, p);
      memcpy(w, p, l);
      w[l] = 0;
      const char *num = strncmp(w, "sm_", 3) == 0 ? w + 3 : strncmp(w, "compute_", 8) == 0 ? w + 8 : NULL;
      char *end = NULL;
      long v = num ? strtol(num, &end, 10) : 0;
      /* sm_90a-style variants are not portable across a major version: not offered. */
      if (!num || !*num || *end || v < 50 || v > 1000)
        return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bad CUDA architecture '%s' (expected sm_XY or compute_XY)", w);
      if (*n == CU_MAX_ARCHS) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "more than %d CUDA architectures", CU_MAX_ARCHS);
      out[(*n)++] = (cu_arch_t){w[0] == 's' ? CGEN_CUDA_CUBIN : CGEN_CUDA_PTX, (uint32_t)v};
    }
    p += l;
    while (*p == ',' || *p == ' ') p++;
  }
  if (*n == 0) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "no CUDA architecture in '%s'", spec);
  return NULL;
}

const char *cgen_cuda_archs(void) {
  const char *e = getenv("FLAGOS_CUDA_ARCHS");
  return e && *e ? e : CGEN_CUDA_DEFAULT_ARCHS;
}

/* ---- the container (docs/kernel-ir.md, "The CUDA kernel ABI") ---- */
static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

flagos_status_t cgen_cuda_container_check(const void *data, size_t size) {
  const unsigned char *p = data;
  if (!p || size < CGEN_CUDA_HEADER_SIZE || memcmp(p, CGEN_CUDA_MAGIC, 8) != 0)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "not a FlagOS CUDA container (bad magic)");
  if (get_u32(p + 8) != CGEN_CUDA_VERSION)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "CUDA container version %u (this build reads %u)", get_u32(p + 8),
                  CGEN_CUDA_VERSION);
  uint32_t n = get_u32(p + 12);
  if (n > 1024 || CGEN_CUDA_HEADER_SIZE + (uint64_t)n * CGEN_CUDA_ENTRY_SIZE > size)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "CUDA container: %u entries do not fit in %zu bytes", n, size);
  for (uint32_t i = 0; i < n; i++) {
    const unsigned char *e = p + CGEN_CUDA_HEADER_SIZE + (size_t)i * CGEN_CUDA_ENTRY_SIZE;
    uint32_t kind = get_u32(e);
    uint64_t off = get_u64(e + 8), len = get_u64(e + 16);
    if (kind != CGEN_CUDA_CUBIN && kind != CGEN_CUDA_PTX)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "CUDA container entry %u has kind %u", i, kind);
    if (off > size || len > size - off || len == 0)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "CUDA container entry %u lies outside the %zu-byte container", i, size);
    if (kind == CGEN_CUDA_PTX && p[off + len - 1] != 0)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "CUDA container entry %u (PTX) is not NUL-terminated", i);
  }
  return NULL;
}

/* ---- compiling ---- */
static char *log_head(const char *log) {
  size_t i = 0;
  for (int line = 0; log[i] && line < CU_DIAG_LINES; i++)
    if (log[i] == '\n') line++;
  char *r = malloc(i + 1);
  if (r) {
    memcpy(r, log, i);
    r[i] = 0;
  }
  return r;
}

/* Compiles src for one architecture; *code is malloc'ed (PTX with its NUL). */
static flagos_status_t compile_one(const nvrtc_api_t *nv, const char *src, cu_arch_t arch, void **code,
                                   size_t *code_len) {
  *code = NULL;
  *code_len = 0;
  char archopt[64];
  snprintf(archopt, sizeof archopt, "--gpu-architecture=%s_%u", arch.kind == CGEN_CUDA_CUBIN ? "sm" : "compute", arch.sm);
  const char *name = archopt + strlen("--gpu-architecture=");
  const char *opts[] = {archopt, "--std=c++17"};
  nvrtc_prog_t prog = NULL;
  int rc = nv->CreateProgram(&prog, src, "flagos_kernels.cu", 0, NULL, NULL);
  if (rc != 0) return FL_ERR(FLAGOS_ERR_BACKEND, "nvrtcCreateProgram failed: %s", nv->GetErrorString(rc));
  flagos_status_t st = NULL;
  rc = nv->CompileProgram(prog, (int)FL_ARRAY_LEN(opts), opts);
  if (rc != 0) {
    size_t ls = 0;
    char *log = NULL;
    if (nv->GetProgramLogSize(prog, &ls) == 0 && ls > 0 && (log = calloc(ls + 1, 1))) nv->GetProgramLog(prog, log);
    char *head = log ? log_head(log) : NULL;
    st = FL_ERR(FLAGOS_ERR_BACKEND, "NVRTC (%s) failed for %s: %s:\n%s", nv->path, name, nv->GetErrorString(rc),
                head ? head : "");
    free(head);
    free(log);
  } else {
    bool ptx = arch.kind == CGEN_CUDA_PTX;
    size_t n = 0;
    rc = ptx ? nv->GetPTXSize(prog, &n) : nv->GetCUBINSize(prog, &n);
    char *buf = rc == 0 && n > 0 ? malloc(n + 1) : NULL;
    if (buf) rc = ptx ? nv->GetPTX(prog, buf) : nv->GetCUBIN(prog, buf);
    if (!buf || rc != 0) {
      free(buf);
      st = FL_ERR(FLAGOS_ERR_BACKEND, "NVRTC gave no %s for %s", ptx ? "PTX" : "cubin", name);
    } else {
      if (ptx && buf[n - 1] != 0) buf[n++] = 0; /* the loader takes PTX as a C string */
      *code = buf;
      *code_len = n;
    }
  }
  nv->DestroyProgram(&prog);
  return st;
}

/* One architecture's compile, run on its own thread (NVRTC programs are
 * independent; only nvrtcGetTypeName, unused here, is not thread-safe). */
typedef struct cu_job {
  const nvrtc_api_t *nv;
  const char *src;
  cu_arch_t arch;
  void *code;
  size_t len;
  flagos_status_t st;
  pthread_t tid;
  bool started;
} cu_job_t;

static void *job_run(void *p) {
  cu_job_t *j = p;
  j->st = compile_one(j->nv, j->src, j->arch, &j->code, &j->len);
  return NULL;
}

static flagos_status_t build_container(const nvrtc_api_t *nv, const char *src, size_t len, const cu_arch_t *archs,
                                       int n, const char *fail_dir, const char *key, void **out, size_t *out_len) {
  cu_job_t jobs[CU_MAX_ARCHS];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < n; i++) {
    jobs[i] = (cu_job_t){.nv = nv, .src = src, .arch = archs[i]};
    /* The last one runs here; so does any whose thread cannot start. */
    jobs[i].started = i < n - 1 && pthread_create(&jobs[i].tid, NULL, job_run, &jobs[i]) == 0;
    if (!jobs[i].started && i < n - 1) job_run(&jobs[i]);
  }
  job_run(&jobs[n - 1]);
  flagos_status_t st = NULL;
  for (int i = 0; i < n; i++) {
    if (jobs[i].started) pthread_join(jobs[i].tid, NULL);
    if (!st) st = jobs[i].st;
    else if (jobs[i].st) flagos_status_free(jobs[i].st);
  }
  if (st && fail_dir) {
    char failed[PATH_MAX + 64];
    snprintf(failed, sizeof failed, "%s/%s.failed.cu", fail_dir, key);
    flagos_status_t ws = fl_write_file(failed, src, len);
    if (!ws) st = flagos_status_wrap(st, "CUDA source kept as %s", failed);
    flagos_status_free(ws);
  }
  if (!st) {
    fl_buf_t b = {0};
    unsigned char hdr[CGEN_CUDA_HEADER_SIZE + CU_MAX_ARCHS * CGEN_CUDA_ENTRY_SIZE];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, CGEN_CUDA_MAGIC, 8);
    put_u32(hdr + 8, CGEN_CUDA_VERSION);
    put_u32(hdr + 12, (uint32_t)n);
    uint64_t off = CGEN_CUDA_HEADER_SIZE + (uint64_t)n * CGEN_CUDA_ENTRY_SIZE;
    for (int i = 0; i < n; i++) {
      off = (off + 15) & ~(uint64_t)15; /* cubins are ELF images: keep them aligned */
      unsigned char *e = hdr + CGEN_CUDA_HEADER_SIZE + (size_t)i * CGEN_CUDA_ENTRY_SIZE;
      put_u32(e, archs[i].kind);
      put_u32(e + 4, archs[i].sm);
      put_u64(e + 8, off);
      put_u64(e + 16, jobs[i].len);
      off += jobs[i].len;
    }
    fl_buf_append(&b, hdr, CGEN_CUDA_HEADER_SIZE + (size_t)n * CGEN_CUDA_ENTRY_SIZE);
    static const char zeros[16];
    for (int i = 0; i < n; i++) {
      if (b.len & 15) fl_buf_append(&b, zeros, 16 - (b.len & 15));
      fl_buf_append(&b, jobs[i].code, jobs[i].len);
    }
    *out = b.data;
    *out_len = b.len;
  }
  for (int i = 0; i < n; i++) free(jobs[i].code);
  return st;
}

static flagos_status_t write_atomic(const char *dir, const char *final, const void *data, size_t len) {
  char tmp[PATH_MAX + 32];
  snprintf(tmp, sizeof tmp, "%s/cuda.XXXXXX.tmp", dir);
  int fd = mkstemps(tmp, 4);
  if (fd < 0) return FL_ERR(FLAGOS_ERR_IO, "cannot create a file in '%s': %s", dir, strerror(errno));
  const char *p = data;
  size_t left = len;
  flagos_status_t st = NULL;
  while (left && !st) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) st = FL_ERR(FLAGOS_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    else {
      p += w;
      left -= (size_t)w;
    }
  }
  if (close(fd) != 0 && !st) st = FL_ERR(FLAGOS_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
  if (!st && rename(tmp, final) != 0) st = FL_ERR(FLAGOS_ERR_IO, "cannot move '%s' into place: %s", tmp, strerror(errno));
  if (st) unlink(tmp);
  return st;
}

flagos_status_t cgen_cuda_compile(const char *src, size_t len, const char *archs, const char *cache_dir, void **blob,
                                  size_t *blob_len) {
  *blob = NULL;
  *blob_len = 0;
  if (!src && len) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cgen_cuda_compile: no source");
  cu_arch_t arch[CU_MAX_ARCHS];
  int n_arch;
  FL_TRY(parse_archs(archs ? archs : cgen_cuda_archs(), arch, &n_arch));
  const nvrtc_api_t *nv;
  FL_TRY(nvrtc_get(&nv));
  /* NVRTC takes a NUL-terminated string. */
  char *text = malloc(len + 1);
  if (!text) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (len) memcpy(text, src, len);
  text[len] = 0;

  char ident[160];
  snprintf(ident, sizeof ident, "nvrtc %d.%d;c++17;container %u", nv->major, nv->minor, CGEN_CUDA_VERSION);
  uint64_t h1 = fl_hash64(text, len, 0x5bd1e995u), h2 = fl_hash64(text, len, 0x9e3779b97f4a7c15ull);
  h1 = fl_hash64(ident, strlen(ident), h1);
  h2 = fl_hash64(ident, strlen(ident), h2);
  for (int i = 0; i < n_arch; i++) {
    uint32_t w[2] = {arch[i].kind, arch[i].sm};
    h1 = fl_hash64(w, sizeof w, h1);
    h2 = fl_hash64(w, sizeof w, h2);
  }
  char key[40];
  snprintf(key, sizeof key, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);

  if (!cache_dir) cache_dir = cgen_default_cache_dir();
  char dir[PATH_MAX], path[PATH_MAX + 64];
  snprintf(dir, sizeof dir, "%s/cuda", cache_dir);
  flagos_status_t st = fl_mkdirs(dir);
  bool cached = st == NULL;
  flagos_status_free(st);
  st = NULL;
  if (cached) {
    snprintf(path, sizeof path, "%s/%s.fatbin", dir, key);
    void *data;
    size_t n;
    flagos_status_t rs = fl_read_file(path, &data, &n);
    if (!rs) {
      flagos_status_t cs = cgen_cuda_container_check(data, n);
      if (!cs) {
        free(text);
        *blob = data;
        *blob_len = n;
        return NULL;
      }
      flagos_status_free(cs); /* a damaged entry is compiled again and replaced */
      free(data);
    }
    flagos_status_free(rs);
  }
  st = build_container(nv, text, len, arch, n_arch, cached ? dir : NULL, key, blob, blob_len);
  free(text);
  if (!st && cached) {
    flagos_status_t ws = write_atomic(dir, path, *blob, *blob_len);
    flagos_status_free(ws); /* an unwritable cache only means compiling again next time */
  }
  return st;
}
