/* The cpu backend: the host as one device. Device pointers are host pointers,
 * copies are memcpy, and work runs synchronously when it is issued, so streams
 * are ordering tokens and events are timestamps taken at record time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cpu_internal.h"

struct flagos_bstream_s {
  int device;
};

struct flagos_bevent_s {
  int recorded;
  double ns;
};

static flagos_status_t check_device(cpu_state_t *s, int device) {
  if (device != 0) return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: no device %d (it has one, device 0)", device);
  return NULL;
}

static flagos_status_t cpu_init(const flagos_host_t *host, void **state) {
  *state = NULL;
  if (!host || !host->status_new) return NULL; /* cannot even report; the host checks *state */
  cpu_state_t *s = calloc(1, sizeof(*s));
  if (!s) return host->status_new(FLAGOS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory");
  s->host = *host;
  snprintf(s->cache_dir, sizeof s->cache_dir, "%s", host->cache_dir ? host->cache_dir : "/tmp");
  s->host.cache_dir = s->cache_dir;
  *state = s;
  return NULL;
}

static void cpu_shutdown(void *state) { free(state); }

static int cpu_device_count(void *state) {
  (void)state;
  return 1;
}

/* Value of the first "key : value" line of /proc/cpuinfo whose key is `key`. */
static int cpuinfo_field(const char *key, char *out, size_t cap) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return 0;
  char line[512];
  int found = 0;
  size_t kl = strlen(key);
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, key, kl) != 0 || (line[kl] != ' ' && line[kl] != '\t' && line[kl] != ':')) continue;
    char *v = strchr(line, ':');
    if (!v) continue;
    v++;
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strcspn(v, "\n");
    snprintf(out, cap, "%.*s", (int)n, v);
    found = n > 0;
  }
  fclose(f);
  return found;
}

static flagos_status_t cpu_device_info(void *state, int device, flagos_device_info_t *out) {
  cpu_state_t *s = state;
  flagos_status_t st = check_device(s, device);
  if (st) return st;
  memset(out, 0, sizeof(*out));
  struct utsname u;
  int have_uname = uname(&u) == 0;
  if (!cpuinfo_field("model name", out->name, sizeof out->name) &&
      !cpuinfo_field("Model", out->name, sizeof out->name))
    snprintf(out->name, sizeof out->name, "%s CPU", have_uname ? u.machine : "host");
  char vid[64] = "";
  if (cpuinfo_field("vendor_id", vid, sizeof vid) || cpuinfo_field("CPU implementer", vid, sizeof vid)) {
    const char *v = strcmp(vid, "GenuineIntel") == 0   ? "Intel"
                    : strcmp(vid, "AuthenticAMD") == 0 ? "AMD"
                    : strcmp(vid, "0x41") == 0         ? "ARM"
                                                       : vid;
    snprintf(out->vendor, sizeof out->vendor, "%s", v);
  } else {
    snprintf(out->vendor, sizeof out->vendor, "unknown");
  }
  if (have_uname) snprintf(out->driver_version, sizeof out->driver_version, "%.20s %.40s", u.sysname, u.release);
  out->kind = FLAGOS_DEVICE_CPU;
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  out->memory_bytes = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  out->compute_units = n > 0 ? (int)n : 1;
  out->host_visible = 1;
  return NULL;
}

/* ---- memory ---- */
static flagos_status_t cpu_mem_alloc(void *state, int device, size_t bytes, flagos_devptr_t *out) {
  cpu_state_t *s = state;
  *out = NULL;
  flagos_status_t st = check_device(s, device);
  if (st) return st;
  if (bytes > SIZE_MAX - 64) return CPU_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cpu backend: cannot allocate %zu bytes", bytes);
  /* Rounded up so that vector loops may read whole cache lines; 0 bytes still
   * gives a distinct valid pointer. */
  size_t n = bytes ? (bytes + 63) & ~(size_t)63 : 64;
  void *p = NULL;
  int rc = posix_memalign(&p, 64, n);
  if (rc != 0 || !p)
    return CPU_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cpu backend: cannot allocate %zu bytes: %s", bytes, strerror(rc));
  *out = p;
  return NULL;
}

static void cpu_mem_free(void *state, int device, flagos_devptr_t p) {
  (void)state;
  (void)device;
  free(p);
}

static flagos_status_t copy_args(cpu_state_t *s, const void *dst, const void *src, size_t bytes, const char *what) {
  if (bytes && (!dst || !src)) return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: %s of %zu bytes with a NULL pointer", what, bytes);
  return NULL;
}

