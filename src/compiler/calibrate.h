/* Device calibration for `flagos devices --calibrate` (docs/sla.md, "Device profiles"). */
#ifndef FLAGOS_COMPILER_CALIBRATE_H
#define FLAGOS_COMPILER_CALIBRATE_H

#include "partition/partition.h"

/* Measures device `index` of backend `target`: peak FLOP/s (f32, f16), memory
 * bandwidth, launch overhead, host<->device copies and power. cache_dir: the
 * kernel cache (NULL: the default). A line per measurement goes to log. */
flagos_status_t compiler_calibrate_device(const char *target, int index, const char *cache_dir, part_device_t *out,
                                          fl_buf_t *log);

#endif
