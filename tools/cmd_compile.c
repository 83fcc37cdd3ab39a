#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char k_help[] =
    "usage: flagos compile MODEL.onnx -o OUT.flagos [options]\n"
    "\n"
    "Compiles an ONNX model into one bundle file holding the FlagIR, the weights and\n"
    "the compiled kernels of every target.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE     bundle to write (default: MODEL with .flagos)\n"
    "  --target LIST         comma-separated targets (default: cpu)\n"
    "  --shape NAME=DxDx..   fix a symbolic input dimension; repeatable;\n"
    "                        NAME=V alone binds a named dimension everywhere\n"
    "  -O LEVEL              C compiler optimisation level (default 2)\n"
    "  --cache-dir DIR       kernel cache (default $FLAGOS_CACHE_DIR or ~/.cache/flagos)\n"
    "  -h, --help            this help\n";

int cmd_compile(int argc, char **argv) {
  const char *model = NULL, *out = NULL;
  char shapes[4096] = "", outbuf[4096];
  flagos_compile_options_t o = {0};
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
  o.shapes = shapes[0] ? shapes : NULL;
  flagos_status_t st = flagos_compile_file(model, out, &o);
  if (st) return cli_fail("compile", st);
  printf("wrote %s\n", out);
  return 0;
}
