/* `flagos compile --tune` (compile_tune.c): the model's kernel groups measured
 * on each device of the targets this machine has. */
#ifndef FLAGOS_COMPILE_TUNE_H
#define FLAGOS_COMPILE_TUNE_H

#include "partition/partition.h"

/* Runs the bundle image alone on device 0 of each target, with made-up inputs
 * of the model's fixed shapes: warmup runs, then `runs` runs timed by the wall
 * clock (their median is what a run pays), then `runs` more with the profiler
 * on (each group's kernel time, averaged). A target with no device here is a
 * warning on stderr and an entry of out->missing, not an error. */
flagos_status_t cli_tune_measure(const void *image, size_t size, const char *const *targets, int n_targets, int runs,
                                 int warmup, part_tune_t *out);

#endif
