/* flagos bench: the benchmark engine. A suite (JSON; bench/README.md) lists
 * operators with input types and attributes, and small models; each case is
 * compiled once for every selected target and run on each target's first
 * device, repeated until the median of its wall times settles (or a run or
 * time limit is reached). FLOPs and bytes per run come from one profiled run,
 * so the timed runs pay nothing for the profiler. */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "cli_model.h"
#include "runtime/profile.h"
#include "runtime/runtime.h"

static const char k_help[] =
    "usage: flagos bench [SUITE.json] [options]\n"
    "\n"
    "Runs a benchmark suite (default: bench/suites/default.json) on each target and\n"
    "writes DIR/bench.json, DIR/bench.md (median, spread, EAF, EAF/W, bandwidth per\n"
    "case and target) and DIR/bench.svg (EAF and EAF/W per case, one bar per target).\n"
    "Each case runs until the median of its wall times changes by less than 1% over\n"
    "5 further runs, or a run or time limit is reached. The table is also printed.\n"
    "\n"
    "options:\n"
    "  --targets LIST        comma-separated targets (default: every target whose\n"
    "                        backend finds a device)\n"
    "  -o, --out DIR         output folder (default: bench-results)\n"
    "  --short               CI mode: cases not marked \"short\": false, few runs\n"
    "  --filter TEXT         only cases whose name contains TEXT; repeatable\n"
    "  --compare OLD.json    mark cases slower than in OLD.json (see --threshold)\n"
    "  --threshold PCT       regression threshold in percent (default 10; the two\n"
    "                        results' spreads are used when larger)\n"
    "  --fail-on-regression  exit with status 3 when a case regressed\n"
    "  --min-runs N, --max-runs N, --max-seconds S   repetition limits per case and target\n"
    "  -h, --help            this help\n";

typedef struct bench_opts {
  int min_runs, max_runs;
  double max_seconds;
  bool short_mode;
} bench_opts_t;

/* ---- building a case's model ---- */
static void attr_value(fl_buf_t *b, const cJSON *v) {
  if (cJSON_IsString(v) && v->valuestring[0] == '=') { /* raw FlagIR, e.g. "=1.0" for a float that looks whole */
    fl_buf_puts(b, v->valuestring + 1);
  } else if (cJSON_IsString(v)) {
    fl_buf_putc(b, '"');
    for (const char *c = v->valuestring; *c; c++) {
      if (*c == '"' || *c == '\\') fl_buf_putc(b, '\\');
      fl_buf_putc(b, *c);
    }
    fl_buf_putc(b, '"');
  } else if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    if (d == (double)(int64_t)d) fl_buf_printf(b, "%lld", (long long)d);
    else fl_buf_printf(b, "%.17g", d);
  } else if (cJSON_IsArray(v)) {
    fl_buf_putc(b, '[');
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, v) {
      if (i++) fl_buf_puts(b, ", ");
      attr_value(b, e);
    }
    fl_buf_putc(b, ']');
  }
}

/* An input spec: "f32[512,512]" or {"type": "i64[4]", "value": 1} / {"type": ..., "range": [lo, hi]}. */
static const char *input_type(const cJSON *in) {
  if (cJSON_IsString(in)) return in->valuestring;
  const cJSON *t = cJSON_GetObjectItem(in, "type");
  return cJSON_IsString(t) ? t->valuestring : NULL;
}

static void input_fill(const cJSON *in, cli_fill_t *f) {
  memset(f, 0, sizeof(*f));
  const cJSON *v = cJSON_GetObjectItem(in, "value"), *r = cJSON_GetObjectItem(in, "range");
  if (cJSON_IsNumber(v)) {
    f->has_value = true;
    f->value = v->valuedouble;
  }
  if (cJSON_IsArray(r) && cJSON_GetArraySize(r) == 2) {
    f->has_range = true;
    f->lo = cJSON_GetArrayItem(r, 0)->valuedouble;
    f->hi = cJSON_GetArrayItem(r, 1)->valuedouble;
  }
}

/* The FlagIR text of a one-operator model: inputs in0..inN-1, outputs out0..; an
 * input given as null is an omitted optional input. */
