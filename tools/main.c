#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char k_usage[] =
    "usage: flagos <command> [options]\n"
    "\n"
    "FlagOS compiles ONNX models into one bundle file and runs them.\n"
    "\n"
    "commands:\n"
    "  compile      compile an ONNX model into a .flagos bundle\n"
    "  run          run a bundle (or an ONNX model, compiled in memory)\n"
    "  ir           print a model as FlagIR text, or check FlagIR text\n"
    "  devices      list backend plugins and their devices\n"
    "  conformance  run ONNX's backend node tests and compare with ONNX's outputs\n"
    "  profile      run a model with the profiler: EAF, bandwidth, power, Chrome trace\n"
    "  bench        run a benchmark suite on each target: tables and a plot of EAF and EAF/W\n"
    "  version      print the version\n"
    "\n"
    "Run 'flagos <command> --help' for a command's options.\n";

int cli_fail(const char *cmd, flagos_status_t st) {
  fprintf(stderr, "flagos %s: error: %s\n", cmd, flagos_status_message(st));
  flagos_status_free(st);
  return 1;
}

bool cli_is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

bool cli_ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
  const char *a = argv[*i], *eq = strchr(a, '=');
  if (strncmp(a, "--", 2) == 0 && eq) return eq + 1; /* --opt=value */
  if (*i + 1 >= argc) {
    fprintf(stderr, "flagos %s: error: option %s needs a value\n", cmd, a);
    return NULL;
  }
  return argv[++*i];
}

int main(int argc, char **argv) {
  if (argc < 2 || cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    fputs(k_usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *c = argv[1];
  if (strcmp(c, "compile") == 0) return cmd_compile(argc - 1, argv + 1);
  if (strcmp(c, "run") == 0) return cmd_run(argc - 1, argv + 1);
  if (strcmp(c, "ir") == 0) return cmd_ir(argc - 1, argv + 1);
  if (strcmp(c, "devices") == 0) return cmd_devices(argc - 1, argv + 1);
  if (strcmp(c, "conformance") == 0) return cmd_conformance(argc - 1, argv + 1);
  if (strcmp(c, "profile") == 0) return cmd_profile(argc - 1, argv + 1);
  if (strcmp(c, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
  if (strcmp(c, "version") == 0 || strcmp(c, "--version") == 0) {
    printf("flagos %s\n", FLAGOS_VERSION_STRING);
    return 0;
  }
  fprintf(stderr, "flagos: error: unknown command '%s' (see 'flagos --help')\n", c);
  return 2;
}
