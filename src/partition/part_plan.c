/* The plan a bundle records (section "plan", docs/sla.md "The plan in the
 * bundle"), its reader for the runtime, and the --explain text. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "partition/part_internal.h"
#include "partition/partition.h"

char *part_plan_json(const part_problem_t *p, const int *assign, const char *const *group_names, const int *group_nodes) {
  part_metrics_t m;
  part_evaluate(p, assign, &m);
  cJSON *r = cJSON_CreateObject();
  cJSON_AddNumberToObject(r, "format", PART_PLAN_FORMAT);
  cJSON_AddStringToObject(r, "mode", p->sla.throughput ? "throughput" : "latency");
  cJSON *dv = cJSON_AddArrayToObject(r, "devices");
  for (int d = 0; d < p->n_dev; d++) cJSON_AddItemToArray(dv, cJSON_CreateString(p->dev[d].id));
  cJSON *gs = cJSON_AddArrayToObject(r, "groups");
  for (int i = 0; i < p->g->n_groups; i++) {
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "group", group_names ? group_names[i] : p->g->groups[i].name);
    cJSON_AddNumberToObject(g, "node", group_nodes ? group_nodes[i] : p->g->groups[i].node);
    cJSON_AddNumberToObject(g, "device", assign[i]);
    cJSON_AddNumberToObject(g, "time_s", p->t[i * p->n_dev + assign[i]]);
    if (p->measured) cJSON_AddBoolToObject(g, "measured", p->measured[i * p->n_dev + assign[i]]);
    cJSON_AddItemToArray(gs, g);
  }
  cJSON *pr = cJSON_AddObjectToObject(r, "predicted");
  cJSON_AddNumberToObject(pr, "latency_s", m.latency);
  cJSON_AddNumberToObject(pr, "period_s", m.period);
  cJSON_AddNumberToObject(pr, "avg_power_w", m.power);
  cJSON_AddNumberToObject(pr, "energy_j", m.energy);
  cJSON_AddNumberToObject(pr, "cost", m.cost);
  cJSON_AddNumberToObject(pr, "transfer_bytes", m.transfer_bytes);
  cJSON *mem = cJSON_AddArrayToObject(pr, "memory_bytes");
  for (int d = 0; d < p->n_dev; d++) cJSON_AddItemToArray(mem, cJSON_CreateNumber(m.mem[d]));
  cJSON_AddNumberToObject(pr, "transfer_s", m.transfer_time);
  if (p->tune) {
    /* Which devices' times were measured (docs/sla.md "Tuning"), and what. */
    char *tj = part_tune_json(p->tune);
    cJSON *t = tj ? cJSON_Parse(tj) : NULL;
    free(tj);
    if (t) {
      cJSON *on = cJSON_CreateArray(), *ov = cJSON_CreateArray();
      for (int d = 0; d < p->n_dev; d++)
        if (p->tuned[d]) {
          cJSON_AddItemToArray(on, cJSON_CreateString(p->dev[d].id));
          cJSON_AddItemToArray(ov, cJSON_CreateNumber(p->overhead[d]));
        }
      cJSON_AddItemToObjectCS(t, "measured_on", on);
      cJSON_AddItemToObjectCS(t, "overhead_s_per_group", ov);
      cJSON_AddItemToObjectCS(r, "tuned", t);
    }
  }
  char *s = cJSON_PrintUnformatted(r);
  cJSON_Delete(r);
  return s;
}

#define BAD(...) FL_ERR(FLAGOS_ERR_CORRUPT, __VA_ARGS__)