static flagos_status_t op_ir(const cJSON *c, fl_buf_t *b, char *what, size_t what_cap) {
  const cJSON *op = cJSON_GetObjectItem(c, "op"), *ins = cJSON_GetObjectItem(c, "inputs");
  const cJSON *dom = cJSON_GetObjectItem(c, "domain"), *ops = cJSON_GetObjectItem(c, "opset");
  const cJSON *attrs = cJSON_GetObjectItem(c, "attrs"), *nout = cJSON_GetObjectItem(c, "outputs");
  if (!cJSON_IsString(op) || !cJSON_IsArray(ins)) return flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "needs \"op\" and \"inputs\"");
  const char *domain = cJSON_IsString(dom) ? dom->valuestring : "";
  int opset = cJSON_IsNumber(ops) ? ops->valueint : 21, n_out = cJSON_IsNumber(nout) ? nout->valueint : 1;
  fl_buf_printf(b, "flagir 1\nir_version 10\nopset \"\" %d\n", domain[0] ? 21 : opset);
  if (domain[0]) fl_buf_printf(b, "opset \"%s\" %d\n", domain, opset);
  fl_buf_puts(b, "graph \"bench\" (");
  size_t wl = (size_t)snprintf(what, what_cap, "%s(", op->valuestring);
  int k = 0, n_decl = 0;
  const cJSON *in;
  cJSON_ArrayForEach(in, ins) {
    const char *t = cJSON_IsNull(in) ? NULL : input_type(in);
    if (!cJSON_IsNull(in) && !t) return flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "input %d has no type", k);
    if (t) fl_buf_printf(b, "%s%%in%d: %s", n_decl++ ? ", " : "", k, t);
    if (wl < what_cap) wl += (size_t)snprintf(what + wl, what_cap - wl, "%s%s", k ? ", " : "", t ? t : "_");
    k++;
  }
  if (wl < what_cap) snprintf(what + wl, what_cap - wl, ")");
  fl_buf_puts(b, ") -> (");
  for (int o = 0; o < n_out; o++) fl_buf_printf(b, "%s%%out%d", o ? ", " : "", o);
  fl_buf_puts(b, ") {\n  ");
  for (int o = 0; o < n_out; o++) fl_buf_printf(b, "%s%%out%d", o ? ", " : "", o);
  fl_buf_printf(b, " = %s%s%s \"op\" (", domain, domain[0] ? "::" : "", op->valuestring);
  k = 0;
  cJSON_ArrayForEach(in, ins) {
    if (cJSON_IsNull(in)) fl_buf_printf(b, "%s_", k ? ", " : "");
    else fl_buf_printf(b, "%s%%in%d", k ? ", " : "", k);
    k++;
  }
  fl_buf_putc(b, ')');
  if (cJSON_IsObject(attrs) && cJSON_GetArraySize(attrs) > 0) {
    fl_buf_puts(b, " {");
    const cJSON *a;
    int i = 0;
    cJSON_ArrayForEach(a, attrs) {
      fl_buf_printf(b, "%s%s = ", i++ ? ", " : "", a->string);
      attr_value(b, a);
    }
    fl_buf_putc(b, '}');
  }
  fl_buf_puts(b, "\n}\n");
  return NULL;
}

static void rel_path(const char *suite_dir, const char *p, char *out, size_t cap) {
  if (p[0] == '/') snprintf(out, cap, "%s", p);
  else snprintf(out, cap, "%s/%s", suite_dir, p);
}

static flagos_status_t case_bundle(const cJSON *c, const char *suite_dir, const char *targets, flagos_bundle_t **b,
                                   bench_result_t *proto) {
  const cJSON *model = cJSON_GetObjectItem(c, "model"), *ir = cJSON_GetObjectItem(c, "ir");
  const cJSON *shapes = cJSON_GetObjectItem(c, "shapes");
  const char *sh = cJSON_IsString(shapes) ? shapes->valuestring : NULL;
  char path[4096];
  if (cJSON_IsString(model) || cJSON_IsString(ir)) {
    const char *p = cJSON_IsString(model) ? model->valuestring : ir->valuestring;
    snprintf(proto->kind, sizeof proto->kind, "model");
    snprintf(proto->what, sizeof proto->what, "%s%s%s", p, sh ? " " : "", sh ? sh : "");
    rel_path(suite_dir, p, path, sizeof path);
    return cli_open_model(path, targets, sh, b);
  }
  snprintf(proto->kind, sizeof proto->kind, "op");
  fl_buf_t text = {0};
  flagos_status_t st = op_ir(c, &text, proto->what, sizeof proto->what);
  flagos_compile_options_t o = {.targets = targets, .shapes = sh};
  if (!st) st = cli_bundle_from_ir(text.data, text.len, &o, b);
  fl_buf_free(&text);
  return st;
}

