/* The backend plugin ABI.
 *
 * A backend is a shared object exporting one function,
 *     const flagos_backend_t *flagos_backend_entry(uint32_t abi_version);
 * which returns its table for the ABI version asked (or NULL when it cannot serve
 * that version). FlagOS's own cpu backend is loaded exactly like a third-party
 * one. A plugin whose driver is missing must still load and report zero devices.
 *
 * Every call returns a flagos_status_t (NULL on success); a plugin creates
 * statuses with the status_new callback in flagos_host_t, so status memory is
 * owned by the host library. Pointers to device memory are opaque handles
 * (`flagos_devptr_t`); for the cpu backend they are host pointers.
 *
 * Threading: calls on one stream are made from one host thread at a time. */
#ifndef FLAGOS_BACKEND_H
#define FLAGOS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "flagos/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FLAGOS_BACKEND_ABI_VERSION 1u

typedef void *flagos_devptr_t;
typedef struct flagos_bstream_s *flagos_bstream_t; /* backend-defined */
typedef struct flagos_bevent_s *flagos_bevent_t;
typedef struct flagos_bmodule_s *flagos_bmodule_t;
typedef struct flagos_bkernel_s *flagos_bkernel_t;
typedef struct flagos_bgraph_s *flagos_bgraph_t;   /* a captured, replayable sequence of launches */

/* Services the host gives a plugin. */
typedef struct flagos_host {
  uint32_t abi_version;
  flagos_status_t (*status_new)(flagos_code_t code, const char *fmt, ...) FLAGOS_PRINTF(2, 3);
  /* Directory for caches (compiled kernels, program binaries); never NULL. */
  const char *cache_dir;
} flagos_host_t;

typedef enum flagos_device_kind {
  FLAGOS_DEVICE_CPU = 0,
  FLAGOS_DEVICE_GPU = 1,
  FLAGOS_DEVICE_ACCELERATOR = 2
} flagos_device_kind_t;

typedef struct flagos_device_info {
  char name[128];          /* "Intel(R) Xeon(R) ...", "NVIDIA H100 80GB HBM3" */
  char vendor[64];
  char driver_version[64];
  flagos_device_kind_t kind;
  uint64_t memory_bytes;   /* 0 if unknown */
  int compute_units;
  int host_visible;        /* device pointers are host pointers (no copies needed) */
} flagos_device_info_t;

/* Arguments of one kernel launch. The kernel reads buffer i from bufs[i] and
 * integer symbol j from syms[j]; `work` is the number of points in its
 * iteration space (the product of its extents), for backends that map points
 * to threads. */
typedef struct flagos_launch {
  flagos_devptr_t const *bufs;
  int n_bufs;
  const int64_t *syms;
  int n_syms;
  int64_t work;
} flagos_launch_t;

/* Arguments of a library call (see docs/kernel-ir.md for each call's meaning). */
typedef struct flagos_libcall {
  const char *name; /* "gemm", "conv" ... */
  flagos_devptr_t const *bufs;
  const int32_t *buf_dtypes; /* flagos_dtype_t of each buffer */
  int n_bufs;
  const int64_t *ints;
  int n_ints;
  const double *floats;
  int n_floats;
} flagos_libcall_t;

/* ---- added for profiling (issue 7) ----
 * What a backend's optional device_power reports. The host zeroes it
 * before the call. A plugin that can measure sets has_energy and energy_uj, a
 * cumulative counter the host samples before and after a measurement (NVML's
 * total energy, RAPL's package counters); it keeps the counter monotonic
 * across the hardware counter's wrap-around when it can (energy_range_uj 0),
 * otherwise energy_range_uj says where it wraps. declared_watts is the power
 * the plugin declares for the device under load (board power limit, TDP),
 * used, marked as estimated, when nothing is measured. */
typedef struct flagos_power_info {
  double declared_watts;     /* 0: unknown */
  int has_energy;
  uint64_t energy_uj;
  uint64_t energy_range_uj;  /* 0: does not wrap */
  char energy_source[32];    /* "rapl", "nvml" */
  char declared_source[64];  /* where declared_watts comes from, for reports */
} flagos_power_info_t;