static double numf(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

flagos_status_t part_plan_parse(const void *data, size_t len, part_plan_t **out) {
  cJSON *r = cJSON_ParseWithLength(data, len);
  if (!r) return BAD("plan: not valid JSON");
  part_plan_t *p = part_calloc(1, sizeof *p);
  p->arena = fl_arena_create();
  flagos_status_t st = NULL;
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(r, "format");
  const cJSON *dv = cJSON_GetObjectItemCaseSensitive(r, "devices"), *gs = cJSON_GetObjectItemCaseSensitive(r, "groups");
  const cJSON *mode = cJSON_GetObjectItemCaseSensitive(r, "mode");
  if (!cJSON_IsNumber(fmt) || fmt->valueint < 1) st = BAD("plan: field 'format' must be a positive integer");
  else if (fmt->valueint > PART_PLAN_FORMAT)
    st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "plan format %d is newer than this FlagOS reads (%d)", fmt->valueint, PART_PLAN_FORMAT);
  else if (!cJSON_IsArray(dv) || cJSON_GetArraySize(dv) < 1 || cJSON_GetArraySize(dv) > PART_MAX_DEVICES)
    st = BAD("plan: field 'devices' must be an array of 1 to %d device names", PART_MAX_DEVICES);
  else if (!cJSON_IsArray(gs))
    st = BAD("plan: field 'groups' must be an array");
  if (!st) {
    p->throughput = cJSON_IsString(mode) && strcmp(mode->valuestring, "throughput") == 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, dv) {
      if (!cJSON_IsString(it)) {
        st = BAD("plan: field 'devices[%d]' must be a string", p->n_devices);
        break;
      }
      snprintf(p->devices[p->n_devices++], 32, "%s", it->valuestring);
    }
    p->groups = fl_arena_alloc(p->arena, sizeof(*p->groups) * (size_t)(cJSON_GetArraySize(gs) + 1));
    cJSON_ArrayForEach(it, gs) {
      if (st) break;
      const cJSON *gn = cJSON_GetObjectItemCaseSensitive(it, "group");
      const cJSON *nd = cJSON_GetObjectItemCaseSensitive(it, "node");
      const cJSON *d = cJSON_GetObjectItemCaseSensitive(it, "device");
      if (!cJSON_IsString(gn) || !cJSON_IsNumber(nd) || !cJSON_IsNumber(d) || d->valueint < 0 ||
          d->valueint >= p->n_devices)
        st = BAD("plan: field 'groups[%d]' needs a group name, a node index and a device index below %d", p->n_groups,
                 p->n_devices);
      else
        p->groups[p->n_groups++] = (part_plan_group_t){fl_arena_strdup(p->arena, gn->valuestring), nd->valueint, d->valueint};
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(r, "predicted");
    p->latency = numf(pr, "latency_s");
    p->power = numf(pr, "avg_power_w");
    p->energy = numf(pr, "energy_j");
    p->cost = numf(pr, "cost");
    p->transfer_bytes = numf(pr, "transfer_bytes");
    const cJSON *on = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "tuned"), "measured_on");
    p->tuned = cJSON_IsArray(on);
    cJSON_ArrayForEach(it, on) {
      if (cJSON_IsString(it) && p->n_tuned < PART_MAX_DEVICES) snprintf(p->tuned_on[p->n_tuned++], 32, "%s", it->valuestring);
    }
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(pr, "memory_bytes");
    for (int d = 0; d < p->n_devices && d < cJSON_GetArraySize(mem); d++) {
      const cJSON *v = cJSON_GetArrayItem(mem, d);
      p->mem[d] = cJSON_IsNumber(v) ? v->valuedouble : 0;
    }
  }
  cJSON_Delete(r);
  if (st) {
    part_plan_free(p);
    return st;
  }
  *out = p;
  return NULL;
}

flagos_status_t part_plan_load(bundle_file_t *b, part_plan_t **out) {
  const void *data;
  size_t n;
  FL_TRY(bundle_file_get(b, PART_PLAN_SECTION, &data, &n));
  return part_plan_parse(data, n, out);
}

void part_plan_free(part_plan_t *p) {
  if (!p) return;
  fl_arena_destroy(p->arena);
  free(p);
}

int part_plan_device_of(const part_plan_t *p, const char *group) {
  for (int i = 0; i < p->n_groups; i++)
    if (strcmp(p->groups[i].group, group) == 0) return p->groups[i].device;
  return -1;
}

static void limit_line(fl_buf_t *b, const char *what, double value, const char *unit, double limit, double scale) {
  fl_buf_printf(b, "  %-16s %.4g %s", what, value * scale, unit);
  if (limit > 0)
    fl_buf_printf(b, "   (SLA max %.4g %s: %s)", limit * scale, unit, value <= limit * (1 + 1e-6) ? "met" : "NOT MET");
  fl_buf_putc(b, '\n');
}

