/* Measured times (`flagos compile --tune`, docs/sla.md "Tuning"): what running
 * the model alone on each device present measured, and their use in place of
 * the roofline. The measuring itself needs the runtime and the CLI's made-up
 * inputs, so it lives in tools/compile_tune.c; this file only holds the figures. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "partition/part_internal.h"
#include "partition/partition.h"

part_tune_dev_t *part_tune_add(part_tune_t *t, const char *id, int n_groups) {
  if (t->n_dev >= PART_MAX_DEVICES) return NULL;
  part_tune_dev_t *d = &t->dev[t->n_dev++];
  memset(d, 0, sizeof *d);
  snprintf(d->id, sizeof d->id, "%s", id);
  d->n_groups = n_groups;
  d->group = part_calloc((size_t)n_groups + 1, sizeof(char *));
  d->time = part_calloc((size_t)n_groups + 1, sizeof(double));
  return d;
}

void part_tune_free(part_tune_t *t) {
  for (int i = 0; i < t->n_dev; i++) {
    for (int k = 0; k < t->dev[i].n_groups; k++) free(t->dev[i].group[k]);
    free(t->dev[i].group);
    free(t->dev[i].time);
  }
  memset(t, 0, sizeof *t);
}

bool part_tune_group(const part_tune_dev_t *d, const char *group, double *seconds) {
  for (int k = 0; k < d->n_groups; k++)
    if (d->group[k] && group && strcmp(d->group[k], group) == 0) {
      *seconds = d->time[k];
      return true;
    }
  return false;
}

char *part_tune_json(const part_tune_t *t) {
  cJSON *r = cJSON_CreateObject();
  cJSON *dv = cJSON_AddArrayToObject(r, "devices");
  for (int i = 0; i < t->n_dev; i++) {
    const part_tune_dev_t *d = &t->dev[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "device", d->id);
    cJSON_AddNumberToObject(o, "runs", d->runs);
    cJSON_AddNumberToObject(o, "warmup", d->warmup);
    cJSON_AddNumberToObject(o, "run_s", d->run_s);
    cJSON_AddNumberToObject(o, "single_device_run_s", d->single_run_s);
    cJSON_AddNumberToObject(o, "kernel_s", d->kernel_s);
    cJSON_AddNumberToObject(o, "copy_s", d->copy_s);
    cJSON *gs = cJSON_AddObjectToObject(o, "group_kernel_s");
    for (int k = 0; k < d->n_groups; k++)
      if (d->group[k]) cJSON_AddNumberToObject(gs, d->group[k], d->time[k]);
    cJSON_AddItemToArray(dv, o);
  }
  cJSON *ms = cJSON_AddArrayToObject(r, "modelled");
  for (int i = 0; i < t->n_missing; i++) cJSON_AddItemToArray(ms, cJSON_CreateString(t->missing[i]));
  char *s = cJSON_PrintUnformatted(r);
  cJSON_Delete(r);
  return s;
}

/* The graph input and output copies part_group_time charges a group. */
static double io_time(const part_group_t *g, const part_device_t *d) {
  double t = 0;
  if (d->host_visible) return 0;
  if (g->in_bytes > 0) t += g->in_bytes / d->h2d_bw + d->link_latency;
  if (g->out_bytes > 0) t += g->out_bytes / d->d2h_bw + d->link_latency;
  return t;
}

void part_problem_tune(part_problem_t *p, const part_tune_t *t) {
  const part_graph_t *g = p->g;
  int G = g->n_groups, D = p->n_dev;
  p->tune = t;
  if (!p->measured) p->measured = part_calloc((size_t)G * (size_t)D + 1, sizeof(bool));
  for (int d = 0; d < D; d++) {
    const part_tune_dev_t *m = NULL;
    for (int k = 0; k < t->n_dev; k++)
      if (strcmp(t->dev[k].id, p->dev[d].id) == 0) m = &t->dev[k];
    if (!m || G == 0) continue;
    /* Every group of the graph ran in the measured session; a group without a
     * kernel record ran no kernel there (an empty tensor), so 0 is measured too. */
    double kern = 0, io = 0;
    double *k = part_calloc((size_t)G + 1, sizeof(double));
    for (int i = 0; i < G; i++) {
      if (!part_tune_group(m, g->groups[i].name, &k[i])) k[i] = 0;
      kern += k[i];
      io += io_time(&g->groups[i], &p->dev[d]);
    }
    /* What a run pays besides kernels and input/output copies: the runtime's
     * per-node work (shape rules, allocation, launches the device does not
     * time), host-run nodes and synchronisation, spread evenly over the groups.
     * When the profiled kernels sum to more than the unprofiled run (the
     * profiler's own cost, kernels overlapping the host's work, noise), the
     * run's median is still what a run pays: the kernel times are scaled down
     * to it, keeping how they divide it. */
    double over = m->run_s - kern - io, scale = 1;
    if (over < 0) {
      scale = kern > 0 && m->run_s > io ? (m->run_s - io) / kern : 1;
      over = 0;
    }
    p->overhead[d] = over / G;
    p->kernel_scale[d] = scale;
    p->tuned[d] = true;
    p->n_measured[d] = G;
    for (int i = 0; i < G; i++) {
      p->t[i * D + d] = k[i] * scale + p->overhead[d] + io_time(&g->groups[i], &p->dev[d]);
      p->measured[i * D + d] = true;
    }
    free(k);
  }
}