/* Inputs: the case's fills for one-operator cases, random otherwise. */
static flagos_status_t case_inputs(const cJSON *c, flagos_bundle_t *b, flagos_value_t *vin) {
  const cJSON *ins = cJSON_GetObjectItem(c, "inputs");
  if (cJSON_GetObjectItem(c, "op") && cJSON_IsArray(ins)) {
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    fir_graph_t *g = b->model->graph;
    const cJSON *in;
    int j = 0;
    cJSON_ArrayForEach(in, ins) {
      if (cJSON_IsNull(in)) continue;
      if (j >= g->n_inputs) break;
      const fir_type_t *t = g->inputs[j]->type;
      int64_t dims[FLAGOS_MAX_RANK];
      for (int i = 0; i < t->rank && i < FLAGOS_MAX_RANK; i++) dims[i] = t->dims[i].value;
      cli_fill_t fill;
      input_fill(in, &fill);
      FL_TRY(cli_fill_tensor(g->inputs[j]->name, t->dtype, t->rank, dims, &fill, &seed, &vin[j]));
      j++;
    }
    return NULL;
  }
  int n_random;
  return cli_make_inputs(b, NULL, 0, vin, &n_random);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double q) {
  double pos = q * (n - 1);
  int i = (int)pos;
  return i + 1 < n ? sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]) : sorted[n - 1];
}

/* Runs one case on one target's device 0. */
static flagos_status_t measure(flagos_bundle_t *b, const cJSON *c, const bench_opts_t *o, bench_result_t *r) {
  snprintf(r->device, sizeof r->device, "%s:0", r->target);
  flagos_session_options_t so = {.device = r->device};
  flagos_session_t *s = NULL;
  FL_TRY(flagos_session_create(b, &so, &s));
  int ni = flagos_bundle_num_inputs(b), no = flagos_bundle_num_outputs(b);
  flagos_value_t *vin = calloc((size_t)ni + 1, sizeof(*vin)), *vout = calloc((size_t)no + 1, sizeof(*vout));
  double *ms = calloc((size_t)o->max_runs + 1, sizeof(double));
  flagos_status_t st = vin && vout && ms ? case_inputs(c, b, vin) : flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
#define RUN_ONCE()                                                                                                     \
  do {                                                                                                                 \
    st = flagos_session_run(s, vin, ni, vout, no);                                                                     \
    for (int j = 0; j < no; j++) flagos_value_clear(&vout[j]);                                                         \
  } while (0)
  if (!st) RUN_ONCE(); /* warm-up: first-touch memory, thread pools */
  /* one profiled run for the FLOPs and bytes */
  if (!st) st = flagos_session_enable_profiling(s, true);
  if (!st) RUN_ONCE();
  flagos_profile_summary_t sum;
  memset(&sum, 0, sizeof sum);
  if (!st) st = flagos_session_enable_profiling(s, false);
  if (!st) st = flagos_session_profile_summary(s, &sum);
  if (!st) {
    snprintf(r->device_name, sizeof r->device_name, "%s", sum.device_name);
    r->flops = sum.flops;
    r->bytes = sum.kernel_bytes;
  }
  flagos_device_power_t p0, p1;
  if (!st) st = flagos_session_power(s, &p0);
  double t0 = rt_prof_now_us(), prev = -1;
  int settled = 0;
  while (!st && r->runs < o->max_runs) {
    RUN_ONCE();
    if (st) break;
    ms[r->runs++] = flagos_session_last_run_ms(s);
    double m = cli_median(ms, r->runs);
    settled = prev > 0 && m > 0 && (m > prev ? m - prev : prev - m) < 0.01 * m ? settled + 1 : 0;
    prev = m;
    if (r->runs >= o->min_runs && settled >= 5) {
      r->stable = true;
      break;
    }
    if (r->runs >= o->min_runs && (rt_prof_now_us() - t0) / 1e6 > o->max_seconds) break;
  }
#undef RUN_ONCE
  double secs = (rt_prof_now_us() - t0) / 1e6;
  if (!st) st = flagos_session_power(s, &p1);
  if (!st && r->runs > 0) {
    qsort(ms, (size_t)r->runs, sizeof(double), cmp_d);
    r->median_ms = cli_median(ms, r->runs);
    r->min_ms = ms[0];
    r->p10_ms = pct(ms, r->runs, 0.1);
    r->p90_ms = pct(ms, r->runs, 0.9);
    r->spread_pct = r->median_ms > 0 ? 100.0 * (r->p90_ms - r->p10_ms) / (2.0 * r->median_ms) : 0;
    r->eaf = r->median_ms > 0 ? r->flops / (r->median_ms / 1e3) : 0;
    r->bw = r->median_ms > 0 ? r->bytes / (r->median_ms / 1e3) : 0;
    r->watts = cli_power_watts(&p0, &p1, secs, &r->power_estimated);
    snprintf(r->power_source, sizeof r->power_source, "%s", r->power_estimated ? p1.declared_source : p1.energy_source);
    r->eaf_per_w = r->watts > 0 ? r->eaf / r->watts : 0;
  }
  for (int j = 0; vin && j < ni; j++) flagos_value_clear(&vin[j]);
  free(vin);
  free(vout);
  free(ms);
  flagos_session_destroy(s);
  return st;
}

