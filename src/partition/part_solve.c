/* Placement: coarsening, a greedy incumbent with local search, and the
 * mixed-integer program (part_mip.c) that proves or improves it. The program
 * and its linearisation are documented in docs/sla.md ("The program"). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "partition/part_internal.h"
#include "partition/part_solve_internal.h"

double part_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool part_feasible(const part_metrics_t *m) { return m->allowed && m->violation <= PART_TOL; }

bool part_better(const part_metrics_t *a, const part_metrics_t *b) {
  if (a->allowed != b->allowed) return a->allowed;
  bool fa = a->violation <= PART_TOL, fb = b->violation <= PART_TOL;
  if (fa != fb) return fa;
  if (!fa) return a->violation < b->violation * (1 - 1e-12);
  return a->objective < b->objective - 1e-12 * fabs(b->objective);
}

/* Moves single groups while that helps; a move may leave a limit violated only
 * if the violation shrinks. */
static void local_search(const part_problem_t *p, int *assign, part_metrics_t *cur, int max_passes, double deadline) {
  int G = p->g->n_groups, D = p->n_dev;
  for (int pass = 0; pass < max_passes; pass++) {
    bool moved = false;
    for (int i = 0; i < G; i++) {
      int keep = assign[i];
      for (int d = 0; d < D; d++) {
        if (d == assign[i] || !p->allowed[d]) continue;
        int was = assign[i];
        assign[i] = d;
        part_metrics_t m;
        part_evaluate(p, assign, &m);
        if (part_better(&m, cur)) {
          *cur = m;
          moved = true;
        } else {
          assign[i] = was;
        }
      }
      (void)keep;
      if ((i & 63) == 0 && part_now() > deadline) return;
    }
    if (!moved) return;
  }
}

/* Starts from the best one-device placement and from every group on its fastest
 * allowed device, then improves the better start by local search. */
void part_greedy(const part_problem_t *p, int *assign, part_metrics_t *out, double deadline) {
  int G = p->g->n_groups, D = p->n_dev;
  int *tmp = part_calloc((size_t)G + 1, sizeof(int));
  bool have = false;
  part_metrics_t best = {0}, m;
  for (int d = 0; d < D; d++) {
    if (!p->allowed[d]) continue;
    for (int i = 0; i < G; i++) tmp[i] = d;
    part_evaluate(p, tmp, &m);
    if (!have || part_better(&m, &best)) {
      best = m;
      memcpy(assign, tmp, sizeof(int) * (size_t)G);
      have = true;
    }
  }
  for (int i = 0; i < G; i++) {
    int bd = -1;
    for (int d = 0; d < D; d++)
      if (p->allowed[d] && (bd < 0 || p->t[i * D + d] < p->t[i * D + bd])) bd = d;
    tmp[i] = bd;
  }
  part_evaluate(p, tmp, &m);
  if (part_better(&m, &best)) {
    best = m;
    memcpy(assign, tmp, sizeof(int) * (size_t)G);
  }
  free(tmp);
  local_search(p, assign, &best, 50, deadline);
  *out = best;
}

/* The coarse problem: each coarse group's time is the sum of its members'
 * times, each coarse edge's time the sum of the fine edges it stands for, so a
 * coarse placement evaluates exactly as its expansion does. */
static void coarse_problem(const part_problem_t *fp, const int *map, int nc, part_graph_t *cg, part_problem_t *cp) {
  const part_graph_t *g = fp->g;
  int D = fp->n_dev;
  *cp = *fp;
  cp->g = cg;
  for (int c = 0; c < nc; c++) part_graph_add_group(cg, &(part_group_t){.name = NULL, .node = -1, .n_members = 0});
  for (int c = 0; c < nc; c++) cg->groups[c].n_members = 0;
  for (int i = 0; i < g->n_groups; i++) {
    part_group_t *C = &cg->groups[map[i]];
    const part_group_t *F = &g->groups[i];
    if (!C->name) {
      C->name = F->name;
      C->node = F->node;
    }
    C->flops += F->flops;
    C->bytes += F->bytes;
    C->mem += F->mem;
    C->n_kernels += F->n_kernels;
    C->n_members += F->n_members;
  }
  cp->t = part_calloc((size_t)nc * (size_t)D, sizeof(double));
  for (int i = 0; i < g->n_groups; i++)
    for (int d = 0; d < D; d++) cp->t[map[i] * D + d] += fp->t[i * D + d];
  /* Coarse edges: one per (coarse src, coarse dst), found through a hash table. */
  int cap = 16;
  while (cap < 2 * g->n_edges + 2) cap *= 2;
  int *slot = part_calloc((size_t)cap, sizeof(int));
  for (int s = 0; s < cap; s++) slot[s] = -1;
  cp->te = part_calloc(((size_t)g->n_edges + 1) * (size_t)D * (size_t)D, sizeof(double));
  for (int e = 0; e < g->n_edges; e++) {
    int a = map[g->edges[e].src], b = map[g->edges[e].dst];
    if (a == b) continue;
    unsigned h = ((unsigned)a * 2654435761u) ^ ((unsigned)b * 40503u);
    int s = (int)(h & (unsigned)(cap - 1)), ce = -1;
    while (slot[s] >= 0) {
      if (cg->edges[slot[s]].src == a && cg->edges[slot[s]].dst == b) {
        ce = slot[s];
        break;
      }
      s = (s + 1) & (cap - 1);
    }
    if (ce < 0) {
      if (cg->n_edges == cg->cap_edges) {
        cg->cap_edges = cg->cap_edges ? cg->cap_edges * 2 : 64;
        cg->edges = part_realloc(cg->edges, sizeof(*cg->edges) * (size_t)cg->cap_edges);
      }
      ce = cg->n_edges++;
      cg->edges[ce] = (part_edge_t){a, b, 0};
      slot[s] = ce;
    }
    cg->edges[ce].bytes += g->edges[e].bytes;
    for (int x = 0; x < D * D; x++) cp->te[(size_t)ce * D * D + x] += fp->te[(size_t)e * D * D + x];
  }
  free(slot);
}

