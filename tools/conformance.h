#ifndef FLAGOS_CONFORMANCE_H
#define FLAGOS_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "flagos/flagos.h"

/* True when got matches ref; otherwise why says how they differ. */
bool conf_compare(const flagos_value_t *got, const flagos_value_t *ref, double rtol, double atol, char *why, size_t whyn);

#endif