/* Targets the compiler knows whose backend plugin finds at least one device. */
static void default_targets(char *out, size_t cap) {
  static const char *const k_all[] = {"cpu", "cuda", "opencl"};
  out[0] = 0;
  for (size_t i = 0; i < sizeof k_all / sizeof k_all[0]; i++) {
    rt_backend_t *be;
    flagos_status_t st = rt_backend_get(k_all[i], &be);
    if (st) {
      flagos_status_free(st);
      continue;
    }
    if (be->api->device_count(be->state) < 1) continue;
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "%s%s", l ? "," : "", k_all[i]);
  }
  if (!out[0]) snprintf(out, cap, "cpu");
}

static const char *default_suite(char *buf, size_t cap) {
  struct stat sb;
#ifdef FLAGOS_BENCH_DIR
  snprintf(buf, cap, "%s/suites/default.json", FLAGOS_BENCH_DIR);
  if (stat(buf, &sb) == 0) return buf;
#endif
  snprintf(buf, cap, "bench/suites/default.json");
  return buf;
}

static bool name_matches(const char *name, char **filters, int n) {
  for (int i = 0; i < n; i++)
    if (strstr(name, filters[i])) return true;
  return n == 0;
}

static int parse_int(const char *v, int lo, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*end || x < lo || x > 100000000) return 0;
  *out = (int)x;
  return 1;
}