void part_explain(const part_problem_t *p, const int *assign, const part_solve_info_t *info, fl_buf_t *out) {
  part_metrics_t m;
  part_evaluate(p, assign, &m);
  const part_graph_t *g = p->g;
  fl_buf_printf(out, "placement plan: %d groups on %d devices, %s mode", g->n_groups, p->n_dev,
                p->sla.throughput ? "throughput" : "latency");
  if (info) {
    fl_buf_printf(out, "; %s in %.3f s", info->method, info->seconds);
    if (info->coarsened) fl_buf_printf(out, " (coarsened to %d groups)", info->n_coarse);
  }
  fl_buf_putc(out, '\n');
  for (int d = 0; d < p->n_dev; d++) {
    const part_device_t *D = &p->dev[d];
    int n = 0;
    for (int i = 0; i < g->n_groups; i++) n += assign[i] == d;
    fl_buf_printf(out, "device %s (%s%s%s; profile %s)%s\n", D->id, D->name[0] ? D->name : D->target,
                  D->vendor[0] ? ", " : "", D->vendor, D->calibrated ? "calibrated" : "defaults",
                  p->allowed[d] ? "" : " [forbidden]");
    fl_buf_printf(out, "  %d groups, busy %.4g ms, memory %.4g MB", n, m.busy[d] * 1e3, m.mem[d] / 1048576.0);
    if (p->mem_limit[d] > 0) fl_buf_printf(out, " of %.4g MB", p->mem_limit[d] / 1048576.0);
    fl_buf_putc(out, '\n');
    if (p->tuned[d] && p->kernel_scale[d] < 1)
      fl_buf_printf(out, "  times: measured (--tune), kernels scaled by %.3g to the median run\n", p->kernel_scale[d]);
    else if (p->tuned[d])
      fl_buf_printf(out, "  times: measured (--tune), kernels plus %.4g us host overhead per group\n", p->overhead[d] * 1e6);
    else
      fl_buf_printf(out, "  times: modelled (roofline + launches)%s\n", p->tune ? ", not measured: no such device here" : "");
    int shown = 0;
    for (int i = 0; i < g->n_groups; i++) {
      if (assign[i] != d) continue;
      if (shown < 40)
        fl_buf_printf(out, "    %-32s %10.4g ms %-8s %10.4g MFLOP  %10.4g MB\n", g->groups[i].name ? g->groups[i].name : "?",
                      p->t[i * p->n_dev + d] * 1e3,
                      p->measured && p->measured[i * p->n_dev + d] ? "measured" : "modelled", g->groups[i].flops * 1e-6,
                      g->groups[i].mem / 1048576.0);
      shown++;
    }
    if (shown > 40) fl_buf_printf(out, "    ... and %d more\n", shown - 40);
  }
  fl_buf_printf(out, "cross-device copies: %d edges, %.4g MB, %.4g ms\n", m.transfers, m.transfer_bytes / 1048576.0,
                m.transfer_time * 1e3);
  for (int e = 0, k = 0; e < g->n_edges && k < 20; e++) {
    int a = assign[g->edges[e].src], b = assign[g->edges[e].dst];
    if (a == b) continue;
    k++;
    fl_buf_printf(out, "  %s (%s) -> %s (%s): %.4g MB\n", g->groups[g->edges[e].src].name, p->dev[a].id,
                  g->groups[g->edges[e].dst].name, p->dev[b].id, g->edges[e].bytes / 1048576.0);
  }
  fl_buf_printf(out, "predicted totals (%s):\n", !p->tune ? "modelled" : "measured where tuned, modelled elsewhere");
  limit_line(out, "latency", m.latency, "ms", p->sla.max_latency, 1e3);
  if (p->sla.throughput) limit_line(out, "period", m.period, "ms", 0, 1e3);
  limit_line(out, "average power", m.power, "W", p->sla.max_power, 1);
  fl_buf_printf(out, "  %-16s %.4g J per request\n", "energy", m.energy);
  fl_buf_printf(out, "  %-16s %.4g per request\n", "cost", m.cost);
  fl_buf_printf(out, "  %-16s %.6g (latency weight %g, lambda %g, mu %g)\n", "objective", m.objective, p->sla.w_latency,
                p->sla.lambda, p->sla.mu);
}
