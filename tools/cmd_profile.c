/* flagos profile: runs a model with the runtime's profiler on, one session per
 * device, and reports per device the time, EAF (useful FLOPs / wall time),
 * achieved bandwidth, power and EAF per watt (docs/eaf.md), the slowest kernel
 * groups, and a Chrome trace (docs/profiling.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "runtime/profile.h"
#include "runtime/runtime.h"

static const char k_help[] =
    "usage: flagos profile MODEL [--input [NAME=]FILE]... [options]\n"
    "\n"
    "Runs MODEL (a .flagos bundle, or an .onnx model or .fir FlagIR text compiled in\n"
    "memory) with the profiler on and prints, per device: the median wall time of a\n"
    "run, the time inside kernels and copies, EAF (the model's useful FLOPs per run\n"
    "divided by the median wall time of a run), achieved bandwidth (bytes the nodes\n"
    "read and wrote per run over the same time), power and EAF per watt. Power is\n"
    "measured (RAPL, NVML) where the device's plugin can, otherwise it is the power\n"
    "the plugin declares, marked (estimated). Inputs not given are made up (random,\n"
    "reproducible) where their shape is fixed.\n"
    "\n"
    "options:\n"
    "  -i, --input [NAME=]FILE  an input (.npy or .pb); repeatable\n"
    "  --runs N                 profiled runs (default 10)\n"
    "  --warmup N               runs before profiling starts (default 1)\n"
    "  --trace FILE             write a Chrome trace-event JSON (chrome://tracing, ui.perfetto.dev)\n"
    "  --eaf                    print the EAF table (printed unless --trace or --json is given)\n"
    "  --json FILE              write the measurements as JSON\n"
    "  --top N                  list the N slowest kernel groups (default 10; 0: none)\n"
    "  --device LIST            devices, comma-separated (default: cpu); one session each\n"
    "  --target LIST            for .onnx/.fir models: targets to compile (default: the devices')\n"
    "  --shape NAME=DxDx..      for .onnx/.fir models: fix a symbolic input dimension\n"
    "  -h, --help               this help\n";

typedef struct dev_result {
  char device[64];
  flagos_session_t *s;
  double *ms;
  int runs;
  double median_ms, min_ms;
  flagos_profile_summary_t sum;
  double watts;
  bool estimated;
  char power_source[96];
  flagos_profile_node_t *top;
  int n_top, n_groups;
} dev_result_t;

static double safe_div(double a, double b) { return b > 0 ? a / b : 0; }

static flagos_status_t profile_device(flagos_bundle_t *b, const char *device, flagos_value_t *vin, int warmup, int runs,
                                      int top, dev_result_t *r) {
  snprintf(r->device, sizeof r->device, "%s", device);
  flagos_session_options_t so = {.device = device};
  FL_TRY(flagos_session_create(b, &so, &r->s));
  int ni = flagos_bundle_num_inputs(b), no = flagos_bundle_num_outputs(b);
  flagos_value_t *vout = calloc((size_t)no + 1, sizeof(*vout));
  r->ms = calloc((size_t)runs + 1, sizeof(double));
  if (!vout || !r->ms) {
    free(vout);
    return flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  flagos_status_t st = NULL;
  for (int i = 0; i < warmup && !st; i++) {
    st = flagos_session_run(r->s, vin, ni, vout, no);
    for (int j = 0; j < no; j++) flagos_value_clear(&vout[j]);
  }
  flagos_device_power_t p0, p1;
  if (!st) st = flagos_session_enable_profiling(r->s, true);
  if (!st) st = flagos_session_power(r->s, &p0);
  double t0 = rt_prof_now_us();
  for (int i = 0; i < runs && !st; i++) {
    st = flagos_session_run(r->s, vin, ni, vout, no);
    for (int j = 0; j < no; j++) flagos_value_clear(&vout[j]);
    if (!st) r->ms[r->runs++] = flagos_session_last_run_ms(r->s);
  }
  double secs = (rt_prof_now_us() - t0) / 1e6;
  if (!st) st = flagos_session_power(r->s, &p1);
  if (!st) st = flagos_session_enable_profiling(r->s, false);
  if (!st) st = flagos_session_profile_summary(r->s, &r->sum);
  free(vout);
  if (st) return st;
  snprintf(r->device, sizeof r->device, "%s", r->sum.device); /* "cpu:0" for "cpu" */
  r->median_ms = cli_median(r->ms, r->runs);
  r->min_ms = r->ms[0];
  for (int i = 1; i < r->runs; i++)
    if (r->ms[i] < r->min_ms) r->min_ms = r->ms[i];
  r->watts = cli_power_watts(&p0, &p1, secs, &r->estimated);
  snprintf(r->power_source, sizeof r->power_source, "%s", r->estimated ? p1.declared_source : p1.energy_source);
  r->n_groups = flagos_session_profile_nodes(r->s, NULL, 0);
  if (top > 0 && r->n_groups > 0) {
    r->top = calloc((size_t)top, sizeof(*r->top));
    int m = r->top ? flagos_session_profile_nodes(r->s, r->top, top) : 0;
    r->n_top = m < top ? m : top;
  }
  return NULL;
}

