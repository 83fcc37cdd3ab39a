/* CLBlast tuning parameters that the opencl plugin hands to CLBlast
 * (CLBlastOverrideParameters) before a device's first gemm, for devices that
 * CLBlast's own database does not know. CLBlast falls back to its vendor
 * defaults for an unknown architecture (an NVIDIA H100, "SM9.0", in CLBlast
 * 1.5.3), which were measured slower on the H100 than its entries for the
 * closest architecture it was tuned on.
 *
 * A table line (built-in below, or a line of $FLAGOS_CLBLAST_PARAMS's file):
 *   MATCH KERNEL PRECISION NAME=VALUE ...
 * MATCH is a substring of the device's tag: its name, then " SMx.y" on NVIDIA
 * devices (cl_nv_device_attribute_query's compute capability), so "SM9.0"
 * matches every Hopper and "H100" an H100 by name; "*" matches every device.
 * KERNEL is CLBlast's database name ("Xgemm", "XgemmDirect", "GemmRoutine",
 * "Copy", "Pad", "Transpose", "Padtranspose"); PRECISION 16, 32 or 64; the
 * parameters are that kernel's complete set (CLBlast refuses a partial one).
 * '#' starts a comment. Every matching line is applied, in order.
 *
 * FLAGOS_CLBLAST_PARAMS: unset = the built-in table; 0 (or off) = none (CLBlast's
 * own database alone); FILE = FILE's lines instead of the built-in ones (for a
 * tuner's results: clblast_tuner_xgemm and friends of Debian's clblast-utils). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

/* Built-in lines. Where each set came from is said above it; change a set only
 * with a measurement (backends/opencl/README.md has the figures). */
static const char *const k_builtin[] = {
    /* NVIDIA Hopper (SM9.0). CLBlast 1.5.3's database entries for its closest
     * tuned NVIDIA architecture, SM8.0 ("A100-PCIE-40GB"): the single-precision
     * Xgemm, XgemmDirect and GemmRoutine tables (src/database/kernels/ of
     * CLBlast 1.5.3), read out of Debian's libclblast1 1.5.3. Measured on an
     * H100 without split-K (backends/opencl/README.md): BERT-base f32 b1 5.85 ->
     * 5.55 ms, ResNet-50 3.62 -> 3.22 ms against CLBlast's NVIDIA defaults. */
    "SM9.0 Xgemm 32 GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=32 NDIMB=16 NDIMC=16 NWG=64 SA=1 SB=1 STRM=0 "
    "STRN=0 VWM=4 VWN=4",
    "SM9.0 XgemmDirect 32 KWID=8 MDIMAD=8 MDIMCD=16 NDIMBD=32 NDIMCD=16 PADA=1 PADB=1 VWMD=2 VWND=1 WGD=32",
    "SM9.0 GemmRoutine 32 XGEMM_MIN_INDIRECT_SIZE=1984",
};

#define PARAMS_MAX 16 /* CLBlast's kMaxParameters */

/* The tag MATCH is compared with: the device name, and " SMx.y" on NVIDIA. */
static void device_tag(ocl_state_t *s, const ocl_device_t *d, char *tag, size_t cap) {
  snprintf(tag, cap, "%s", d->name);
  /* cl_nv_device_attribute_query: CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV / _MINOR_NV */
  cl_uint major = 0, minor = 0;
  if (d->extensions && strstr(d->extensions, "cl_nv_device_attribute_query") &&
      s->cl.clGetDeviceInfo(d->id, 0x4000, sizeof major, &major, NULL) == CL_SUCCESS &&
      s->cl.clGetDeviceInfo(d->id, 0x4001, sizeof minor, &minor, NULL) == CL_SUCCESS) {
    size_t l = strlen(tag);
    snprintf(tag + l, cap - l, " SM%u.%u", major, minor);
  }
}

/* Applies one table line if it matches; *applied counts the kernels set.
 * False for a line that is malformed or that CLBlast refused. */
