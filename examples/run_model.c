/* Runs a FlagOS bundle on one float32 .npy input through the public C API only
 * (include/flagos/flagos.h), and prints the outputs. With a third argument, an
 * expected .npy output, it reports the largest difference and fails above 1e-4.
 *
 *   run_model MODEL.flagos INPUT.npy [EXPECTED.npy]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagos/flagos.h"

/* A minimal reader for little-endian float32 C-order .npy files: enough for the example. */
static int read_npy_f32(const char *path, flagos_tensor_t *t) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return -1;
  }
  unsigned char pre[10];
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
    fprintf(stderr, "%s: not a version-1 .npy file\n", path);
    fclose(f);
    return -1;
  }
  size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
  char *h = calloc(1, hlen + 1);
  if (!h || fread(h, 1, hlen, f) != hlen || !strstr(h, "'<f4'") || strstr(h, "True")) {
    fprintf(stderr, "%s: expected a float32 C-order array\n", path);
    free(h);
    fclose(f);
    return -1;
  }
  memset(t, 0, sizeof(*t));
  t->dtype = FLAGOS_FLOAT32;
  const char *p = strstr(h, "'shape': (");
  p = p ? p + 10 : "";
  while (*p && *p != ')' && t->rank < FLAGOS_MAX_RANK) {
    char *end;
    long long d = strtoll(p, &end, 10);
    if (end == p) break;
    t->dims[t->rank++] = d;
    p = end;
    while (*p == ',' || *p == ' ') p++;
  }
  free(h);
  t->nbytes = (size_t)flagos_tensor_numel(t) * sizeof(float);
  t->data = malloc(t->nbytes ? t->nbytes : 1);
  if (!t->data || fread(t->data, 1, t->nbytes, f) != t->nbytes) {
    fprintf(stderr, "%s: truncated data\n", path);
    fclose(f);
    return -1;
  }
  fclose(f);
  return 0;
}

static int fail(flagos_status_t st) {
  fprintf(stderr, "error: %s\n", flagos_status_message(st));
  flagos_status_free(st);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.flagos INPUT.npy [EXPECTED.npy]\n", argv[0]);
    return 2;
  }
  flagos_bundle_t *b;
  flagos_status_t st = flagos_bundle_open(argv[1], &b);
  if (st) return fail(st);
  flagos_io_info_t info;
  if ((st = flagos_bundle_input(b, 0, &info))) return fail(st);
  printf("input '%s': %s, rank %d\n", info.name, flagos_dtype_name(info.dtype), info.rank);
  flagos_value_t in = {.kind = FLAGOS_VALUE_TENSOR}, out[8];
  if (read_npy_f32(argv[2], &in.tensor) != 0) return 1;
  int no = flagos_bundle_num_outputs(b);
  if (no > 8 || flagos_bundle_num_inputs(b) != 1) {
    fprintf(stderr, "this example handles models with one input and up to 8 outputs\n");
    return 1;
  }
  flagos_session_t *s;
  if ((st = flagos_session_create(b, NULL, &s))) return fail(st);
  memset(out, 0, sizeof out);
  if ((st = flagos_session_run(s, &in, 1, out, no))) return fail(st);
  int rc = 0;
  for (int i = 0; i < no; i++) {
    flagos_io_info_t oi;
    flagos_bundle_output(b, i, &oi);
    const flagos_tensor_t *t = &out[i].tensor;
    printf("output '%s': %s [", oi.name, flagos_dtype_name(t->dtype));
    for (int d = 0; d < t->rank; d++) printf("%s%lld", d ? "," : "", (long long)t->dims[d]);
    printf("]\n");
    int64_t n = flagos_tensor_numel(t);
    for (int64_t j = 0; j < n && j < 12 && t->dtype == FLAGOS_FLOAT32; j++) printf(" %.6f", ((float *)t->data)[j]);
    printf("%s\n", n > 12 ? " ..." : "");
    if (i == 0 && argc > 3) {
      flagos_tensor_t ex;
      if (read_npy_f32(argv[3], &ex) != 0) return 1;
      double worst = 0;
      if (flagos_tensor_numel(&ex) != n) {
        fprintf(stderr, "expected output has %lld values, got %lld\n", (long long)flagos_tensor_numel(&ex), (long long)n);
        rc = 1;
      } else {
        for (int64_t j = 0; j < n; j++) {
          double dlt = fabs((double)((float *)t->data)[j] - (double)((float *)ex.data)[j]);
          if (dlt > worst || isnan(dlt)) worst = isnan(dlt) ? INFINITY : dlt;
        }
        printf("largest difference from %s: %.3g\n", argv[3], worst);
        if (worst > 1e-4) rc = 1;
      }
      free(ex.data);
    }
    flagos_value_clear(&out[i]);
  }
  printf("run time: %.3f ms\n", flagos_session_last_run_ms(s));
  free(in.tensor.data);
  flagos_session_destroy(s);
  flagos_bundle_close(b);
  return rc;
}