/* Per-run figures of a device (the profile sums over its runs). */
typedef struct per_run {
  double flops, bytes, kernel_ms, copy_ms, host_ms, eaf, bw, eaf_w;
} per_run_t;

static per_run_t per_run(const dev_result_t *r) {
  per_run_t p;
  double n = r->sum.runs > 0 ? r->sum.runs : 1;
  p.flops = r->sum.flops / n;
  p.bytes = r->sum.kernel_bytes / n;
  p.kernel_ms = r->sum.kernel_ms / n;
  p.copy_ms = r->sum.copy_ms / n;
  p.host_ms = r->sum.host_ms / n;
  p.eaf = safe_div(p.flops, r->median_ms / 1e3);
  p.bw = safe_div(p.bytes, r->median_ms / 1e3);
  p.eaf_w = safe_div(p.eaf, r->watts);
  return p;
}

static void print_table(const dev_result_t *r, int n) {
  printf("%-10s %5s %10s %10s %9s %9s %11s %12s %10s %16s %12s\n", "device", "runs", "median ms", "kernel ms", "copy ms",
         "host ms", "GFLOP/run", "EAF GFLOP/s", "GB/s", "power W", "GFLOP/s/W");
  for (int i = 0; i < n; i++) {
    per_run_t p = per_run(&r[i]);
    char pw[32];
    if (r[i].watts > 0) snprintf(pw, sizeof pw, "%.1f%s", r[i].watts, r[i].estimated ? " (estimated)" : "");
    else snprintf(pw, sizeof pw, "n/a");
    printf("%-10s %5d %10.3f %10.3f %9.3f %9.3f %11.4f %12.3f %10.3f %16s %12.4f\n", r[i].device, r[i].runs, r[i].median_ms,
           p.kernel_ms, p.copy_ms, p.host_ms, p.flops / 1e9, p.eaf / 1e9, p.bw / 1e9, pw, p.eaf_w / 1e9);
  }
  for (int i = 0; i < n; i++)
    printf("%s: %s; power: %s; peak device memory %.2f MiB\n", r[i].device, r[i].sum.device_name,
           r[i].power_source[0] ? r[i].power_source : "unknown", (double)r[i].sum.peak_mem_bytes / (1024.0 * 1024.0));
}

static void print_top(const dev_result_t *r) {
  if (r->n_top <= 0) return;
  printf("\n%s: slowest kernel groups (of %d), per run\n", r->device, r->n_groups);
  printf("  %-28s %-20s %-24s %10s %7s %12s\n", "group", "op", "onnx node", "ms", "%", "GFLOP/s");
  double total = r->sum.kernel_ms;
  for (int i = 0; i < r->n_top; i++) {
    const flagos_profile_node_t *g = &r->top[i];
    double runs = r->sum.runs > 0 ? r->sum.runs : 1;
    printf("  %-28.28s %-20.20s %-24.24s %10.4f %6.1f%% %12.3f\n", g->group, g->op, g->onnx_name, g->device_ms / runs,
           100.0 * safe_div(g->device_ms, total), safe_div(g->flops, g->device_ms / 1e3) / 1e9);
  }
}

