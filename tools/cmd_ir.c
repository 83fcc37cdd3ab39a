#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "frontend/onnx/onnx_import.h"
#include "ir/ir.h"
#include "passes/passes.h"

static const char k_help[] =
    "usage: flagos ir MODEL [options]\n"
    "\n"
    "MODEL.onnx: imports the model and prints it as FlagIR text.\n"
    "Any other file: parses it as FlagIR text, verifies it and prints it back\n"
    "(the printed text is byte-identical to a printer's output; see docs/flagir.md).\n"
    "\n"
    "options:\n"
    "  -o, --output FILE   write the text to FILE instead of standard output\n"
    "  --passes            run the compiler's passes (constants, shape inference,\n"
    "                      folding, dead-code elimination) before printing\n"
    "  --shape NAME=DxD..  with --passes: fix a symbolic input dimension\n"
    "  -h, --help          this help\n";

int cmd_ir(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *shape = NULL;
  bool passes = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      fputs(k_help, stdout);
      return 0;
    } else if (strcmp(a, "-o") == 0 || strncmp(a, "--output", 8) == 0) {
      if (!(out = cli_value("ir", argc, argv, &i))) return 2;
    } else if (strcmp(a, "--passes") == 0) {
      passes = true;
    } else if (strncmp(a, "--shape", 7) == 0) {
      if (!(shape = cli_value("ir", argc, argv, &i))) return 2;
    } else if (a[0] == '-') {
      fprintf(stderr, "flagos ir: error: unknown option '%s' (see --help)\n", a);
      return 2;
    } else if (!model) {
      model = a;
    } else {
      fprintf(stderr, "flagos ir: error: unexpected argument '%s'\n", a);
      return 2;
    }
  }
  if (!model) {
    fputs(k_help, stderr);
    return 2;
  }
  fir_model_t *m = NULL;
  flagos_status_t st;
  if (cli_ends_with(model, ".onnx")) {
    st = onnx_import_file(model, &m);
  } else {
    void *data;
    size_t n;
    st = fl_read_file(model, &data, &n);
    if (!st) {
      st = fir_parse(data, n, &m);
      if (st) st = flagos_status_wrap(st, "%s", model);
      free(data);
    }
  }
  if (!st) st = fir_verify(m);
  if (!st && passes) st = pass_run_default(m, shape);
  if (st) {
    fir_model_destroy(m);
    return cli_fail("ir", st);
  }
  fl_buf_t b = {0};
  fir_print(&b, m, true);
  fir_model_destroy(m);
  if (out) st = fl_write_file(out, b.data, b.len);
  else fwrite(b.data, 1, b.len, stdout);
  fl_buf_free(&b);
  return st ? cli_fail("ir", st) : 0;
}
