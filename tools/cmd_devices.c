#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "compiler/calibrate.h"
#include "partition/partition.h"
#include "runtime/runtime.h"

static const char k_help[] =
    "usage: flagos devices [--calibrate] [--target LIST] [-o FILE]\n"
    "\n"
    "Lists the backend plugins found (FLAGOS_PLUGIN_PATH, the build tree, the install\n"
    "prefix) and the devices each reports, with the saved device profile when there is\n"
    "one. A plugin whose driver is missing reports zero devices.\n"
    "\n"
    "options:\n"
    "  --calibrate       measure every device (peak FLOP/s in f32 and f16, memory\n"
    "                    bandwidth, launch overhead, host<->device copies, power) with\n"
    "                    small kernels compiled for its target, and save the profile\n"
    "                    that `flagos compile --sla` plans with (docs/sla.md)\n"
    "  --target LIST     only these comma-separated backends (default: all)\n"
    "  -o, --output FILE profile file (default $FLAGOS_CACHE_DIR/profiles.json or\n"
    "                    ~/.cache/flagos/profiles.json)\n"
    "  -h, --help        this help\n";

static bool in_list(const char *list, const char *name) {
  if (!list) return true;
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *c = strchr(p, ',');
    size_t l = c ? (size_t)(c - p) : strlen(p);
    if (l == n && strncmp(p, name, n) == 0) return true;
    if (!c) break;
    p = c + 1;
  }
  return false;
}

static void show_profile(const part_device_t *d) {
  printf("      profile: %.4g GFLOP/s f32, %.4g GFLOP/s f16, %.4g GB/s memory, launch %.3g us",
         d->flops_f32 * 1e-9, d->flops_f16 * 1e-9, d->mem_bw * 1e-9, d->launch * 1e6);
  if (!d->host_visible)
    printf(", host<->device %.3g/%.3g GB/s + %.3g us", d->h2d_bw * 1e-9, d->d2h_bw * 1e-9, d->link_latency * 1e6);
  printf(", %.4g W (%s%s)\n", d->power_active, d->power_source, d->power_measured ? "" : ", estimated");
}

int cmd_devices(int argc, char **argv) {
  bool calibrate = false;
  const char *out = NULL, *only = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      fputs(k_help, stdout);
      return 0;
    } else if (strcmp(a, "--calibrate") == 0) {
      calibrate = true;
    } else if (strcmp(a, "-o") == 0 || strncmp(a, "--output", 8) == 0) {
      if (!(out = cli_value("devices", argc, argv, &i))) return 2;
    } else if (strncmp(a, "--target", 8) == 0) {
      if (!(only = cli_value("devices", argc, argv, &i))) return 2;
    } else if (a[0] == '-') {
      fprintf(stderr, "flagos devices: error: unknown option '%s' (see --help)\n", a);
      return 2;
    } else {
      fprintf(stderr, "flagos devices: error: unexpected argument '%s'\n", a);
      return 2;
    }
  }
  char path[4096];
  if (out) snprintf(path, sizeof path, "%s", out);
  else part_profile_default_path(path, sizeof path);
  part_profile_t *prof = calloc(2, sizeof *prof);
  if (!prof) return 1;
  part_profile_t *fresh = prof + 1;
  flagos_status_t st = part_profile_load(path, prof);
  bool have_prof = st == NULL;
  if (st && (calibrate || flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND)) {
    flagos_status_free(st); /* an unreadable old profile is replaced by calibration */
  } else if (st) {
    fprintf(stderr, "flagos devices: warning: %s\n", flagos_status_message(st));
    flagos_status_free(st);
  }
  if (!have_prof) memset(prof, 0, sizeof *prof);

  const char *names[16];
  int n = rt_backend_list(names, 16), failed = 0;
  if (n == 0) {
    fprintf(stderr, "flagos devices: no backend plugins found (set FLAGOS_PLUGIN_PATH)\n");
    free(prof);
    return 1;
  }
  for (int i = 0; i < n; i++) {
    if (!in_list(only, names[i])) continue;
    rt_backend_t *be;
    st = rt_backend_get(names[i], &be);
    if (st) {
      printf("%-8s  error: %s\n", names[i], flagos_status_message(st));
      flagos_status_free(st);
      continue;
    }
    int nd = be->api->device_count(be->state);
    printf("%s (plugin %s, code %s): %d device(s)\n", names[i], be->api->version, be->api->code_format, nd);
    for (int d = 0; d < nd; d++) {
      flagos_device_info_t di;
      memset(&di, 0, sizeof di);
      st = be->api->device_info(be->state, d, &di);
      if (st) {
        printf("  %s:%d  error: %s\n", names[i], d, flagos_status_message(st));
        flagos_status_free(st);
        continue;
      }
      printf("  %s:%d  %s (%s), %d compute units, %.1f GiB\n", names[i], d, di.name, di.vendor, di.compute_units,
             (double)di.memory_bytes / (1024.0 * 1024 * 1024));
      fflush(stdout);
      if (calibrate && fresh->n_devices < PART_PROFILE_MAX) {
        fl_buf_t log = {0};
        part_device_t *pd = &fresh->dev[fresh->n_devices];
        st = compiler_calibrate_device(names[i], d, NULL, pd, &log);
        if (log.len) fputs(log.data, stdout);
        fl_buf_free(&log);
        if (st) {
          fprintf(stderr, "flagos devices: error: %s\n", flagos_status_message(st));
          flagos_status_free(st);
          failed++;
        } else {
          fresh->n_devices++;
        }
      } else if (!calibrate) {
        const part_device_t *pd = part_profile_find(prof, names[i], d);
        if (pd) show_profile(pd);
      }
    }
  }
  int rc = 0;
  if (calibrate) {
    /* Devices not measured this time keep their old entries. */
    for (int i = 0; i < prof->n_devices && fresh->n_devices < PART_PROFILE_MAX; i++)
      if (!part_profile_find(fresh, prof->dev[i].target, prof->dev[i].index)) fresh->dev[fresh->n_devices++] = prof->dev[i];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(fresh->date, sizeof fresh->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(fresh->flagos_version, sizeof fresh->flagos_version, "%s", FLAGOS_VERSION_STRING);
    st = part_profile_save(path, fresh);
    if (st) rc = cli_fail("devices", st);
    else printf("saved the profile of %d device(s) to %s\n", fresh->n_devices, path);
    if (!rc && failed) rc = 1;
  } else if (have_prof) {
    printf("profile: %s (calibrated %s, flagos %s)\n", path, prof->date, prof->flagos_version);
  }
  free(prof);
  return rc;
}
