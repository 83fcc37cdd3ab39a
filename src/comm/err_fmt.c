/* fcx_seterr: compiled into libflagcx and into the MPI plugin (each keeps a hidden copy). */
#include <stdarg.h>
#include <stdio.h>

#include "fcx_transport.h"

flagcx_result_t fcx_seterr(fcx_err_t *e, flagcx_result_t code, const char *fmt, ...) {
  if (!e) return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  e->code = code;
  return code;
}
