/* Helpers shared by `flagos profile` and `flagos bench` (cli_model.c). */
#ifndef FLAGOS_CLI_MODEL_H
#define FLAGOS_CLI_MODEL_H

#include "cli.h"

typedef struct cli_input_arg {
  char *name; /* NULL: positional; else malloc'ed */
  const char *path;
} cli_input_arg_t;

/* How a made-up input is filled: one value, or uniform in [lo, hi) (integers
 * rounded down); by default [-1, 1) for floats and [0, 4) for integers. */
typedef struct cli_fill {
  bool has_value, has_range;
  double value, lo, hi;
} cli_fill_t;

/* "--input [NAME=]FILE" as cmd_run reads it. */
void cli_parse_input_arg(const char *v, cli_input_arg_t *out);
/* Opens a bundle (.flagos), or compiles in memory an ONNX model (.onnx) or
 * FlagIR text (.fir, .flagir) for `targets` with `shapes` fixed. */
flagos_status_t cli_open_model(const char *path, const char *targets, const char *shapes, flagos_bundle_t **out);
/* Compiles FlagIR text in memory. */
flagos_status_t cli_bundle_from_ir(const char *text, size_t len, const flagos_compile_options_t *o, flagos_bundle_t **out);
/* The model's inputs: the files given (by name or in order), the rest made up
 * (random, reproducible); *n_random says how many were made up. With n_random
 * NULL nothing is made up: a missing input is an error. */
flagos_status_t cli_make_inputs(flagos_bundle_t *b, const cli_input_arg_t *args, int n_args, flagos_value_t *vin,
                                int *n_random);
/* A made-up tensor; fill NULL for the default random range. */
flagos_status_t cli_fill_tensor(const char *name, flagos_dtype_t dt, int rank, const int64_t *dims, const cli_fill_t *fill,
                                uint64_t *seed, flagos_value_t *out);
double cli_median(double *v, int n);
/* Average power between two samples `seconds` apart: measured when both are
 * live energy readings, else the declared power (*estimated set). 0: unknown. */
double cli_power_watts(const flagos_device_power_t *a, const flagos_device_power_t *b, double seconds, bool *estimated);

#endif
