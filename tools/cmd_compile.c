#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compile_tune.h"
#include "compiler/compiler.h"
#include "frontend/onnx/onnx_import.h"

static const char k_help[] =
    "usage: flagos compile MODEL.onnx -o OUT.flagos [options]\n"
    "\n"
    "Compiles an ONNX model into one bundle file holding the FlagIR, the weights and\n"
    "the compiled kernels of every target.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE     bundle to write (default: MODEL with .flagos)\n"
    "  --target(s) LIST      comma-separated targets (default: cpu)\n"
    "  --shape NAME=DxDx..   fix a symbolic input dimension; repeatable;\n"
    "                        NAME=V alone binds a named dimension everywhere\n"
    "  -O LEVEL              C compiler optimisation level (default 2)\n"
    "  --cache-dir DIR       kernel cache (default $FLAGOS_CACHE_DIR or ~/.cache/flagos)\n"
    "  --sla FILE            place the kernel groups on the targets' devices by this SLA\n"
    "                        (docs/sla.md) and record the plan in the bundle\n"
    "  --explain             print the plan: groups, time and memory per device, copies,\n"
    "                        totals against the SLA (needs --sla)\n"
    "  --profile FILE        device profiles (default: the one `flagos devices --calibrate`\n"
    "                        saved, else documented defaults)\n"
    "  --tune                run the compiled model on device 0 of each target this machine\n"
    "                        has (made-up inputs) and plan with the measured time of each\n"
    "                        kernel group plus the measured host overhead instead of the\n"
    "                        roofline; targets without a device keep the model (a warning).\n"
    "                        The plan records that it was tuned and where; without --sla\n"
    "                        the times alone go into the bundle (section \"tune\")\n"
    "  --tune-runs N         timed runs per device for --tune (default 10, after 2 warm-up)\n"
    "  -h, --help            this help\n";

int cmd_compile(int argc, char **argv) {
  const char *model = NULL, *out = NULL;
  char shapes[4096] = "", outbuf[4096];
  flagos_compile_options_t o = {0};
  compiler_plan_options_t po = {0};
  bool explain = false, tune = false;
  int tune_runs = 10;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      fputs(k_help, stdout);
      return 0;
    } else if (strcmp(a, "-o") == 0 || strncmp(a, "--output", 8) == 0) {
      if (!(out = cli_value("compile", argc, argv, &i))) return 2;
    } else if (strncmp(a, "--target", 8) == 0) {
      if (!(o.targets = cli_value("compile", argc, argv, &i))) return 2;
    } else if (strncmp(a, "--shape", 7) == 0) {
      const char *v = cli_value("compile", argc, argv, &i);
      if (!v) return 2;
      size_t l = strlen(shapes);
      snprintf(shapes + l, sizeof shapes - l, "%s%s", l ? ";" : "", v);
    } else if (strncmp(a, "-O", 2) == 0) {
      const char *v = a[2] ? a + 2 : cli_value("compile", argc, argv, &i);
      if (!v) return 2;
      o.opt_level = v[0] - '0';
      if (o.opt_level < 0 || o.opt_level > 3 || v[1]) {
        fprintf(stderr, "flagos compile: error: -O takes 0, 1, 2 or 3\n");
        return 2;
      }
    } else if (strcmp(a, "--sla") == 0 || strncmp(a, "--sla=", 6) == 0) {
      if (!(po.sla_path = cli_value("compile", argc, argv, &i))) return 2;
    } else if (strcmp(a, "--profile") == 0 || strncmp(a, "--profile=", 10) == 0) {
      if (!(po.profile_path = cli_value("compile", argc, argv, &i))) return 2;
    } else if (strcmp(a, "--explain") == 0) {
      explain = true;
    } else if (strcmp(a, "--tune") == 0) {
      tune = true;
    } else if (strcmp(a, "--tune-runs") == 0 || strncmp(a, "--tune-runs=", 12) == 0) {
      const char *v = cli_value("compile", argc, argv, &i);
      if (!v) return 2;
      char *end;
      long x = strtol(v, &end, 10);
      if (*end || x < 1 || x > 100000) {
        fprintf(stderr, "flagos compile: error: --tune-runs needs a positive number, got '%s'\n", v);
        return 2;
      }
      tune_runs = (int)x;
      tune = true;
    } else if (strncmp(a, "--cache-dir", 11) == 0) {
      if (!(o.cache_dir = cli_value("compile", argc, argv, &i))) return 2;
    } else if (a[0] == '-') {
      fprintf(stderr, "flagos compile: error: unknown option '%s' (see --help)\n", a);
      return 2;
    } else if (!model) {
      model = a;
    } else {
      fprintf(stderr, "flagos compile: error: unexpected argument '%s'\n", a);
      return 2;
    }
  }
  if (!model) {
    fputs(k_help, stderr);
    return 2;
  }
  if (!out) {
    snprintf(outbuf, sizeof outbuf, "%s", model);
    char *dot = strrchr(outbuf, '.'), *slash = strrchr(outbuf, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
    strncat(outbuf, ".flagos", sizeof outbuf - strlen(outbuf) - 1);
    out = outbuf;
  }
  if ((explain || po.profile_path) && !po.sla_path) {
    fprintf(stderr, "flagos compile: error: --explain and --profile need --sla FILE\n");
    return 2;
  }
  o.shapes = shapes[0] ? shapes : NULL;
  flagos_status_t st = NULL;
  if (!po.sla_path && !tune) {
    st = flagos_compile_file(model, out, &o);
  } else {
    fl_buf_t text = {0};
    po.explain = explain ? &text : NULL;
    fir_model_t *m = NULL;
    void *img = NULL;
    size_t n = 0;
    st = onnx_import_file(model, &m);
    if (!tune) {
      if (!st) st = compiler_build_bundle_ex(m, &o, &po, &img, &n);
    } else {
      /* Built without a plan first: the SLA may be met only with measured times. */
      void *img0 = NULL;
      size_t n0 = 0;
      part_tune_t pt;
      memset(&pt, 0, sizeof pt);
      if (!st) st = compiler_build_bundle_ex(m, &o, NULL, &img0, &n0);
      const char *targets[8];
      int n_targets = 0;
      if (!st) st = compiler_parse_targets(o.targets, targets, 8, &n_targets);
      if (!st) st = cli_tune_measure(img0, n0, targets, n_targets, tune_runs, 2, &pt);
      po.tune = &pt;
      if (!st) st = compiler_plan_image(m->graph, img0, n0, &po, &img, &n);
      part_tune_free(&pt);
      free(img0);
    }
    if (!st) st = fl_write_file(out, img, n);
    if (!st && text.len) fwrite(text.data, 1, text.len, stdout);
    fl_buf_free(&text);
    free(img);
    if (m) fir_model_destroy(m);
  }
  if (st) return cli_fail("compile", st);
  printf("wrote %s\n", out);
  return 0;
}
