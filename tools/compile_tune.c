/* flagos compile --tune: measures the model's kernel groups on the devices
 * present (docs/sla.md "Tuning") the way `flagos profile` does: made-up inputs,
 * warm-up runs, then timed runs with and without the profiler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "compile_tune.h"
#include "runtime/runtime.h"

/* Whether the machine has device 0 of `target`; *why says why not. */
static bool have_device(const char *target, char *why, size_t n) {
  rt_backend_t *be = NULL;
  flagos_status_t st = rt_backend_get(target, &be);
  if (st) {
    snprintf(why, n, "%s", flagos_status_message(st));
    flagos_status_free(st);
    return false;
  }
  if (be->api->device_count(be->state) < 1) {
    snprintf(why, n, "the %s plugin finds no device", target);
    return false;
  }
  return true;
}

/* The median wall time of `runs` runs (after `warmup`) of session s. */
static flagos_status_t time_runs(flagos_session_t *s, flagos_bundle_t *b, const flagos_value_t *vin, int runs, int warmup,
                                 double *median_s) {
  int ni = flagos_bundle_num_inputs(b), no = flagos_bundle_num_outputs(b);
  flagos_value_t *vout = calloc((size_t)no + 1, sizeof(*vout));
  double *ms = calloc((size_t)runs + 1, sizeof(double));
  flagos_status_t st = vout && ms ? NULL : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < warmup + runs && !st; i++) {
    st = flagos_session_run(s, vin, ni, vout, no);
    for (int j = 0; j < no; j++) flagos_value_clear(&vout[j]);
    if (!st && i >= warmup) ms[i - warmup] = flagos_session_last_run_ms(s);
  }
  if (!st) *median_s = cli_median(ms, runs) / 1e3;
  free(ms);
  free(vout);
  return st;
}

/* The run a plan's prediction must match is a planned session: one with every
 * group on `target` (forced by an SLA that forbids the other targets) runs that
 * device's own path, captured graphs included; a split plan's nodes run through
 * src/runtime/multi.c, one launch at a time, which this does not time (the
 * per-group overhead of a split plan is taken from the one-device run). */
static flagos_status_t time_planned(flagos_bundle_t *b, const char *target, const char *const *targets, int n_targets,
                                    const flagos_value_t *vin, int runs, int warmup, double *median_s) {
  flagos_session_options_t so = {.device = "plan"};
  flagos_session_t *s = NULL;
  FL_TRY(flagos_session_create(b, &so, &s));
  char sla[512] = "{\"forbidden\": [";
  for (int t = 0, k = 0; t < n_targets; t++)
    if (strcmp(targets[t], target) != 0) {
      size_t l = strlen(sla);
      snprintf(sla + l, sizeof sla - l, "%s\"%s\"", k++ ? ", " : "", targets[t]);
    }
  strncat(sla, "]}", sizeof sla - strlen(sla) - 1);
  flagos_status_t st = flagos_session_set_sla(s, sla);
  if (!st) st = time_runs(s, b, vin, runs, warmup, median_s);
  flagos_session_destroy(s);
  return st;
}

