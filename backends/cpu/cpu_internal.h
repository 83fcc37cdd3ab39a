/* Shared by the cpu plugin's files. The plugin knows only the plugin ABI
 * (include/flagos/backend.h): it never includes FlagOS's internal headers. */
#ifndef FLAGOS_CPU_INTERNAL_H
#define FLAGOS_CPU_INTERNAL_H

#include "flagos/backend.h"

#include <stdbool.h>

#define CPU_RAPL_MAX 16
/* RAPL package counters (cpu_power.c), read lazily on the first device_power. */
typedef struct cpu_rapl {
  bool discovered, readable;
  int n;
  char dir[CPU_RAPL_MAX][300];
  uint64_t last[CPU_RAPL_MAX], range[CPU_RAPL_MAX];
  uint64_t total_uj, limit_uw;
} cpu_rapl_t;

typedef struct cpu_state {
  flagos_host_t host;
  char cache_dir[4096];
  cpu_rapl_t rapl;
} cpu_state_t;

#define CPU_ERR(s, code, ...) ((s)->host.status_new((code), __VA_ARGS__))

/* cpu_module.c */
flagos_status_t cpu_module_load(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out);
void cpu_module_unload(void *state, flagos_bmodule_t m);
flagos_status_t cpu_kernel_get(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out);
flagos_status_t cpu_launch(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args);

/* cpu_power.c */
flagos_status_t cpu_device_power(void *state, int device, flagos_power_info_t *out);

/* cpu_gemm.c */
flagos_status_t cpu_library_call(void *state, flagos_bstream_t s, const flagos_libcall_t *call);

#endif
