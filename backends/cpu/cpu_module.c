/* Loading kernel modules (ELF shared objects made by the C code generator).
 *
 * The bytes go into an anonymous memory file (memfd) that is dlopen'ed through
 * /proc/self/fd/N, so nothing is left on disk. The descriptor stays open while
 * the module is loaded: glibc recognises an already-loaded object by its path
 * string, and a live module's path can then never be reused by another. If an
 * object with the same path is still known to the loader (one that did not
 * unload), the path is varied ("/proc/self/fd/./N") until it is new. Two
 * modules with identical bytes are two memfds, hence two separate loads.
 * Without memfd (old kernels, no /proc) a temporary file in the cache directory
 * is loaded and unlinked at once. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu_internal.h"

struct flagos_bmodule_s {
  void *handle;
  int fd; /* the memfd, or -1 */
};

typedef void (*cpu_kernel_fn)(void *const *bufs, const int64_t *syms);

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* dlopen through a path naming fd that no loaded object already uses. */
static void *open_fd_path(int fd, char *path, size_t cap) {
  char dots[64] = "";
  for (int attempt = 0; attempt < 16; attempt++) {
    snprintf(path, cap, "/proc/self/fd/%s%d", dots, fd);
    void *old = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!old) return dlopen(path, RTLD_NOW | RTLD_LOCAL);
    dlclose(old);
    strcat(dots, "./");
  }
  return NULL;
}

/* OpenMP worker threads outlive the parallel regions that started them and idle
 * (spinning, then sleeping) inside the OpenMP runtime. A module's runtime comes
 * in as its dependency, so unloading the last module would unmap the runtime
 * under those threads; once a module has brought it in, it stays. */
static void pin_openmp_runtime(void) {
  static const char *const names[] = {"libgomp.so.1", "libomp.so.5", "libomp.so", "libiomp5.so"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (h) dlclose(h);
  }
}

static flagos_status_t load_via_file(cpu_state_t *s, const void *code, size_t size, void **handle) {
  char path[4200];
  snprintf(path, sizeof path, "%s/flagos-module-XXXXXX", s->cache_dir);
  int fd = mkstemp(path);
  if (fd < 0) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/flagos-module-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fd = mkstemp(path);
  }
  if (fd < 0) return CPU_ERR(s, FLAGOS_ERR_IO, "cpu backend: cannot create a file to load kernels from: %s", strerror(errno));
  int bad = write_all(fd, code, size);
  close(fd);
  if (bad) {
    unlink(path);
    return CPU_ERR(s, FLAGOS_ERR_IO, "cpu backend: cannot write '%s': %s", path, strerror(errno));
  }
  *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  const char *err = *handle ? NULL : dlerror();
  flagos_status_t st = err ? CPU_ERR(s, FLAGOS_ERR_BACKEND, "cpu backend: cannot load kernels: %s", err) : NULL;
  unlink(path); /* the loader keeps its own mapping */
  return st;
}

flagos_status_t cpu_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out) {
  cpu_state_t *s = state;
  *out = NULL;
  if (device != 0) return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: no device %d", device);
  if (!code || size < 64 || memcmp(code, "\x7f" "ELF", 4) != 0)
    return CPU_ERR(s, FLAGOS_ERR_CORRUPT, "cpu backend: the kernel code (%zu bytes) is not an ELF shared object", size);
  flagos_bmodule_t m = calloc(1, sizeof(*m));
  if (!m) return CPU_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory");
  m->fd = memfd_create("flagos-kernels", MFD_CLOEXEC);
  if (m->fd >= 0 && write_all(m->fd, code, size) == 0) {
    char path[128];
    m->handle = open_fd_path(m->fd, path, sizeof path);
    if (!m->handle) {
      const char *err = dlerror();
      flagos_status_t st = CPU_ERR(s, FLAGOS_ERR_BACKEND, "cpu backend: cannot load kernels: %s",
                                   err ? err : "no fresh path for the module");
      close(m->fd);
      free(m);
      return st;
    }
  } else {
    if (m->fd >= 0) close(m->fd);
    m->fd = -1;
    flagos_status_t st = load_via_file(s, code, size, &m->handle);
    if (st) {
      free(m);
      return st;
    }
  }
  pin_openmp_runtime();
  *out = m;
  return NULL;
}

void cpu_module_unload(void *state, flagos_bmodule_t m) {
  (void)state;
  if (!m) return;
  if (m->handle) dlclose(m->handle);
  if (m->fd >= 0) close(m->fd);
  free(m);
}

flagos_status_t cpu_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out) {
  cpu_state_t *s = state;
  *out = NULL;
  if (!m || !m->handle || !name) return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: kernel_get without a module or name");
  dlerror();
  void *p = dlsym(m->handle, name);
  if (!p) {
    const char *err = dlerror();
    return CPU_ERR(s, FLAGOS_ERR_NOT_FOUND, "cpu backend: kernel '%s' is not in the module (%s)", name,
                   err ? err : "NULL symbol");
  }
  /* No kernel objects to free (the ABI has no release): the handle is the entry point. */
  *out = (flagos_bkernel_t)p;
  return NULL;
}

flagos_status_t cpu_launch(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args) {
  (void)s;
  if (!k || !args) return CPU_ERR((cpu_state_t *)state, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: launch without a kernel");
  void *p = (void *)k;
  cpu_kernel_fn fn;
  memcpy(&fn, &p, sizeof fn); /* object pointer -> function pointer, as POSIX dlsym allows */
  fn(args->bufs, args->syms);
  return NULL;
}