static void json_esc(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static flagos_status_t write_json(const char *path, const char *model, const dev_result_t *r, int n) {
  FILE *f = fopen(path, "w");
  if (!f) return flagos_status_new(FLAGOS_ERR_IO, "cannot write %s", path);
  fprintf(f, "{\"flagos_version\":\"%s\",\"model\":", FLAGOS_VERSION_STRING);
  json_esc(f, model);
  fprintf(f, ",\"devices\":[");
  for (int i = 0; i < n; i++) {
    per_run_t p = per_run(&r[i]);
    fprintf(f, "%s\n{\"device\":", i ? "," : "");
    json_esc(f, r[i].device);
    fprintf(f, ",\"name\":");
    json_esc(f, r[i].sum.device_name);
    fprintf(f,
            ",\"runs\":%d,\"median_ms\":%.17g,\"min_ms\":%.17g,\"run_ms\":[",
            r[i].runs, r[i].median_ms, r[i].min_ms);
    for (int k = 0; k < r[i].runs; k++) fprintf(f, "%s%.17g", k ? "," : "", r[i].ms[k]);
    fprintf(f,
            "],\"kernel_ms_per_run\":%.17g,\"copy_ms_per_run\":%.17g,\"host_ms_per_run\":%.17g,"
            "\"flops_per_run\":%.17g,\"bytes_per_run\":%.17g,\"eaf_flops_per_s\":%.17g,\"bandwidth_bytes_per_s\":%.17g,"
            "\"power_w\":%.17g,\"power_estimated\":%s,\"power_source\":",
            p.kernel_ms, p.copy_ms, p.host_ms, p.flops, p.bytes, p.eaf, p.bw, r[i].watts, r[i].estimated ? "true" : "false");
    json_esc(f, r[i].power_source);
    fprintf(f, ",\"eaf_per_w\":%.17g,\"peak_memory_bytes\":%llu,\"groups\":[", p.eaf_w,
            (unsigned long long)r[i].sum.peak_mem_bytes);
    for (int k = 0; k < r[i].n_top; k++) {
      fprintf(f, "%s{\"group\":", k ? "," : "");
      json_esc(f, r[i].top[k].group);
      fprintf(f, ",\"op\":");
      json_esc(f, r[i].top[k].op);
      fprintf(f, ",\"onnx_node\":");
      json_esc(f, r[i].top[k].onnx_name);
      fprintf(f, ",\"calls\":%lld,\"device_ms\":%.17g,\"flops\":%.17g,\"bytes\":%.17g}", (long long)r[i].top[k].calls,
              r[i].top[k].device_ms, r[i].top[k].flops, r[i].top[k].bytes);
    }
    fprintf(f, "]}");
  }
  fprintf(f, "\n]}\n");
  return fclose(f) == 0 ? NULL : flagos_status_new(FLAGOS_ERR_IO, "cannot write %s", path);
}

/* The targets to compile an .onnx/.fir model for: the devices' names. */
static void targets_of(const char *devices, char *out, size_t cap) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", devices);
  out[0] = 0;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    t[strcspn(t, ":")] = 0;
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "%s%s", l ? "," : "", t);
  }
}

