/* Shared by `profile` and `bench`: opening a model of any kind the command line
 * takes, and making its inputs (from files, or random where none is given). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/bundle.h"
#include "cli_model.h"
#include "compiler/compiler.h"
#include "io/value_io.h"
#include "runtime/runtime.h"

flagos_status_t cli_bundle_from_ir(const char *text, size_t len, const flagos_compile_options_t *o, flagos_bundle_t **out) {
  fir_model_t *m;
  FL_TRY(fir_parse(text, len, &m));
  void *img = NULL;
  size_t n = 0;
  flagos_status_t st = compiler_build_bundle(m, o, &img, &n);
  fir_model_destroy(m);
  if (st) return st;
  bundle_file_t *f;
  st = bundle_file_from_memory(img, n, true, &f);
  if (st) {
    free(img);
    return st;
  }
  return rt_bundle_from_file(f, out);
}

flagos_status_t cli_open_model(const char *path, const char *targets, const char *shapes, flagos_bundle_t **out) {
  flagos_compile_options_t o = {.targets = targets, .shapes = shapes && shapes[0] ? shapes : NULL};
  if (cli_ends_with(path, ".onnx")) return flagos_compile_to_bundle(path, &o, out);
  if (cli_ends_with(path, ".fir") || cli_ends_with(path, ".flagir")) {
    void *text;
    size_t len;
    FL_TRY(fl_read_file(path, &text, &len));
    flagos_status_t st = cli_bundle_from_ir(text, len, &o, out);
    free(text);
    return st ? flagos_status_wrap(st, "%s", path) : NULL;
  }
  return flagos_bundle_open(path, out);
}

/* xorshift64*: inputs that are the same from run to run and machine to machine. */
static double next_unit(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static bool store(flagos_dtype_t dt, void *data, int64_t i, double v) {
  switch (dt) {
  case FLAGOS_FLOAT32: ((float *)data)[i] = (float)v; return true;
  case FLAGOS_FLOAT64: ((double *)data)[i] = v; return true;
  case FLAGOS_FLOAT16: ((uint16_t *)data)[i] = fl_f32_to_f16((float)v); return true;
  case FLAGOS_BFLOAT16: ((uint16_t *)data)[i] = fl_f32_to_bf16((float)v); return true;
  case FLAGOS_INT8: ((int8_t *)data)[i] = (int8_t)v; return true;
  case FLAGOS_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; return true;
  case FLAGOS_INT16: ((int16_t *)data)[i] = (int16_t)v; return true;
  case FLAGOS_UINT16: ((uint16_t *)data)[i] = (uint16_t)v; return true;
  case FLAGOS_INT32: ((int32_t *)data)[i] = (int32_t)v; return true;
  case FLAGOS_UINT32: ((uint32_t *)data)[i] = (uint32_t)v; return true;
  case FLAGOS_INT64: ((int64_t *)data)[i] = (int64_t)v; return true;
  case FLAGOS_UINT64: ((uint64_t *)data)[i] = (uint64_t)v; return true;
  case FLAGOS_BOOL: ((uint8_t *)data)[i] = v != 0; return true;
  default: return false;
  }
}

flagos_status_t cli_fill_tensor(const char *name, flagos_dtype_t dt, int rank, const int64_t *dims, const cli_fill_t *fill,
                                uint64_t *seed, flagos_value_t *out) {
  memset(out, 0, sizeof(*out));
  out->kind = FLAGOS_VALUE_TENSOR;
  flagos_tensor_t *t = &out->tensor;
  t->dtype = dt;
  t->rank = rank;
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0)
      return flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT,
                               "input '%s': dimension %d is not fixed; give the input as a file, or fix it with --shape", name, i);
    t->dims[i] = dims[i];
    n *= dims[i];
  }
  size_t es = flagos_dtype_size(dt);
  t->nbytes = (size_t)n * es;
  t->data = malloc(t->nbytes ? t->nbytes : 1);
  if (!t->data) return flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "input '%s': cannot allocate %zu bytes", name, t->nbytes);
  bool isf = flagos_dtype_is_float(dt);
  double lo = fill && fill->has_range ? fill->lo : isf ? -1 : 0, hi = fill && fill->has_range ? fill->hi : isf ? 1 : 4;
  for (int64_t i = 0; i < n; i++) {
    double v = fill && fill->has_value ? fill->value : lo + (hi - lo) * next_unit(seed);
    if (!isf && !(fill && fill->has_value)) v = floor(v);
    if (!store(dt, t->data, i, v)) {
      flagos_value_clear(out);
      return flagos_status_new(FLAGOS_ERR_UNSUPPORTED, "input '%s': cannot make random %s values; give it as a file", name,
                               flagos_dtype_name(dt));
    }
  }
  return NULL;
}