flagos_status_t part_solve(const part_problem_t *p, const part_solve_options_t *o, int *assign,
                           part_solve_info_t *info) {
  part_solve_options_t dflt = {0};
  if (!o) o = &dflt;
  part_solve_info_t inf = {0};
  double t0 = part_now(), limit = p->sla.time_limit > 0 ? p->sla.time_limit : 5;
  int G = p->g->n_groups, D = p->n_dev;
  inf.n_groups = inf.n_coarse = G;
  if (G == 0) {
    snprintf(inf.method, sizeof inf.method, "nothing to place");
    if (info) *info = inf;
    return NULL;
  }
  int maxg = o->max_groups > 0 ? o->max_groups : 200;
  int *map = part_calloc((size_t)G, sizeof(int));
  part_graph_t *cg = NULL;
  part_problem_t cp;
  const part_problem_t *sp = p;
  if (G > maxg) {
    int nc = part_coarsen_map(p->g, maxg, map);
    cg = part_graph_create();
    coarse_problem(p, map, nc, cg, &cp);
    sp = &cp;
    inf.coarsened = true;
    inf.n_coarse = nc;
  } else {
    for (int i = 0; i < G; i++) map[i] = i;
  }
  int nc = sp->g->n_groups;
  int *ga = part_calloc((size_t)nc, sizeof(int)), *ma = part_calloc((size_t)nc, sizeof(int));
  part_metrics_t gm, mm;
  part_greedy(sp, ga, &gm, t0 + limit / 4);
  int *best = ga;
  if (o->mip_only) gm.allowed = false; /* anything GLPK finds wins */
  snprintf(inf.method, sizeof inf.method, "greedy");
  if (!o->no_mip) {
    part_mip_req_t r = {.obj = PART_OBJ_SLA, .use_latency = true, .use_power = true, .time_limit = limit - (part_now() - t0)};
    for (int d = 0; d < D; d++) r.use_mem[d] = true;
    r.incumbent = part_feasible(&gm) && !o->mip_only ? ga : NULL;
    bool optimal = false;
    if (part_mip_solve(sp, &r, ma, &optimal)) {
      inf.mip_used = true;
      inf.mip_optimal = optimal;
      part_evaluate(sp, ma, &mm);
      if (part_better(&mm, &gm) || (optimal && part_feasible(&mm) && !part_better(&gm, &mm))) {
        best = ma;
        snprintf(inf.method, sizeof inf.method, "GLPK branch and bound (%s)", optimal ? "optimal" : "time limit");
      } else if (optimal) {
        snprintf(inf.method, sizeof inf.method, "greedy, proven optimal by GLPK");
      }
    }
  }
  part_metrics_t bm;
  part_evaluate(sp, best, &bm);
  if (o->mip_only && best == ga) bm.allowed = false; /* GLPK found nothing */
  flagos_status_t st = NULL;
  if (!part_feasible(&bm)) {
    st = part_diagnose(sp, t0 + 2 * limit);
  } else {
    for (int i = 0; i < G; i++) assign[i] = best[map[i]];
    if (inf.coarsened) {
      part_metrics_t fm;
      part_evaluate(p, assign, &fm);
      local_search(p, assign, &fm, 5, part_now() + limit / 4);
    }
  }
  free(ga);
  free(ma);
  free(map);
  if (cg) {
    free(cp.t);
    free(cp.te);
    part_graph_destroy(cg);
  }
  inf.seconds = part_now() - t0;
  if (info) *info = inf;
  return st;
}