int cmd_profile(int argc, char **argv) {
  const char *model = NULL, *trace = NULL, *json = NULL, *devices = "cpu", *targets = NULL;
  char shapes[4096] = "";
  int runs = 10, warmup = 1, top = 10, n_in = 0;
  bool eaf = false;
  cli_input_arg_t *ins = calloc((size_t)argc + 1, sizeof(*ins));
  if (!ins) return 1;
  int rc = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (cli_is_help(a)) {
      fputs(k_help, stdout);
      rc = 0;
      goto out;
    } else if (strcmp(a, "-i") == 0 || strncmp(a, "--input", 7) == 0) {
      if (!(v = cli_value("profile", argc, argv, &i))) goto out;
      cli_parse_input_arg(v, &ins[n_in++]);
    } else if (strncmp(a, "--runs", 6) == 0 || strncmp(a, "--warmup", 8) == 0 || strncmp(a, "--top", 5) == 0) {
      if (!(v = cli_value("profile", argc, argv, &i))) goto out;
      char *end;
      long x = strtol(v, &end, 10);
      bool is_runs = strncmp(a, "--runs", 6) == 0;
      if (*end || x < (is_runs ? 1 : 0) || x > 1000000) {
        fprintf(stderr, "flagos profile: error: %.8s needs a %s number, got '%s'\n", a, is_runs ? "positive" : "non-negative", v);
        goto out;
      }
      *(is_runs ? &runs : strncmp(a, "--top", 5) == 0 ? &top : &warmup) = (int)x;
    } else if (strncmp(a, "--trace", 7) == 0) {
      if (!(trace = cli_value("profile", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--json", 6) == 0) {
      if (!(json = cli_value("profile", argc, argv, &i))) goto out;
    } else if (strcmp(a, "--eaf") == 0) {
      eaf = true;
    } else if (strncmp(a, "--device", 8) == 0) {
      if (!(devices = cli_value("profile", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--target", 8) == 0) {
      if (!(targets = cli_value("profile", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--shape", 7) == 0) {
      if (!(v = cli_value("profile", argc, argv, &i))) goto out;
      size_t l = strlen(shapes);
      snprintf(shapes + l, sizeof shapes - l, "%s%s", l ? ";" : "", v);
    } else if (a[0] == '-') {
      fprintf(stderr, "flagos profile: error: unknown option '%s' (see --help)\n", a);
      goto out;
    } else if (!model) {
      model = a;
    } else {
      fprintf(stderr, "flagos profile: error: unexpected argument '%s' (inputs go after --input)\n", a);
      goto out;
    }
  }
  if (!model) {
    fputs(k_help, stderr);
    goto out;
  }
  if (!trace && !json) eaf = true;
  char tbuf[512];
  if (!targets) {
    targets_of(devices, tbuf, sizeof tbuf);
    targets = tbuf;
  }
  rc = 1;
  flagos_bundle_t *b = NULL;
  flagos_status_t st = cli_open_model(model, targets, shapes, &b);
  if (st) {
    rc = cli_fail("profile", st);
    goto out;
  }
  int ni = flagos_bundle_num_inputs(b), n_random = 0;
  flagos_value_t *vin = calloc((size_t)ni + 1, sizeof(*vin));
  dev_result_t r[16];
  memset(r, 0, sizeof r);
  int nd = 0;
  st = vin ? cli_make_inputs(b, ins, n_in, vin, &n_random) : flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (!st && n_random) fprintf(stderr, "flagos profile: %d input(s) made up (random values)\n", n_random);
  char dbuf[512];
  snprintf(dbuf, sizeof dbuf, "%s", devices);
  for (char *save = NULL, *d = strtok_r(dbuf, ",", &save); d && !st && nd < 16; d = strtok_r(NULL, ",", &save)) {
    st = profile_device(b, d, vin, warmup, runs, top, &r[nd]);
    nd++;
  }
  if (!st && eaf) {
    print_table(r, nd);
    for (int i = 0; i < nd; i++) print_top(&r[i]);
  }
  if (!st && trace) {
    flagos_session_t *ss[16];
    for (int i = 0; i < nd; i++) ss[i] = r[i].s;
    st = flagos_profile_write_trace(trace, ss, nd);
    if (!st) fprintf(stderr, "flagos profile: trace written to %s\n", trace);
  }
  if (!st && json) st = write_json(json, model, r, nd);
  rc = st ? cli_fail("profile", st) : 0;
  for (int i = 0; i < nd; i++) {
    flagos_session_destroy(r[i].s);
    free(r[i].ms);
    free(r[i].top);
  }
  for (int j = 0; vin && j < ni; j++) flagos_value_clear(&vin[j]);
  free(vin);
  flagos_bundle_close(b);
out:
  for (int k = 0; k < n_in; k++) free(ins[k].name);
  free(ins);
  return rc;
}