static bool apply_line(const char *line, const char *tag, cl_device_id dev, ocl_blas_override_fn *fn,
                       ocl_trace_fn *trace, const char *where, int *applied) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", line);
  char *hash = strchr(buf, '#');
  if (hash) *hash = 0;
  char *save = NULL, *match = strtok_r(buf, " \t\r\n", &save);
  if (!match) return true;
  char *kernel = strtok_r(NULL, " \t\r\n", &save), *prec = strtok_r(NULL, " \t\r\n", &save);
  if (!kernel || !prec) {
    trace("flagos trace: opencl CLBlast parameters (%s): a line without kernel and precision: '%s'\n", where, match);
    return false;
  }
  if (strcmp(match, "*") != 0 && !strstr(tag, match)) return true;
  const char *names[PARAMS_MAX];
  size_t values[PARAMS_MAX];
  int n = 0;
  for (char *t; (t = strtok_r(NULL, " \t\r\n", &save));) {
    char *eq = strchr(t, '='), *end = NULL;
    if (eq) {
      errno = 0;
      unsigned long long v = strtoull(eq + 1, &end, 10);
      if (n < PARAMS_MAX && eq != t && end != eq + 1 && *end == 0 && errno == 0 && eq[1] != '-') {
        *eq = 0;
        names[n] = t;
        values[n++] = (size_t)v;
        continue;
      }
    }
    trace("flagos trace: opencl CLBlast parameters (%s): '%s' is not NAME=VALUE (at most %d): %s %s skipped\n",
          where, t, PARAMS_MAX, kernel, prec);
    return false;
  }
  char *pend = NULL;
  long p = strtol(prec, &pend, 10);
  if (*pend || (p != 16 && p != 32 && p != 64)) {
    trace("flagos trace: opencl CLBlast parameters (%s): precision '%s' is not 16, 32 or 64\n", where, prec);
    return false;
  }
  int r = fn(dev, kernel, (unsigned)p, (size_t)n, names, values);
  trace("flagos trace: opencl CLBlast parameters (%s) for '%s': %s %ld (%d values): %s\n", where, tag, kernel, p, n,
        r == 0 ? "applied" : "refused by CLBlast");
  if (r == 0) (*applied)++;
  else
    trace("flagos trace: opencl CLBlast parameters: CLBlastOverrideParameters status %d\n", r);
  return r == 0;
}

int ocl_blas_params_apply(ocl_state_t *s, const ocl_device_t *d, ocl_blas_override_fn *fn, ocl_trace_fn *trace) {
  const char *env = getenv("FLAGOS_CLBLAST_PARAMS");
  if (env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0)) return 0;
  char tag[192];
  device_tag(s, d, tag, sizeof tag);
  int applied = 0;
  if (!env || !*env) {
    for (size_t i = 0; i < sizeof k_builtin / sizeof k_builtin[0]; i++)
      apply_line(k_builtin[i], tag, d->id, fn, trace, "built-in", &applied);
    return applied;
  }
  /* A file the user named says what went wrong even without FLAGOS_TRACE:
   * CLBlast then runs with its own parameters for what the file did not set. */
  FILE *f = fopen(env, "r");
  if (!f) {
    fprintf(stderr, "flagos: opencl: cannot open FLAGOS_CLBLAST_PARAMS '%s': %s (CLBlast's own parameters are used)\n",
            env, strerror(errno));
    return 0;
  }
  char line[1024];
  int bad = 0;
  while (fgets(line, sizeof line, f)) bad += !apply_line(line, tag, d->id, fn, trace, env, &applied);
  fclose(f);
  if (bad)
    fprintf(stderr, "flagos: opencl: FLAGOS_CLBLAST_PARAMS '%s': %d line(s) malformed or refused by CLBlast, skipped "
            "(FLAGOS_TRACE=1 names them)\n", env, bad);
  return applied;
}
