/* When no placement meets the SLA: for each limit, the best value achievable
 * while the other limits hold (the program solved again without that limit,
 * minimising the limited quantity). A limit whose best value still exceeds it
 * is named in the error; when every limit can be met alone but not together,
 * each is named with its best value alone. */
#include <math.h>
#include <string.h>

#include "partition/part_internal.h"
#include "partition/part_solve_internal.h"

typedef enum { LIM_LATENCY, LIM_POWER, LIM_MEM } lim_kind_t;

typedef struct lim {
  lim_kind_t kind;
  int dev;
  double limit;
} lim_t;

/* Best value of limit k's quantity with the other limits enforced (others) or
 * none; false when no placement meets the enforced ones. */
static bool best_value(const part_problem_t *p, const lim_t *k, bool others, double tl, double *best) {
  int G = p->g->n_groups;
  int *a = part_calloc((size_t)G + 1, sizeof(int)), *prev = part_calloc((size_t)G + 1, sizeof(int));
  part_mip_req_t r = {.use_latency = others && k->kind != LIM_LATENCY, .use_power = others && k->kind != LIM_POWER,
                      .time_limit = tl};
  for (int d = 0; d < p->n_dev; d++) r.use_mem[d] = others && !(k->kind == LIM_MEM && k->dev == d);
  bool ok, opt;
  part_metrics_t m;
  if (k->kind == LIM_LATENCY) {
    r.obj = PART_OBJ_LATENCY;
    ok = part_mip_solve(p, &r, a, &opt);
    if (ok) part_evaluate(p, a, &m), *best = m.latency;
  } else if (k->kind == LIM_MEM) {
    r.obj = PART_OBJ_MEM;
    r.obj_dev = k->dev;
    ok = part_mip_solve(p, &r, a, &opt);
    if (ok) part_evaluate(p, a, &m), *best = m.mem[k->dev];
  } else {
    /* Average power is a ratio (energy / period): Dinkelbach's iteration,
     * minimising energy - q * period and updating q, from a placement that
     * meets the other limits. */
    r.obj = PART_OBJ_LATENCY;
    ok = part_mip_solve(p, &r, a, &opt);
    if (ok) {
      part_evaluate(p, a, &m);
      double q = m.power;
      r.obj = PART_OBJ_POWER_Q;
      r.time_limit = tl / 4; /* up to 10 more solves within about the budget of one limit */
      for (int it = 0; it < 10; it++) {
        memcpy(prev, a, sizeof(int) * (size_t)G);
        r.q = q;
        r.incumbent = prev;
        if (!part_mip_solve(p, &r, a, &opt)) break;
        part_evaluate(p, a, &m);
        if (m.power >= q * (1 - 1e-9)) break;
        q = m.power;
      }
      *best = q;
    }
  }
  free(a);
  free(prev);
  return ok;
}

static void describe(fl_buf_t *b, const part_problem_t *p, const lim_t *k, double best, bool alone) {
  const char *cond = alone ? " even with the other limits lifted" : "";
  switch (k->kind) {
  case LIM_LATENCY:
    fl_buf_printf(b, "max_latency_ms = %g but the best achievable latency is %.4g ms%s", k->limit * 1e3, best * 1e3, cond);
    break;
  case LIM_POWER:
    fl_buf_printf(b, "max_avg_power_w = %g but the best achievable average power is %.4g W%s", k->limit, best, cond);
    break;
  case LIM_MEM:
    fl_buf_printf(b, "the memory limit of %s (%.4g MB%s) is below the least memory a placement needs there, %.4g MB%s",
                  p->dev[k->dev].id, k->limit / 1048576.0,
                  p->dev[k->dev].memory_bytes && (double)p->dev[k->dev].memory_bytes == k->limit ? ", the device's size"
                                                                                               : ", devices.*.memory_limit_mb",
                  best / 1048576.0, cond);
    break;
  }
}

flagos_status_t part_diagnose(const part_problem_t *p, double deadline) {
  lim_t lims[PART_MAX_DEVICES + 2];
  int n = 0;
  if (p->sla.max_latency > 0) lims[n++] = (lim_t){LIM_LATENCY, 0, p->sla.max_latency};
  if (p->sla.max_power > 0) lims[n++] = (lim_t){LIM_POWER, 0, p->sla.max_power};
  for (int d = 0; d < p->n_dev; d++)
    if (p->mem_limit[d] > 0 && p->allowed[d]) lims[n++] = (lim_t){LIM_MEM, d, p->mem_limit[d]};
  fl_buf_t b = {0};
  int named = 0;
  for (int i = 0; i < n; i++) {
    double tl = fmax(0.2, (deadline - part_now()) / (2 * (n - i)));
    double best;
    if (best_value(p, &lims[i], true, tl, &best) && best > lims[i].limit * (1 + PART_TOL)) {
      fl_buf_puts(&b, named++ ? "; " : "");
      describe(&b, p, &lims[i], best, false);
    }
  }
  if (!named) {
    /* No limit fails alone with the others held: either the others cannot hold
     * either, or the limits conflict. Each limit's best value on its own tells. */
    double alone[PART_MAX_DEVICES + 2];
    bool known[PART_MAX_DEVICES + 2];
    for (int i = 0; i < n; i++) {
      double tl = fmax(0.2, (deadline - part_now()) / (2 * (n - i)));
      known[i] = best_value(p, &lims[i], false, tl, &alone[i]);
    }
    for (int i = 0; i < n; i++)
      if (known[i] && alone[i] > lims[i].limit * (1 + PART_TOL)) {
        fl_buf_puts(&b, named++ ? "; " : "");
        describe(&b, p, &lims[i], alone[i], true);
      }
    if (named) {
      flagos_status_t st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the SLA cannot be met: %s", b.data);
      fl_buf_free(&b);
      return st;
    }
    for (int i = 0; i < n; i++) {
      if (!known[i]) continue;
      fl_buf_puts(&b, named++ ? "; " : "");
      if (lims[i].kind == LIM_MEM)
        fl_buf_printf(&b, "memory limit of %s = %.4g MB (best alone %.4g MB)", p->dev[lims[i].dev].id,
                      lims[i].limit / 1048576.0, alone[i] / 1048576.0);
      else if (lims[i].kind == LIM_LATENCY)
        fl_buf_printf(&b, "max_latency_ms = %g (best alone %.4g ms)", lims[i].limit * 1e3, alone[i] * 1e3);
      else
        fl_buf_printf(&b, "max_avg_power_w = %g (best alone %.4g W)", lims[i].limit, alone[i]);
    }
    flagos_status_t st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT,
                                "the SLA cannot be met: its limits cannot hold together: %s",
                                named ? b.data : "no placement meets them (the solver found none in its time limit)");
    fl_buf_free(&b);
    return st;
  }
  flagos_status_t st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the SLA cannot be met: %s", b.data);
  fl_buf_free(&b);
  return st;
}