typedef struct flagos_backend {
  uint32_t abi_version;  /* FLAGOS_BACKEND_ABI_VERSION */
  uint32_t struct_size;  /* sizeof(flagos_backend_t) as the plugin was built */
  const char *name;      /* "cpu", "cuda", "opencl", or a vendor's */
  const char *code_format; /* what module_load takes: "elf-so" (C), "cubin", "opencl-c" */
  const char *version;

  flagos_status_t (*init)(const flagos_host_t *host, void **state);
  void (*shutdown)(void *state);
  int (*device_count)(void *state);
  flagos_status_t (*device_info)(void *state, int device, flagos_device_info_t *out);

  /* memory */
  flagos_status_t (*mem_alloc)(void *state, int device, size_t bytes, flagos_devptr_t *out);
  void (*mem_free)(void *state, int device, flagos_devptr_t p);
  /* Copies; host pointers are plain pointers. Ordered on `stream` (NULL: default).
   * On the default stream copy_d2h is complete when it returns; on a stream of
   * stream_create a copy may still run until the stream is synchronised, and the
   * host memory must stay until then (the runtime's copier does so, from a thread
   * of its own, while other threads issue work to the default stream). */
  flagos_status_t (*copy_h2d)(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                              const void *src, size_t bytes);
  flagos_status_t (*copy_d2h)(void *state, flagos_bstream_t stream, void *dst, flagos_devptr_t src,
                              size_t src_off, size_t bytes);
  flagos_status_t (*copy_d2d)(void *state, flagos_bstream_t stream, flagos_devptr_t dst, size_t dst_off,
                              flagos_devptr_t src, size_t src_off, size_t bytes);

  /* streams and events */
  flagos_status_t (*stream_create)(void *state, int device, flagos_bstream_t *out);
  void (*stream_destroy)(void *state, flagos_bstream_t s);
  flagos_status_t (*stream_sync)(void *state, flagos_bstream_t s);
  flagos_status_t (*event_create)(void *state, int device, flagos_bevent_t *out);
  void (*event_destroy)(void *state, flagos_bevent_t e);
  flagos_status_t (*event_record)(void *state, flagos_bevent_t e, flagos_bstream_t s);
  flagos_status_t (*stream_wait_event)(void *state, flagos_bstream_t s, flagos_bevent_t e);
  flagos_status_t (*event_sync)(void *state, flagos_bevent_t e);
  /* Milliseconds between two recorded, completed events. */
  flagos_status_t (*event_elapsed_ms)(void *state, flagos_bevent_t start, flagos_bevent_t end, double *ms);

  /* code */
  flagos_status_t (*module_load)(void *state, int device, const void *code, size_t size, flagos_bmodule_t *out);
  void (*module_unload)(void *state, flagos_bmodule_t m);
  flagos_status_t (*kernel_get)(void *state, flagos_bmodule_t m, const char *name, flagos_bkernel_t *out);
  flagos_status_t (*launch)(void *state, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *args);

  /* Optional (may be NULL): runs a library call; returns a status with code
   * FLAGOS_ERR_UNSUPPORTED when it does not provide that call or those dtypes,
   * and the host then launches the kernel's generic body instead. */
  flagos_status_t (*library_call)(void *state, flagos_bstream_t s, const flagos_libcall_t *call);

  /* ---- added for profiling (issue 7); read only when struct_size covers it,
   * so plugins built before it still load (FLAGOS_BACKEND_HAS) ---- */
  /* Optional (may be NULL): the device's power, for EAF per watt (docs/eaf.md). */
  flagos_status_t (*device_power)(void *state, int device, flagos_power_info_t *out);

  /* ---- added for graph capture and replay (issue 4); read only when
   * struct_size covers them (FLAGOS_BACKEND_HAS). A plugin provides all four or
   * none. ----
   * Between capture_begin and capture_end, launch and library_call on stream `s`
   * (a stream of stream_create; NULL means the device's default stream) are
   * recorded, not run; the host issues no copies, synchronisations or host
   * reads in between. A library call that cannot be recorded returns an error
   * (or the capture fails at capture_end) and the host falls back to plain
   * launches. capture_begin returns FLAGOS_ERR_UNSUPPORTED when the plugin will
   * not capture at all (disabled, or a debugging mode that synchronises), and
   * the host then stops trying. capture_end always ends the capture; it returns
   * the graph, or an error and no graph when the capture failed. graph_launch
   * runs a graph on `s`, ordered with the stream's other work, with the same
   * buffers and arguments it was recorded with. graph_destroy may be called
   * while a launch is in flight (the plugin frees it when it completes). */
  flagos_status_t (*capture_begin)(void *state, int device, flagos_bstream_t s);
  flagos_status_t (*capture_end)(void *state, int device, flagos_bstream_t s, flagos_bgraph_t *out);
  flagos_status_t (*graph_launch)(void *state, flagos_bgraph_t g, flagos_bstream_t s);
  void (*graph_destroy)(void *state, flagos_bgraph_t g);
} flagos_backend_t;

/* True when the plugin's table has member `field` and sets it. */
#define FLAGOS_BACKEND_HAS(api, field)                                                                          \
  ((api)->struct_size >= offsetof(flagos_backend_t, field) + sizeof((api)->field) && (api)->field != NULL)
/* The table size of ABI 1 before device_power was added: the smallest a host accepts. */
#define FLAGOS_BACKEND_MIN_STRUCT_SIZE offsetof(flagos_backend_t, device_power)

typedef const flagos_backend_t *(*flagos_backend_entry_fn)(uint32_t abi_version);
#define FLAGOS_BACKEND_ENTRY_SYMBOL "flagos_backend_entry"

#ifdef __cplusplus
}
#endif
#endif