flagos_status_t cli_make_inputs(flagos_bundle_t *b, const cli_input_arg_t *args, int n_args, flagos_value_t *vin,
                                int *n_random) {
  fir_graph_t *g = b->model->graph;
  int ni = g->n_inputs, pos = 0;
  bool *given = calloc((size_t)ni + 1, sizeof(bool));
  if (!given) return flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  flagos_status_t st = NULL;
  for (int k = 0; k < n_args && !st; k++) {
    int idx = -1;
    if (args[k].name) {
      for (int j = 0; j < ni; j++)
        if (strcmp(g->inputs[j]->name, args[k].name) == 0) idx = j;
      if (idx < 0) st = flagos_status_new(FLAGOS_ERR_NOT_FOUND, "the model has no input named '%s'", args[k].name);
    } else {
      while (pos < ni && given[pos]) pos++;
      idx = pos;
      if (idx >= ni) st = flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "too many inputs: the model takes %d", ni);
    }
    if (st) break;
    if (given[idx]) {
      st = flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s' given twice", g->inputs[idx]->name);
      break;
    }
    st = io_load_value(args[k].path, g->inputs[idx]->type, &vin[idx]);
    if (st) st = flagos_status_wrap(st, "input '%s'", g->inputs[idx]->name);
    given[idx] = true;
  }
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  if (n_random) *n_random = 0;
  for (int j = 0; j < ni && !st; j++) {
    if (given[j]) continue;
    if (!n_random) {
      st = flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s' is missing", g->inputs[j]->name);
      break;
    }
    const fir_type_t *t = g->inputs[j]->type;
    if (t->kind != FIR_TYPE_TENSOR || t->rank < 0) {
      st = flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s' is missing (only tensors of known rank are made up)",
                             g->inputs[j]->name);
      break;
    }
    int64_t dims[FLAGOS_MAX_RANK];
    for (int i = 0; i < t->rank && i < FLAGOS_MAX_RANK; i++) dims[i] = t->dims[i].value;
    st = cli_fill_tensor(g->inputs[j]->name, t->dtype, t->rank, dims, NULL, &seed, &vin[j]);
    (*n_random)++;
  }
  free(given);
  return st;
}

void cli_parse_input_arg(const char *v, cli_input_arg_t *out) {
  const char *eq = strchr(v, '=');
  /* NAME=FILE, unless the '=' belongs to a path that exists as given. */
  FILE *probe = eq ? fopen(v, "rb") : NULL;
  if (probe) fclose(probe);
  out->name = NULL;
  out->path = v;
  if (eq && !probe) {
    out->name = strndup(v, (size_t)(eq - v));
    out->path = eq + 1;
  }
}

double cli_median(double *v, int n) {
  if (n <= 0) return 0;
  double *c = malloc(sizeof(double) * (size_t)n);
  if (!c) return v[0];
  memcpy(c, v, sizeof(double) * (size_t)n);
  for (int i = 1; i < n; i++) /* insertion sort: n is small */
    for (int j = i; j > 0 && c[j - 1] > c[j]; j--) {
      double t = c[j];
      c[j] = c[j - 1];
      c[j - 1] = t;
    }
  double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
  free(c);
  return m;
}

double cli_power_watts(const flagos_device_power_t *a, const flagos_device_power_t *b, double seconds, bool *estimated) {
  *estimated = true;
  if (a->measured && b->measured && seconds > 0) {
    double e = b->energy_j - a->energy_j;
    if (e < 0 && a->energy_range_j > 0) e += a->energy_range_j;
    if (e > 0) {
      *estimated = false;
      return e / seconds;
    }
  }
  return b->declared_watts;
}
