/* Comparing a FlagOS output with ONNX's reference output, as ONNX's own backend
 * test harness does: same kind, dtype and shape; floats within rtol/atol with NaN
 * exactly where the reference has NaN; integers, booleans and strings exact. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "conformance.h"

static void shape_str(char *b, size_t n, const flagos_tensor_t *t) {
  size_t o = (size_t)snprintf(b, n, "[");
  for (int i = 0; i < t->rank && o < n; i++) o += (size_t)snprintf(b + o, n - o, "%s%lld", i ? "," : "", (long long)t->dims[i]);
  if (o < n) snprintf(b + o, n - o, "]");
}

static bool compare_tensor(const flagos_tensor_t *got, const flagos_tensor_t *ref, double rtol, double atol, char *why,
                           size_t whyn) {
  if (got->dtype != ref->dtype) {
    snprintf(why, whyn, "dtype %s, expected %s", flagos_dtype_name(got->dtype), flagos_dtype_name(ref->dtype));
    return false;
  }
  bool same = got->rank == ref->rank;
  for (int i = 0; same && i < ref->rank; i++) same = got->dims[i] == ref->dims[i];
  if (!same) {
    char a[128], b[128];
    shape_str(a, sizeof a, got);
    shape_str(b, sizeof b, ref);
    snprintf(why, whyn, "shape %s, expected %s", a, b);
    return false;
  }
  int64_t n = flagos_tensor_numel(ref);
  flagos_dtype_t dt = ref->dtype;
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    bool ok;
    if (dt == FLAGOS_STRING) {
      const char *x = ((char **)got->data)[i], *y = ((char **)ref->data)[i];
      ok = x && y && strcmp(x, y) == 0;
    } else if (flagos_dtype_is_float(dt)) {
      double x = fl_load_as_double(dt, got->data, (size_t)i), y = fl_load_as_double(dt, ref->data, (size_t)i);
      if (isnan(y)) ok = isnan(x);
      else if (isinf(y)) ok = x == y;
      else {
        ok = !isnan(x) && fabs(x - y) <= atol + rtol * fabs(y);
        if (!ok && fabs(x - y) > worst) worst = fabs(x - y);
      }
    } else if (dt == FLAGOS_COMPLEX64 || dt == FLAGOS_COMPLEX128) {
      size_t es = flagos_dtype_size(dt) / 2;
      flagos_dtype_t part = dt == FLAGOS_COMPLEX64 ? FLAGOS_FLOAT32 : FLAGOS_FLOAT64;
      (void)es;
      ok = true;
      for (int c = 0; c < 2; c++) {
        double x = fl_load_as_double(part, got->data, (size_t)(2 * i + c)), y = fl_load_as_double(part, ref->data, (size_t)(2 * i + c));
        if (!(fabs(x - y) <= atol + rtol * fabs(y) || (isnan(x) && isnan(y)))) ok = false;
      }
    } else {
      size_t es = flagos_dtype_size(dt);
      ok = memcmp((const char *)got->data + (size_t)i * es, (const char *)ref->data + (size_t)i * es, es) == 0;
      if (dt == FLAGOS_BOOL) ok = (((const uint8_t *)got->data)[i] != 0) == (((const uint8_t *)ref->data)[i] != 0);
    }
    if (!ok) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad) {
    char gx[64], rx[64];
    if (dt == FLAGOS_STRING) {
      snprintf(gx, sizeof gx, "'%.20s'", ((char **)got->data)[first] ? ((char **)got->data)[first] : "(null)");
      snprintf(rx, sizeof rx, "'%.20s'", ((char **)ref->data)[first]);
    } else {
      snprintf(gx, sizeof gx, "%.9g", fl_load_as_double(dt, got->data, (size_t)first));
      snprintf(rx, sizeof rx, "%.9g", fl_load_as_double(dt, ref->data, (size_t)first));
    }
    snprintf(why, whyn, "%lld of %lld values differ; first at flat index %lld: got %s, expected %s%s", (long long)bad,
             (long long)n, (long long)first, gx, rx, worst > 0 ? "" : "");
    return false;
  }
  return true;
}

bool conf_compare(const flagos_value_t *got, const flagos_value_t *ref, double rtol, double atol, char *why, size_t whyn) {
  if (got->kind != ref->kind) {
    snprintf(why, whyn, "value kind %d, expected %d", got->kind, ref->kind);
    return false;
  }
  if (ref->kind == FLAGOS_VALUE_TENSOR) return compare_tensor(&got->tensor, &ref->tensor, rtol, atol, why, whyn);
  if (ref->kind == FLAGOS_VALUE_OPTIONAL) {
    if (got->present != ref->present) {
      snprintf(why, whyn, "optional is %s, expected %s", got->present ? "present" : "empty", ref->present ? "present" : "empty");
      return false;
    }
    if (!ref->present) return true;
    if (ref->n_items == 1) {
      if (got->n_items != 1) {
        snprintf(why, whyn, "optional holds a tensor, expected a sequence");
        return false;
      }
      return conf_compare(&got->items[0], &ref->items[0], rtol, atol, why, whyn);
    }
    return compare_tensor(&got->tensor, &ref->tensor, rtol, atol, why, whyn);
  }
  if (got->n_items != ref->n_items) {
    snprintf(why, whyn, "sequence of %d items, expected %d", got->n_items, ref->n_items);
    return false;
  }
  for (int i = 0; i < ref->n_items; i++) {
    char sub[400];
    if (!conf_compare(&got->items[i], &ref->items[i], rtol, atol, sub, sizeof sub)) {
      snprintf(why, whyn, "sequence item %d: %s", i, sub);
      return false;
    }
  }
  return true;
}