static flagos_status_t cpu_copy_h2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                    const void *src, size_t bytes) {
  (void)stream;
  flagos_status_t st = copy_args(state, dst, src, bytes, "host-to-device copy");
  if (!st && bytes) memcpy((char *)dst + dst_off, src, bytes);
  return st;
}

static flagos_status_t cpu_copy_d2h(void *state, flagos_bstream_t stream, void *dst, flagos_devptr_t src,
                                    size_t src_off, size_t bytes) {
  (void)stream;
  flagos_status_t st = copy_args(state, dst, src, bytes, "device-to-host copy");
  if (!st && bytes) memcpy(dst, (const char *)src + src_off, bytes);
  return st;
}

static flagos_status_t cpu_copy_d2d(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                                    flagos_devptr_t src, size_t src_off, size_t bytes) {
  (void)stream;
  flagos_status_t st = copy_args(state, dst, src, bytes, "device-to-device copy");
  if (!st && bytes) memmove((char *)dst + dst_off, (const char *)src + src_off, bytes);
  return st;
}

/* ---- streams and events ---- */
static flagos_status_t cpu_stream_create(void *state, int device, flagos_bstream_t *out) {
  cpu_state_t *s = state;
  *out = NULL;
  flagos_status_t st = check_device(s, device);
  if (st) return st;
  flagos_bstream_t t = calloc(1, sizeof(*t));
  if (!t) return CPU_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory");
  t->device = device;
  *out = t;
  return NULL;
}

static void cpu_stream_destroy(void *state, flagos_bstream_t s) {
  (void)state;
  free(s);
}

static flagos_status_t cpu_stream_sync(void *state, flagos_bstream_t s) {
  (void)state;
  (void)s;
  return NULL; /* work ran when it was issued */
}

static flagos_status_t cpu_event_create(void *state, int device, flagos_bevent_t *out) {
  cpu_state_t *s = state;
  *out = NULL;
  flagos_status_t st = check_device(s, device);
  if (st) return st;
  flagos_bevent_t e = calloc(1, sizeof(*e));
  if (!e) return CPU_ERR(s, FLAGOS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory");
  *out = e;
  return NULL;
}

static void cpu_event_destroy(void *state, flagos_bevent_t e) {
  (void)state;
  free(e);
}

static flagos_status_t cpu_event_record(void *state, flagos_bevent_t e, flagos_bstream_t s) {
  (void)s;
  if (!e) return CPU_ERR((cpu_state_t *)state, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: record of a NULL event");
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  e->ns = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
  e->recorded = 1;
  return NULL;
}

static flagos_status_t cpu_stream_wait_event(void *state, flagos_bstream_t s, flagos_bevent_t e) {
  (void)state;
  (void)s;
  (void)e;
  return NULL;
}

static flagos_status_t cpu_event_sync(void *state, flagos_bevent_t e) {
  (void)state;
  (void)e;
  return NULL;
}

static flagos_status_t cpu_event_elapsed_ms(void *state, flagos_bevent_t start, flagos_bevent_t end, double *ms) {
  cpu_state_t *s = state;
  if (!start || !end || !start->recorded || !end->recorded)
    return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: elapsed time between events that were not both recorded");
  *ms = (end->ns - start->ns) / 1e6;
  return NULL;
}

static const flagos_backend_t k_cpu_backend = {
    .abi_version = FLAGOS_BACKEND_ABI_VERSION,
    .struct_size = sizeof(flagos_backend_t),
    .name = "cpu",
    .code_format = "elf-so",
    .version = "0.1.0",
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .device_count = cpu_device_count,
    .device_info = cpu_device_info,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .copy_h2d = cpu_copy_h2d,
    .copy_d2h = cpu_copy_d2h,
    .copy_d2d = cpu_copy_d2d,
    .stream_create = cpu_stream_create,
    .stream_destroy = cpu_stream_destroy,
    .stream_sync = cpu_stream_sync,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .event_record = cpu_event_record,
    .stream_wait_event = cpu_stream_wait_event,
    .event_sync = cpu_event_sync,
    .event_elapsed_ms = cpu_event_elapsed_ms,
    .module_load = cpu_module_load,
    .module_unload = cpu_module_unload,
    .kernel_get = cpu_kernel_get,
    .launch = cpu_launch,
    .library_call = cpu_library_call,
    .device_power = cpu_device_power,
};

__attribute__((visibility("default"))) const flagos_backend_t *flagos_backend_entry(uint32_t abi_version) {
  return abi_version == FLAGOS_BACKEND_ABI_VERSION ? &k_cpu_backend : NULL;
}
