/* Plans at run time: the tables a multi-device run follows, and re-planning
 * with a new SLA (src/runtime/placement.c). */
#ifndef FLAGOS_RT_PLACEMENT_H
#define FLAGOS_RT_PLACEMENT_H

#include "partition/partition.h"
#include "runtime/exec.h"

/* The run tables of plan pp: dev_slot maps the plan's device indices to the
 * session's slots, slot_host_visible says which slots are host-visible. json
 * (may be NULL) is kept for reports. Errors: a plan that does not fit the model. */
flagos_status_t rt_mplan_create(const flagos_bundle_t *b, const part_plan_t *pp, const int *dev_slot,
                                const bool *slot_host_visible, const char *json, rt_mplan_t **out);
/* The saved device profiles ($FLAGOS_CACHE_DIR/profiles.json); *out NULL when none is saved. */
flagos_status_t rt_load_profiles(part_profile_t **out);
/* A candidate device: its saved profile entry, else the documented defaults from
 * the plugin's device_info (di, may be NULL). */
void rt_slot_device(const char *target, int index, const flagos_device_info_t *di, const char *plugin_version,
                    const part_profile_t *prof, part_device_t *out);
/* Solves the placement of the bundle's main graph over devs for the SLA text;
 * *plan_json gets the plan (docs/sla.md), cJSON-allocated (free with free()). */
flagos_status_t rt_solve_plan(const flagos_bundle_t *b, const part_device_t *devs, int n_dev, const char *sla_json,
                              char **plan_json);

#endif