int cmd_bench(int argc, char **argv) {
  const char *suite = NULL, *outdir = "bench-results", *targets = NULL, *compare = NULL;
  bench_opts_t o = {0, 0, 0, false};
  double threshold = 10;
  bool fail_on_reg = false;
  int n_filters = 0;
  char **filters = calloc((size_t)argc + 1, sizeof(char *));
  if (!filters) return 1;
  int rc = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (cli_is_help(a)) {
      fputs(k_help, stdout);
      free(filters);
      return 0;
    } else if (strncmp(a, "--targets", 9) == 0) {
      if (!(targets = cli_value("bench", argc, argv, &i))) goto out;
    } else if (strcmp(a, "-o") == 0 || strncmp(a, "--out", 5) == 0) {
      if (!(outdir = cli_value("bench", argc, argv, &i))) goto out;
    } else if (strcmp(a, "--short") == 0) {
      o.short_mode = true;
    } else if (strcmp(a, "--fail-on-regression") == 0) {
      fail_on_reg = true;
    } else if (strncmp(a, "--filter", 8) == 0) {
      if (!(v = cli_value("bench", argc, argv, &i))) goto out;
      filters[n_filters++] = (char *)v;
    } else if (strncmp(a, "--compare", 9) == 0) {
      if (!(compare = cli_value("bench", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--threshold", 11) == 0 || strncmp(a, "--max-seconds", 13) == 0) {
      if (!(v = cli_value("bench", argc, argv, &i))) goto out;
      char *end;
      double x = strtod(v, &end);
      if (*end || !(x > 0)) {
        fprintf(stderr, "flagos bench: error: %s needs a positive number, got '%s'\n", a, v);
        goto out;
      }
      *(a[2] == 't' ? &threshold : &o.max_seconds) = x;
    } else if (strncmp(a, "--min-runs", 10) == 0 || strncmp(a, "--max-runs", 10) == 0) {
      if (!(v = cli_value("bench", argc, argv, &i))) goto out;
      if (!parse_int(v, 1, strncmp(a, "--min", 5) == 0 ? &o.min_runs : &o.max_runs)) {
        fprintf(stderr, "flagos bench: error: %.10s needs a positive number, got '%s'\n", a, v);
        goto out;
      }
    } else if (a[0] == '-') {
      fprintf(stderr, "flagos bench: error: unknown option '%s' (see --help)\n", a);
      goto out;
    } else if (!suite) {
      suite = a;
    } else {
      fprintf(stderr, "flagos bench: error: unexpected argument '%s'\n", a);
      goto out;
    }
  }
  if (!o.min_runs) o.min_runs = o.short_mode ? 3 : 10;
  if (!o.max_runs) o.max_runs = o.short_mode ? 20 : 500;
  if (!o.max_seconds) o.max_seconds = o.short_mode ? 0.25 : 3.0;
  if (o.max_runs < o.min_runs) o.max_runs = o.min_runs;
  char sbuf[4096], tbuf[256];
  if (!suite) suite = default_suite(sbuf, sizeof sbuf);
  if (!targets) {
    default_targets(tbuf, sizeof tbuf);
    targets = tbuf;
  }
  rc = 1;
  void *text = NULL;
  size_t len = 0;
  flagos_status_t st = fl_read_file(suite, &text, &len);
  cJSON *root = st ? NULL : cJSON_ParseWithLength(text, len);
  free(text);
  if (!st && !root) st = flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "%s: not valid JSON", suite);
  const cJSON *cases = root ? cJSON_GetObjectItem(root, "cases") : NULL;
  if (!st && !cJSON_IsArray(cases)) st = flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "%s: no \"cases\" array", suite);
  if (!st) st = fl_mkdirs(outdir);
  if (st) {
    cJSON_Delete(root);
    rc = cli_fail("bench", st);
    goto out;
  }
  char dir_buf[4096];
  snprintf(dir_buf, sizeof dir_buf, "%s", suite);
  const char *suite_dir = dirname(dir_buf);
  const char *tlist[8];
  int nt = 0;
  char tcopy[256];
  snprintf(tcopy, sizeof tcopy, "%s", targets);
  for (char *save = NULL, *t = strtok_r(tcopy, ",", &save); t && nt < 8; t = strtok_r(NULL, ",", &save)) tlist[nt++] = t;
  bench_report_t rep = {suite, o.short_mode, threshold, calloc((size_t)cJSON_GetArraySize(cases) * (size_t)nt + 1,
                                                                 sizeof(bench_result_t)), 0};
  const cJSON *c;
  int n_failed = 0;
  cJSON_ArrayForEach(c, cases) {
    const cJSON *nm = cJSON_GetObjectItem(c, "name");
    const char *name = cJSON_IsString(nm) ? nm->valuestring : "?";
    if (!name_matches(name, filters, n_filters)) continue;
    if (o.short_mode && cJSON_IsFalse(cJSON_GetObjectItem(c, "short"))) continue;
    bench_result_t proto;
    memset(&proto, 0, sizeof proto);
    snprintf(proto.case_name, sizeof proto.case_name, "%s", name);
    flagos_bundle_t *b = NULL;
    flagos_status_t cs = case_bundle(c, suite_dir, targets, &b, &proto);
    for (int t = 0; t < nt; t++) {
      bench_result_t *r = &rep.r[rep.n++];
      *r = proto;
      snprintf(r->target, sizeof r->target, "%s", tlist[t]);
      flagos_status_t ms = cs ? NULL : measure(b, c, &o, r);
      if (cs || ms) {
        snprintf(r->error, sizeof r->error, "%s", flagos_status_message(cs ? cs : ms));
        fprintf(stderr, "flagos bench: %s on %s: %s\n", name, r->target, r->error);
        n_failed++;
      } else {
        fprintf(stderr, "flagos bench: %-24s %-7s %10.4f ms  %9.3f GFLOP/s  (%d runs%s)\n", name, r->target, r->median_ms,
                r->eaf / 1e9, r->runs, r->stable ? "" : ", not settled");
      }
      flagos_status_free(ms);
    }
    flagos_status_free(cs);
    flagos_bundle_close(b);
  }
  cJSON_Delete(root);
  int n_reg = 0;
  char path[4096];
  if (compare) st = bench_compare(compare, &rep, &n_reg);
  snprintf(path, sizeof path, "%s/bench.json", outdir);
  if (!st) st = bench_write_json(path, &rep);
  snprintf(path, sizeof path, "%s/bench.md", outdir);
  if (!st) st = bench_write_markdown(path, &rep, stdout);
  snprintf(path, sizeof path, "%s/bench.svg", outdir);
  if (!st) st = bench_write_svg(path, &rep);
  free(rep.r);
  if (st) {
    rc = cli_fail("bench", st);
    goto out;
  }
  fprintf(stderr, "flagos bench: results in %s/bench.{json,md,svg}%s\n", outdir, n_failed ? " (some cases failed)" : "");
  if (n_reg) fprintf(stderr, "flagos bench: %d regression(s) against %s\n", n_reg, compare);
  rc = n_failed ? 1 : fail_on_reg && n_reg ? 3 : 0;
out:
  free(filters);
  return rc;
}
