/* The GPU's power, for EAF per watt (docs/eaf.md), through NVML opened at run
 * time (libnvidia-ml.so.1, which comes with the driver; $FLAGOS_NVML names
 * another): the total energy counter (nvmlDeviceGetTotalEnergyConsumption,
 * millijoules since the driver loaded, Volta and later; it does not wrap) as
 * the measurement, and the enforced board power limit as the declared power,
 * else the power drawn when asked. Without NVML nothing is measured and the
 * declared power is $FLAGOS_CUDA_WATTS, else unknown (0).
 *
 * NVML numbers devices in PCI order, CUDA fastest first and through
 * CUDA_VISIBLE_DEVICES, so a device is matched by its PCI bus id. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_blas_api.h"
#include "cuda_internal.h"

struct cuda_nvml {
  pthread_mutex_t lock; /* the handles */
  nvml_lib_t lib;
  bool ok;
  char why[200];
  nvml_device_t dev[CUDA_MAX_DEVICES];
  signed char state[CUDA_MAX_DEVICES]; /* 0: not looked up; 1: found; -1: not found */
};

static bool nvml_open(nvml_lib_t *l, char *why, size_t why_len) {
  memset(l, 0, sizeof(*l));
  const char *env = getenv("FLAGOS_NVML");
  const char *name = env && *env ? env : "libnvidia-ml.so.1";
  void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *err = dlerror();
    snprintf(why, why_len, "no NVML (%s): %s", name, err ? err : "not found");
    return false;
  }
#define NVML_BIND(member, sym, ret, params)                            \
  *(void **)(&l->member) = dlsym(h, sym);                              \
  if (!l->member) {                                                    \
    snprintf(why, why_len, "NVML (%s) has no %s", name, sym);          \
    dlclose(h);                                                        \
    memset(l, 0, sizeof(*l));                                          \
    return false;                                                      \
  }
  NVML_FUNCS(NVML_BIND)
#undef NVML_BIND
  l->handle = h;
  nvml_return_t r = l->Init();
  if (r != NVML_OK) {
    const char *e = l->ErrorString(r);
    snprintf(why, why_len, "nvmlInit: %s (%d)", e ? e : "error", r);
    dlclose(h);
    memset(l, 0, sizeof(*l));
    return false;
  }
  return true;
}

static struct cuda_nvml *nvml_get(cuda_state_t *s) {
  pthread_mutex_lock(&s->lock);
  if (!s->nvml) {
    struct cuda_nvml *n = calloc(1, sizeof(*n));
    if (n) {
      pthread_mutex_init(&n->lock, NULL);
      n->ok = nvml_open(&n->lib, n->why, sizeof n->why);
    }
    s->nvml = n;
  }
  pthread_mutex_unlock(&s->lock);
  return s->nvml;
}

typedef cu_result_t (*pci_bus_id_fn)(char *bus, int len, cu_device_t d);

/* NVML's handle of CUDA device d, or NULL. */
static nvml_device_t nvml_device(cuda_state_t *s, struct cuda_nvml *n, int d) {
  pthread_mutex_lock(&n->lock);
  if (n->state[d] == 0) {
    n->state[d] = -1;
    pci_bus_id_fn bus_id = NULL;
    if (s->drv.handle) *(void **)(&bus_id) = dlsym(s->drv.handle, "cuDeviceGetPCIBusId");
    char bus[NVML_PCI_BUS_ID_LEN + 16] = "";
    if (bus_id && bus_id(bus, (int)sizeof bus, s->dev[d].dev) == CU_OK &&
        n->lib.DeviceByPciBusId(bus, &n->dev[d]) == NVML_OK)
      n->state[d] = 1;
  }
  nvml_device_t h = n->state[d] > 0 ? n->dev[d] : NULL;
  pthread_mutex_unlock(&n->lock);
  return h;
}

flagos_status_t cuda_device_power(void *state, int device, flagos_power_info_t *out) {
  cuda_state_t *s = state;
  if (!s || device < 0 || device >= s->n_devices)
    return s ? CUDA_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cuda backend: no device %d (%d device(s)%s%s)", device,
                        s->n_devices, s->why_none[0] ? ": " : "", s->why_none)
             : NULL;
  memset(out, 0, sizeof(*out));
  struct cuda_nvml *n = nvml_get(s);
  nvml_device_t h = n && n->ok ? nvml_device(s, n, device) : NULL;
  if (h) {
    unsigned long long mj = 0;
    if (n->lib.TotalEnergy(h, &mj) == NVML_OK) {
      out->has_energy = 1;
      out->energy_uj = (uint64_t)mj * 1000u;
      snprintf(out->energy_source, sizeof out->energy_source, "nvml");
    }
    unsigned limit = 0, draw = 0;
    bool has_draw = n->lib.PowerUsage(h, &draw) == NVML_OK;
    if (n->lib.EnforcedPowerLimit(h, &limit) == NVML_OK && limit > 0) {
      out->declared_watts = limit / 1000.0;
      if (has_draw)
        snprintf(out->declared_source, sizeof out->declared_source, "NVML power limit (drawing %.0f W when asked)",
                 draw / 1000.0);
      else
        snprintf(out->declared_source, sizeof out->declared_source, "NVML power limit");
      return NULL;
    }
    if (has_draw && draw > 0) {
      out->declared_watts = draw / 1000.0;
      snprintf(out->declared_source, sizeof out->declared_source, "NVML power draw when asked");
      return NULL;
    }
  }
  const char *env = getenv("FLAGOS_CUDA_WATTS");
  double w = env ? strtod(env, NULL) : 0;
  if (w > 0) {
    out->declared_watts = w;
    snprintf(out->declared_source, sizeof out->declared_source, "FLAGOS_CUDA_WATTS");
  } else {
    snprintf(out->declared_source, sizeof out->declared_source, "unknown: %.54s",
             !n ? "out of memory" : !n->ok ? n->why : "NVML does not know the device");
  }
  return NULL;
}

void cuda_nvml_shutdown(cuda_state_t *s) {
  struct cuda_nvml *n = s->nvml;
  if (!n) return;
  /* nvmlInit counts its callers; the library itself stays loaded, as the driver does. */
  if (n->ok) n->lib.Shutdown();
  pthread_mutex_destroy(&n->lock);
  free(n);
  s->nvml = NULL;
}