static flagos_status_t measure_device(flagos_bundle_t *b, const char *target, const char *const *targets, int n_targets,
                                      const flagos_value_t *vin, int runs, int warmup, part_tune_t *out) {
  char device[40];
  snprintf(device, sizeof device, "%s:0", target);
  flagos_session_options_t so = {.device = device};
  flagos_session_t *s = NULL;
  FL_TRY(flagos_session_create(b, &so, &s));
  int ni = flagos_bundle_num_inputs(b), no = flagos_bundle_num_outputs(b);
  flagos_value_t *vout = calloc((size_t)no + 1, sizeof(*vout));
  flagos_profile_node_t *nodes = NULL;
  double single = 0;
  flagos_status_t st = vout ? NULL : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (!st) st = time_runs(s, b, vin, runs, warmup, &single);
  if (!st) st = flagos_session_enable_profiling(s, true);
  for (int i = 0; i < runs && !st; i++) {
    st = flagos_session_run(s, vin, ni, vout, no);
    for (int j = 0; j < no; j++) flagos_value_clear(&vout[j]);
  }
  if (!st) st = flagos_session_enable_profiling(s, false);
  flagos_profile_summary_t sum;
  if (!st) st = flagos_session_profile_summary(s, &sum);
  int n = st ? 0 : flagos_session_profile_nodes(s, NULL, 0);
  if (!st && n > 0) {
    nodes = calloc((size_t)n, sizeof(*nodes));
    if (!nodes) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    else n = flagos_session_profile_nodes(s, nodes, n);
  }
  part_tune_dev_t *d = st ? NULL : part_tune_add(out, sum.device, n);
  if (!st && !d) st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "--tune measures at most %d devices", PART_MAX_DEVICES);
  double planned = 0;
  if (!st) {
    flagos_status_t pst = time_planned(b, target, targets, n_targets, vin, runs, warmup, &planned);
    if (pst) {
      fprintf(stderr, "flagos compile: warning: --tune: a planned session on %s did not run (%s); the prediction uses "
                      "the single-device run\n", device, flagos_status_message(pst));
      flagos_status_free(pst);
      planned = 0;
    }
  }
  if (!st) {
    double r = sum.runs > 0 ? sum.runs : 1;
    d->runs = runs;
    d->warmup = warmup;
    d->single_run_s = single;
    d->run_s = planned > 0 ? planned : d->single_run_s;
    d->kernel_s = sum.kernel_ms / r / 1e3;
    d->copy_s = sum.copy_ms / r / 1e3;
    for (int k = 0; k < n; k++) {
      d->group[k] = strdup(nodes[k].group ? nodes[k].group : "");
      d->time[k] = nodes[k].device_ms / r / 1e3;
    }
    fprintf(stderr,
            "flagos compile: --tune: %s: median run %.4g ms planned, %.4g ms alone (kernels %.4g ms, copies %.4g ms), "
            "%d groups, %d runs\n",
            d->id, d->run_s * 1e3, d->single_run_s * 1e3, d->kernel_s * 1e3, d->copy_s * 1e3, n, runs);
  }
  free(nodes);
  free(vout);
  flagos_session_destroy(s);
  return st ? flagos_status_wrap(st, "--tune on %s", device) : NULL;
}

flagos_status_t cli_tune_measure(const void *image, size_t size, const char *const *targets, int n_targets, int runs,
                                 int warmup, part_tune_t *out) {
  memset(out, 0, sizeof *out);
  bundle_file_t *f = NULL;
  FL_TRY(bundle_file_from_memory((void *)image, size, false, &f));
  flagos_bundle_t *b = NULL;
  FL_TRY(rt_bundle_from_file(f, &b));
  int ni = flagos_bundle_num_inputs(b), n_random = 0;
  flagos_value_t *vin = calloc((size_t)ni + 1, sizeof(*vin));
  flagos_status_t st = vin ? cli_make_inputs(b, NULL, 0, vin, &n_random) : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (st) st = flagos_status_wrap(st, "--tune runs the model on made-up inputs");
  for (int t = 0; t < n_targets && !st; t++) {
    char why[256];
    if (!have_device(targets[t], why, sizeof why)) {
      fprintf(stderr, "flagos compile: warning: --tune: no %s device on this machine (%s); its times stay modelled (roofline)\n",
              targets[t], why);
      if (out->n_missing < PART_MAX_DEVICES) snprintf(out->missing[out->n_missing++], 32, "%s:0", targets[t]);
      continue;
    }
    st = measure_device(b, targets[t], targets, n_targets, vin, runs, warmup, out);
  }
  for (int j = 0; vin && j < ni; j++) flagos_value_clear(&vin[j]);
  free(vin);
  flagos_bundle_close(b);
  if (st) part_tune_free(out);
  return st;
}
