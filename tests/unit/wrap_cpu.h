/* For tests of library calls: the cpu plugin's function table, registered in
 * the runtime, replaced by a copy whose library_call is the test's and whose
 * launch counts kernel launches (g_launches) before forwarding them. Sessions
 * made afterwards use the copy; g_real is the plugin's own table. Included by
 * one test file each, after check.h. */
#ifndef FLAGOS_TESTS_WRAP_CPU_H
#define FLAGOS_TESTS_WRAP_CPU_H
#include <stdbool.h>

#include "flagos/backend.h"
#include "runtime/runtime.h"

static const flagos_backend_t *g_real;
static flagos_backend_t g_table;
static long g_launches;

static flagos_status_t wrap_launch(void *st, flagos_bstream_t s, flagos_bkernel_t k, const flagos_launch_t *a) {
  g_launches++;
  return g_real->launch(st, s, k, a);
}

static bool wrap_cpu(flagos_status_t (*library_call)(void *, flagos_bstream_t, const flagos_libcall_t *)) {
  rt_backend_t *be = NULL;
  flagos_status_t st = rt_backend_get("cpu", &be);
  CHECK(!st && be, "the cpu plugin loads: %s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  if (!be || !be->api->library_call) return false;
  g_real = be->api;
  g_table = *g_real;
  g_table.library_call = library_call;
  g_table.launch = wrap_launch;
  be->api = &g_table;
  return true;
}

#endif
