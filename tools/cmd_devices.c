#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "runtime/runtime.h"

static const char k_help[] =
    "usage: flagos devices\n"
    "\n"
    "Lists the backend plugins found (FLAGOS_PLUGIN_PATH, the build tree, the install\n"
    "prefix) and the devices each reports. A plugin whose driver is missing reports\n"
    "zero devices.\n";

int cmd_devices(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(k_help, stdout);
      return 0;
    }
    fprintf(stderr, "flagos devices: error: unexpected argument '%s'\n", argv[i]);
    return 2;
  }
  const char *names[16];
  int n = rt_backend_list(names, 16);
  if (n == 0) {
    fprintf(stderr, "flagos devices: no backend plugins found (set FLAGOS_PLUGIN_PATH)\n");
    return 1;
  }
  for (int i = 0; i < n; i++) {
    rt_backend_t *be;
    flagos_status_t st = rt_backend_get(names[i], &be);
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
    }
  }
  return 0;
}
