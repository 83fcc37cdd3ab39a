/* The cost model (docs/sla.md, "Cost model") and the evaluation of a placement.
 * part_evaluate computes a placement's figures directly from their definitions;
 * the MIP (part_solve.c) encodes the same definitions as linear constraints, and
 * the tests check one against the other by enumeration. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "partition/part_internal.h"
#include "partition/partition.h"

double part_group_time(const part_group_t *g, const part_device_t *d) {
  double peak = g->half ? d->flops_f16 : d->flops_f32;
  double compute = peak > 0 ? g->flops / peak : 0;
  double memory = d->mem_bw > 0 ? g->bytes / d->mem_bw : 0;
  double t = d->launch * g->n_kernels + (compute > memory ? compute : memory);
  if (!d->host_visible) {
    if (g->in_bytes > 0) t += g->in_bytes / d->h2d_bw + d->link_latency;
    if (g->out_bytes > 0) t += g->out_bytes / d->d2h_bw + d->link_latency;
  }
  return t;
}

double part_link_time(double bytes, const part_device_t *a, const part_device_t *b) {
  if (a == b || bytes <= 0) return 0;
  double t = 0;
  if (!a->host_visible) t += bytes / a->d2h_bw + a->link_latency;
  if (!b->host_visible) t += bytes / b->h2d_bw + b->link_latency;
  return t;
}

/* The most specific SLA entry for a device: TARGET:INDEX, then TARGET, then vendor. */
static const part_sla_device_t *sla_entry(const part_sla_t *s, const part_device_t *d) {
  const part_sla_device_t *best = NULL;
  int best_rank = 0;
  for (int i = 0; i < s->n_devices; i++) {
    const char *m = s->devices[i].match;
    if (!part_sla_matches(m, d)) continue;
    int rank = strncmp(m, "vendor:", 7) == 0 ? 1 : strchr(m, ':') ? 3 : 2;
    if (rank > best_rank) {
      best = &s->devices[i];
      best_rank = rank;
    }
  }
  return best;
}

flagos_status_t part_problem_init(part_problem_t *p, const part_graph_t *g, const part_device_t *devs, int n_dev,
                                  const part_sla_t *sla) {
  memset(p, 0, sizeof *p);
  if (n_dev < 1 || n_dev > PART_MAX_DEVICES)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "placement needs 1 to %d devices, not %d", PART_MAX_DEVICES, n_dev);
  p->g = g;
  p->n_dev = n_dev;
  memcpy(p->dev, devs, sizeof(*devs) * (size_t)n_dev);
  part_sla_default(&p->sla);
  if (sla) p->sla = *sla;
  bool any = false;
  for (int d = 0; d < n_dev; d++) {
    const part_device_t *D = &p->dev[d];
    const part_sla_device_t *e = sla_entry(&p->sla, D);
    p->mem_limit[d] = e && e->memory_limit > 0 ? e->memory_limit : 0;
    if (D->memory_bytes && (p->mem_limit[d] == 0 || (double)D->memory_bytes < p->mem_limit[d]))
      p->mem_limit[d] = (double)D->memory_bytes;
    p->price[d] = e && e->cost_per_hour > 0 ? e->cost_per_hour / 3600.0 : 0;
    p->allowed[d] = true;
    for (int i = 0; i < p->sla.n_forbidden; i++)
      if (part_sla_matches(p->sla.forbidden[i], D)) p->allowed[d] = false;
    p->preferred[d] = p->sla.n_preferred == 0;
    for (int i = 0; i < p->sla.n_preferred; i++)
      if (part_sla_matches(p->sla.preferred[i], D)) p->preferred[d] = true;
    any = any || p->allowed[d];
  }
  if (!any) {
    fl_buf_t b = {0};
    for (int d = 0; d < n_dev; d++) fl_buf_printf(&b, "%s%s", d ? ", " : "", p->dev[d].id);
    flagos_status_t st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT,
                                "the SLA cannot be met: field 'forbidden' excludes every device of the plan (%s)", b.data);
    fl_buf_free(&b);
    return st;
  }
  int G = g->n_groups, E = g->n_edges;
  p->t = part_calloc((size_t)G * (size_t)n_dev, sizeof(double));
  p->te = part_calloc((size_t)E * (size_t)n_dev * (size_t)n_dev, sizeof(double));
  for (int i = 0; i < G; i++)
    for (int d = 0; d < n_dev; d++) p->t[i * n_dev + d] = part_group_time(&g->groups[i], &p->dev[d]);
  for (int e = 0; e < E; e++)
    for (int a = 0; a < n_dev; a++)
      for (int b = 0; b < n_dev; b++)
        p->te[((size_t)e * n_dev + a) * n_dev + b] = a == b ? 0 : part_link_time(g->edges[e].bytes, &p->dev[a], &p->dev[b]);
  return NULL;
}

void part_problem_free(part_problem_t *p) {
  free(p->t);
  free(p->te);
  free(p->measured);
  p->t = p->te = NULL;
  p->measured = NULL;
}

void part_evaluate(const part_problem_t *p, const int *assign, part_metrics_t *m) {
  memset(m, 0, sizeof *m);
  const part_graph_t *g = p->g;
  int D = p->n_dev;
  double pen = 0;
  m->allowed = true;
  for (int i = 0; i < g->n_groups; i++) {
    int d = assign[i];
    double t = p->t[i * D + d];
    m->latency += t;
    m->busy[d] += t;
    m->mem[d] += g->groups[i].mem;
    m->used[d] = true;
    if (!p->preferred[d]) pen += p->sla.preference * t;
    if (!p->allowed[d]) m->allowed = false;
  }
  for (int e = 0; e < g->n_edges; e++) {
    int a = assign[g->edges[e].src], b = assign[g->edges[e].dst];
    if (a == b) continue;
    double t = p->te[((size_t)e * D + a) * D + b];
    m->latency += t;
    m->busy[a] += t;
    m->busy[b] += t;
    m->transfers++;
    m->transfer_bytes += g->edges[e].bytes;
    m->transfer_time += t;
  }
  m->period = m->latency;
  if (p->sla.throughput) {
    m->period = 0;
    for (int d = 0; d < D; d++)
      if (m->busy[d] > m->period) m->period = m->busy[d];
  }
  for (int d = 0; d < D; d++) {
    m->energy += (p->dev[d].power_active - p->dev[d].power_idle) * m->busy[d];
    if (m->used[d]) {
      m->energy += p->dev[d].power_idle * m->period;
      m->cost += p->price[d] * m->period;
    }
  }
  m->power = m->period > 0 ? m->energy / m->period : 0;
  m->objective = p->sla.w_latency * m->period + p->sla.lambda * m->cost + p->sla.mu * m->energy + pen;
  if (p->sla.max_latency > 0 && m->latency > p->sla.max_latency) m->violation += m->latency / p->sla.max_latency - 1;
  if (p->sla.max_power > 0 && m->power > p->sla.max_power) m->violation += m->power / p->sla.max_power - 1;
  for (int d = 0; d < D; d++)
    if (p->mem_limit[d] > 0 && m->mem[d] > p->mem_limit[d]) m->violation += m->mem[d] / p->mem_limit[d] - 1;
}
