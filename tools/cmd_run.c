#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"
#include "io/value_io.h"
#include "runtime/runtime.h"

static const char k_help[] =
    "usage: flagos run MODEL [--input NAME=FILE | --input FILE]... [options]\n"
    "\n"
    "Runs a bundle (.flagos), or an ONNX model (.onnx) compiled in memory first.\n"
    "Inputs are NumPy .npy files or serialized ONNX TensorProto .pb files\n"
    "(SequenceProto/OptionalProto .pb for sequence and optional inputs). Inputs\n"
    "given without a name are taken in the model's input order. Each output is\n"
    "written to OUTDIR/<output name>.npy (see 'flagos run' in README.md for the\n"
    "layout of dtypes NumPy lacks, sequences and optionals).\n"
    "\n"
    "options:\n"
    "  -i, --input [NAME=]FILE  an input; repeatable\n"
    "  -o, --output-dir DIR     where outputs are written (default: not written)\n"
    "  --device DEV             run on this device alone (cpu, cpu:0, opencl:0, cuda:NVIDIA ...).\n"
    "                           Default: the bundle's plan when it has one (each kernel group on\n"
    "                           the device it names, docs/sla.md), else cpu\n"
    "  --sla FILE               re-plan at run time for this SLA over the bundle's targets (a\n"
    "                           bundle compiled with --targets LIST; not with --device)\n"
    "  --runs N                 run N times and report the median time (default 1)\n"
    "  --target LIST            for .onnx models: targets to compile (default: cpu)\n"
    "  --shape NAME=DxDx..      for .onnx models: fix a symbolic input dimension\n"
    "  -h, --help               this help\n";

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int cmd_run(int argc, char **argv) {
  const char *model = NULL, *outdir = NULL, *device = NULL, *targets = NULL, *sla = NULL;
  char shapes[4096] = "";
  int runs = 1, n_in = 0;
  cli_input_arg_t *ins = calloc((size_t)argc + 1, sizeof(*ins));
  if (!ins) return 1;
  int rc = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (cli_is_help(a)) {
      fputs(k_help, stdout);
      free(ins);
      return 0;
    } else if (strcmp(a, "-i") == 0 || strncmp(a, "--input", 7) == 0) {
      if (!(v = cli_value("run", argc, argv, &i))) goto out;
      cli_parse_input_arg(v, &ins[n_in++]);
    } else if (strcmp(a, "-o") == 0 || strncmp(a, "--output-dir", 12) == 0) {
      if (!(outdir = cli_value("run", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--device", 8) == 0) {
      if (!(device = cli_value("run", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--sla", 5) == 0) {
      if (!(sla = cli_value("run", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--target", 8) == 0) {
      if (!(targets = cli_value("run", argc, argv, &i))) goto out;
    } else if (strncmp(a, "--runs", 6) == 0) {
      if (!(v = cli_value("run", argc, argv, &i))) goto out;
      runs = atoi(v);
      if (runs < 1) {
        fprintf(stderr, "flagos run: error: --runs needs a positive number\n");
        goto out;
      }
    } else if (strncmp(a, "--shape", 7) == 0) {
      if (!(v = cli_value("run", argc, argv, &i))) goto out;
      size_t l = strlen(shapes);
      snprintf(shapes + l, sizeof shapes - l, "%s%s", l ? ";" : "", v);
    } else if (a[0] == '-') {
      fprintf(stderr, "flagos run: error: unknown option '%s' (see --help)\n", a);
      goto out;
    } else if (!model) {
      model = a;
    } else {
      fprintf(stderr, "flagos run: error: unexpected argument '%s' (inputs go after --input)\n", a);
      goto out;
    }
  }
  if (!model) {
    fputs(k_help, stderr);
    goto out;
  }
  if (sla && device) {
    fprintf(stderr, "flagos run: error: --sla places the model over the bundle's targets; --device forces one device\n");
    goto out;
  }
  rc = 1;
  flagos_bundle_t *b = NULL;
  flagos_status_t st;
  if (cli_ends_with(model, ".onnx")) {
    flagos_compile_options_t o = {.targets = targets, .shapes = shapes[0] ? shapes : NULL};
    st = flagos_compile_to_bundle(model, &o, &b);
  } else {
    st = flagos_bundle_open(model, &b);
  }
  if (st) {
    rc = cli_fail("run", st);
    goto out;
  }
  fir_graph_t *g = b->model->graph;
  int ni = g->n_inputs, no = g->n_outputs;
  flagos_value_t *vin = calloc((size_t)ni + 1, sizeof(*vin)), *vout = calloc((size_t)no + 1, sizeof(*vout));
  flagos_session_t *s = NULL;
  st = vin && vout ? cli_make_inputs(b, ins, n_in, vin, NULL)
                   : flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  flagos_session_options_t so = {.device = sla ? "plan" : device};
  if (!st) st = flagos_session_create(b, &so, &s);
  if (!st && sla) {
    void *text = NULL;
    size_t len = 0;
    st = fl_read_file(sla, &text, &len);
    char *z = st ? NULL : malloc(len + 1);
    if (z) {
      memcpy(z, text, len);
      z[len] = 0;
      st = flagos_session_set_sla(s, z);
    } else if (!st) {
      st = flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    free(z);
    free(text);
    if (st) st = flagos_status_wrap(st, "%s", sla);
  }
  double *times = calloc((size_t)runs, sizeof(double));
  for (int r = 0; r < runs && !st; r++) {
    if (r > 0)
      for (int j = 0; j < no; j++) flagos_value_clear(&vout[j]);
    st = flagos_session_run(s, vin, ni, vout, no);
    if (!st) times[r] = flagos_session_last_run_ms(s);
  }
  if (!st) {
    for (int j = 0; j < no; j++) {
      const flagos_value_t *v = &vout[j];
      if (v->kind == FLAGOS_VALUE_TENSOR) {
        printf("%s: %s[", g->outputs[j]->name, flagos_dtype_name(v->tensor.dtype));
        for (int d = 0; d < v->tensor.rank; d++) printf("%s%lld", d ? "," : "", (long long)v->tensor.dims[d]);
        printf("]\n");
      } else if (v->kind == FLAGOS_VALUE_SEQUENCE) {
        printf("%s: sequence of %d %s tensors\n", g->outputs[j]->name, v->n_items, flagos_dtype_name(v->elem_dtype));
      } else {
        printf("%s: optional (%s)\n", g->outputs[j]->name, v->present ? "present" : "empty");
      }
      if (outdir && !st) st = io_save_value(outdir, g->outputs[j]->name, v);
    }
    qsort(times, (size_t)runs, sizeof(double), cmp_double);
    if (runs == 1) printf("run time: %.3f ms\n", times[0]);
    else printf("run time: median %.3f ms over %d runs (min %.3f, max %.3f)\n", times[runs / 2], runs, times[0], times[runs - 1]);
  }
  if (st) rc = cli_fail("run", st);
  else rc = 0;
  free(times);
  for (int j = 0; j < ni; j++) flagos_value_clear(&vin[j]);
  for (int j = 0; j < no; j++) flagos_value_clear(&vout[j]);
  free(vin);
  free(vout);
  flagos_session_destroy(s);
  flagos_bundle_close(b);
out:
  for (int k = 0; k < n_in; k++) free(ins[k].name);
  free(ins);
  return rc;
}
