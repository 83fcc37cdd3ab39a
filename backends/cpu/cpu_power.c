/* The host CPU's power, for EAF per watt: the RAPL package energy counters
 * (/sys/class/powercap/intel-rapl:N, also on AMD Zen) when the kernel lets this
 * process read them, kept monotonic across their wrap-around here; and a
 * declared power for when it does not — the packages' long-term power limit
 * (PL1, close to TDP) where readable, else $FLAGOS_CPU_WATTS, else a coarse
 * 4 W per online CPU, which reports mark as estimated. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_internal.h"

#define RAPL_DIR "/sys/class/powercap"

static bool read_u64(const char *dir, const char *file, uint64_t *out) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  unsigned long long v;
  bool ok = fscanf(f, "%llu", &v) == 1;
  fclose(f);
  if (ok) *out = v;
  return ok;
}

/* Package zones are intel-rapl:N (sub-zones, intel-rapl:N:M, are parts of them). */
static void rapl_discover(cpu_rapl_t *r) {
  r->discovered = true;
  DIR *d = opendir(RAPL_DIR);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) && r->n < CPU_RAPL_MAX) {
    const char *nm = e->d_name;
    if (strncmp(nm, "intel-rapl:", 11) != 0 || strchr(nm + 11, ':')) continue;
    char dir[300], name[64] = "";
    snprintf(dir, sizeof dir, RAPL_DIR "/%s", nm);
    char np[400];
    snprintf(np, sizeof np, "%s/name", dir);
    FILE *f = fopen(np, "r");
    if (f) {
      if (!fgets(name, sizeof name, f)) name[0] = 0;
      fclose(f);
    }
    if (strncmp(name, "package", 7) != 0) continue;
    snprintf(r->dir[r->n], sizeof r->dir[r->n], "%s", dir);
    r->n++;
  }
  closedir(d);
  uint64_t v;
  r->readable = r->n > 0;
  for (int i = 0; i < r->n; i++) {
    r->readable = r->readable && read_u64(r->dir[i], "energy_uj", &r->last[i]);
    if (!read_u64(r->dir[i], "max_energy_range_uj", &r->range[i])) r->range[i] = 0;
    if (read_u64(r->dir[i], "constraint_0_power_limit_uw", &v)) r->limit_uw += v;
  }
}

flagos_status_t cpu_device_power(void *state, int device, flagos_power_info_t *out) {
  cpu_state_t *s = state;
  if (device != 0) return CPU_ERR(s, FLAGOS_ERR_INVALID_ARGUMENT, "cpu backend: no device %d (it has one, device 0)", device);
  cpu_rapl_t *r = &s->rapl;
  if (!r->discovered) rapl_discover(r);
  memset(out, 0, sizeof(*out));
  if (r->readable) {
    bool ok = true;
    uint64_t cur[CPU_RAPL_MAX];
    for (int i = 0; i < r->n && ok; i++) ok = read_u64(r->dir[i], "energy_uj", &cur[i]);
    if (ok) {
      for (int i = 0; i < r->n; i++) {
        uint64_t d = cur[i] >= r->last[i] ? cur[i] - r->last[i] : cur[i] + r->range[i] - r->last[i];
        r->total_uj += d;
        r->last[i] = cur[i];
      }
      out->has_energy = 1;
      out->energy_uj = r->total_uj;
      snprintf(out->energy_source, sizeof out->energy_source, "rapl");
    }
  }
  const char *env = getenv("FLAGOS_CPU_WATTS");
  double w = env ? strtod(env, NULL) : 0;
  if (r->limit_uw > 0) {
    out->declared_watts = (double)r->limit_uw / 1e6;
    snprintf(out->declared_source, sizeof out->declared_source, "RAPL package power limit");
  } else if (w > 0) {
    out->declared_watts = w;
    snprintf(out->declared_source, sizeof out->declared_source, "FLAGOS_CPU_WATTS");
  } else {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    out->declared_watts = 4.0 * (double)(n > 0 ? n : 1);
    snprintf(out->declared_source, sizeof out->declared_source, "4 W per online CPU (a guess)");
  }
  return NULL;
}
