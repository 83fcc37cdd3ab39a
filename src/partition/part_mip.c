/* The placement program for GLPK (docs/sla.md, "The program"). Times enter in
 * milliseconds and memory in megabytes so that coefficients stay near 1.
 *
 * Columns: x[g,d] binary (group g on device d); y[e,a,b] in [0,1] for each edge
 * and ordered pair of distinct devices whose copy costs time, forced to 1 by
 * y >= x[src,a] + x[dst,b] - 1 when the edge's ends lie on a and b; u[d] >= x[g,d]
 * (device d used); z[d] = u[d] * period through z >= period - M(1 - u);
 * L (latency) and, in throughput mode, T >= busy[d] (the period). */
#include <glpk.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "partition/part_internal.h"
#include "partition/part_solve_internal.h"

#define MS 1e3
#define MB 1e-6

typedef struct mip {
  const part_problem_t *p;
  glp_prob *lp;
  int G, D, ncols;
  int n_y, *y_e, *y_a, *y_b, y0;   /* y columns start at y0 */
  int u0, z0, colL, colT, colP;    /* u[d] = u0 + d (0 when unused), z likewise */
  int w0;                          /* throughput: w[d] = 1 picks the device whose busy time T equals */
  bool need_z[PART_MAX_DEVICES];
  int ne, cap;
  int *ia, *ja;
  double *ar;
  double *acc;                     /* dense row accumulator, ncols + 1 */
} mip_t;

static int colx(const mip_t *m, int g, int d) { return 1 + g * m->D + d; }

static void put(mip_t *m, int row, int col, double v) {
  if (v == 0) return;
  if (m->ne + 1 >= m->cap) {
    m->cap = m->cap ? m->cap * 2 : 1024;
    m->ia = part_realloc(m->ia, sizeof(int) * (size_t)m->cap);
    m->ja = part_realloc(m->ja, sizeof(int) * (size_t)m->cap);
    m->ar = part_realloc(m->ar, sizeof(double) * (size_t)m->cap);
  }
  m->ne++;
  m->ia[m->ne] = row;
  m->ja[m->ne] = col;
  m->ar[m->ne] = v;
}

static int add_row(mip_t *m, int type, double lb, double ub) {
  int r = glp_add_rows(m->lp, 1);
  glp_set_row_bnds(m->lp, r, type, lb, ub);
  return r;
}

/* acc += c * busy[d] (ms). */
static void acc_busy(mip_t *m, int d, double c) {
  const part_problem_t *p = m->p;
  for (int g = 0; g < m->G; g++) m->acc[colx(m, g, d)] += c * p->t[g * m->D + d] * MS;
  for (int k = 0; k < m->n_y; k++)
    if (m->y_a[k] == d || m->y_b[k] == d)
      m->acc[m->y0 + k] += c * p->te[((size_t)m->y_e[k] * m->D + m->y_a[k]) * m->D + m->y_b[k]] * MS;
}

/* acc += c * energy (mJ). */
static void acc_energy(mip_t *m, double c) {
  for (int d = 0; d < m->D; d++) {
    acc_busy(m, d, c * (m->p->dev[d].power_active - m->p->dev[d].power_idle));
    if (m->need_z[d]) m->acc[m->z0 + d] += c * m->p->dev[d].power_idle;
  }
}

static void flush_row(mip_t *m, int row) {
  for (int j = 1; j <= m->ncols; j++) {
    put(m, row, j, m->acc[j]);
    m->acc[j] = 0;
  }
}

static void flush_obj(mip_t *m) {
  for (int j = 1; j <= m->ncols; j++) {
    glp_set_obj_coef(m->lp, j, m->acc[j]);
    m->acc[j] = 0;
  }
}

typedef struct cb_data {
  double *vals;
  bool done;
} cb_data_t;

static void callback(glp_tree *tree, void *info) {
  cb_data_t *c = info;
  if (glp_ios_reason(tree) == GLP_IHEUR && !c->done && c->vals) {
    c->done = true;
    glp_ios_heur_sol(tree, c->vals);
  }
}

/* The full column vector of a placement, for GLPK's incumbent. */
static double *incumbent_vals(const mip_t *m, const int *assign) {
  const part_problem_t *p = m->p;
  int D = m->D;
  double *v = part_calloc((size_t)m->ncols + 1, sizeof(double));
  double busy[PART_MAX_DEVICES] = {0}, L = 0;
  bool used[PART_MAX_DEVICES] = {0};
  for (int g = 0; g < m->G; g++) {
    int d = assign[g];
    v[colx(m, g, d)] = 1;
    L += p->t[g * D + d] * MS;
    busy[d] += p->t[g * D + d] * MS;
    used[d] = true;
  }
  for (int k = 0; k < m->n_y; k++) {
    const part_edge_t *e = &p->g->edges[m->y_e[k]];
    if (assign[e->src] == m->y_a[k] && assign[e->dst] == m->y_b[k]) {
      double t = p->te[((size_t)m->y_e[k] * D + m->y_a[k]) * D + m->y_b[k]] * MS;
      v[m->y0 + k] = 1;
      L += t;
      busy[m->y_a[k]] += t;
      busy[m->y_b[k]] += t;
    }
  }
  double P = L;
  v[m->colL] = L;
  if (m->colT) {
    int arg = 0;
    for (int d = 1; d < D; d++)
      if (busy[d] > busy[arg]) arg = d;
    P = busy[arg];
    v[m->colT] = P;
    v[m->w0 + arg] = 1;
  }
  for (int d = 0; d < D; d++)
    if (m->need_z[d]) {
      v[m->u0 + d] = used[d];
      v[m->z0 + d] = used[d] ? P : 0;
    }
  return v;
}

static bool mip_solve(const part_problem_t *p, const part_mip_req_t *r, int *assign, bool *optimal) {
  const part_graph_t *g = p->g;
  const part_sla_t *s = &p->sla;
  mip_t m = {.p = p, .G = g->n_groups, .D = p->n_dev};
  int G = m.G, D = m.D;
  *optimal = false;
  bool energy = (r->obj == PART_OBJ_SLA && s->mu > 0) || r->obj == PART_OBJ_POWER_Q || (r->use_power && s->max_power > 0);
  bool cost = r->obj == PART_OBJ_SLA && s->lambda > 0;
  for (int d = 0; d < D; d++) m.need_z[d] = (energy && p->dev[d].power_idle != 0) || (cost && p->price[d] > 0);

  m.lp = glp_create_prob();
  glp_set_obj_dir(m.lp, GLP_MIN);
  /* columns */
  glp_add_cols(m.lp, G * D);
  double bigM = 1;
  for (int i = 0; i < G; i++) {
    double mx = 0;
    for (int d = 0; d < D; d++) {
      int j = colx(&m, i, d);
      glp_set_col_kind(m.lp, j, GLP_BV);
      if (!p->allowed[d]) glp_set_col_bnds(m.lp, j, GLP_FX, 0, 0);
      mx = fmax(mx, p->t[i * D + d] * MS);
    }
    bigM += mx;
  }
  m.y_e = part_calloc((size_t)g->n_edges * (size_t)D * (size_t)D + 1, sizeof(int));
  m.y_a = part_calloc((size_t)g->n_edges * (size_t)D * (size_t)D + 1, sizeof(int));
  m.y_b = part_calloc((size_t)g->n_edges * (size_t)D * (size_t)D + 1, sizeof(int));
  for (int e = 0; e < g->n_edges; e++) {
    double mx = 0;
    for (int a = 0; a < D; a++)
      for (int b = 0; b < D; b++) {
        double t = p->te[((size_t)e * D + a) * D + b];
        if (a == b || t <= 0 || !p->allowed[a] || !p->allowed[b]) continue;
        m.y_e[m.n_y] = e;
        m.y_a[m.n_y] = a;
        m.y_b[m.n_y++] = b;
        mx = fmax(mx, t * MS);
      }
    bigM += mx;
  }
  m.y0 = G * D + 1;
  if (m.n_y) glp_add_cols(m.lp, m.n_y);
  for (int k = 0; k < m.n_y; k++) glp_set_col_bnds(m.lp, m.y0 + k, GLP_DB, 0, 1);
  m.u0 = glp_add_cols(m.lp, 2 * D);
  m.z0 = m.u0 + D;
  for (int d = 0; d < D; d++) {
    glp_set_col_bnds(m.lp, m.u0 + d, m.need_z[d] ? GLP_DB : GLP_FX, 0, m.need_z[d] ? 1 : 0);
    glp_set_col_bnds(m.lp, m.z0 + d, m.need_z[d] ? GLP_LO : GLP_FX, 0, 0);
  }
  m.colL = glp_add_cols(m.lp, 1);
  if (r->use_latency && s->max_latency > 0) glp_set_col_bnds(m.lp, m.colL, GLP_DB, 0, s->max_latency * MS);
  else glp_set_col_bnds(m.lp, m.colL, GLP_LO, 0, 0);
  m.colP = m.colL;
  if (s->throughput) {
    m.colT = m.colP = glp_add_cols(m.lp, 1);
    glp_set_col_bnds(m.lp, m.colT, GLP_LO, 0, 0);
    m.w0 = glp_add_cols(m.lp, D);
    for (int d = 0; d < D; d++) glp_set_col_kind(m.lp, m.w0 + d, GLP_BV);
  }
  m.ncols = glp_get_num_cols(m.lp);
  m.acc = part_calloc((size_t)m.ncols + 1, sizeof(double));

  /* rows */
  for (int i = 0; i < G; i++) {
    int row = add_row(&m, GLP_FX, 1, 1);
    for (int d = 0; d < D; d++) put(&m, row, colx(&m, i, d), 1);
  }
  for (int k = 0; k < m.n_y; k++) {
    const part_edge_t *e = &g->edges[m.y_e[k]];
    int row = add_row(&m, GLP_UP, 0, 1);
    put(&m, row, colx(&m, e->src, m.y_a[k]), 1);
    put(&m, row, colx(&m, e->dst, m.y_b[k]), 1);
    put(&m, row, m.y0 + k, -1);
    /* y <= x[src,a], y <= x[dst,b]: without them a copy that does not happen
     * could pad the period and lower the average power the limit sees. */
    row = add_row(&m, GLP_UP, 0, 0);
    put(&m, row, m.y0 + k, 1);
    put(&m, row, colx(&m, e->src, m.y_a[k]), -1);
    row = add_row(&m, GLP_UP, 0, 0);
    put(&m, row, m.y0 + k, 1);
    put(&m, row, colx(&m, e->dst, m.y_b[k]), -1);
  }
  for (int d = 0; d < D; d++) {
    if (!m.need_z[d]) continue;
    for (int i = 0; i < G; i++) {
      int row = add_row(&m, GLP_UP, 0, 0);
      put(&m, row, colx(&m, i, d), 1);
      put(&m, row, m.u0 + d, -1);
    }
    int row = add_row(&m, GLP_LO, -bigM, 0);
    put(&m, row, m.z0 + d, 1);
    put(&m, row, m.colP, -1);
    put(&m, row, m.u0 + d, -bigM);
  }
  {
    int row = add_row(&m, GLP_FX, 0, 0); /* L = sum of group and copy times */
    for (int i = 0; i < G; i++)
      for (int d = 0; d < D; d++) m.acc[colx(&m, i, d)] -= p->t[i * D + d] * MS;
    for (int k = 0; k < m.n_y; k++) m.acc[m.y0 + k] -= p->te[((size_t)m.y_e[k] * D + m.y_a[k]) * D + m.y_b[k]] * MS;
    m.acc[m.colL] += 1;
    flush_row(&m, row);
  }
  if (m.colT) {
    /* T >= busy[d] for every d, and T <= busy[d] + M(1 - w[d]) for the one d
     * that w picks: T is the maximum, not an upper bound that could pad the
     * period (the same reason as y's upper bounds). */
    int wrow = add_row(&m, GLP_FX, 1, 1);
    for (int d = 0; d < D; d++) {
      int row = add_row(&m, GLP_LO, 0, 0);
      acc_busy(&m, d, -1);
      m.acc[m.colT] += 1;
      flush_row(&m, row);
      row = add_row(&m, GLP_UP, 0, bigM);
      acc_busy(&m, d, -1);
      m.acc[m.colT] += 1;
      m.acc[m.w0 + d] += bigM;
      flush_row(&m, row);
      put(&m, wrow, m.w0 + d, 1);
    }
  }
  for (int d = 0; d < D; d++) {
    if (!r->use_mem[d] || p->mem_limit[d] <= 0) continue;
    int row = add_row(&m, GLP_UP, 0, p->mem_limit[d] * MB);
    for (int i = 0; i < G; i++) put(&m, row, colx(&m, i, d), g->groups[i].mem * MB);
  }
  if (r->use_power && s->max_power > 0) {
    int row = add_row(&m, GLP_UP, 0, 0); /* energy <= max power * period */
    acc_energy(&m, 1);
    m.acc[m.colP] -= s->max_power;
    flush_row(&m, row);
  }
  glp_load_matrix(m.lp, m.ne, m.ia, m.ja, m.ar);

  /* objective */
  switch (r->obj) {
  case PART_OBJ_SLA:
    m.acc[m.colP] += s->w_latency;
    for (int d = 0; d < D; d++) {
      if (m.need_z[d]) m.acc[m.z0 + d] += s->lambda * p->price[d];
      if (!p->preferred[d])
        for (int i = 0; i < G; i++) m.acc[colx(&m, i, d)] += s->preference * p->t[i * D + d] * MS;
    }
    if (s->mu > 0) acc_energy(&m, s->mu);
    break;
  case PART_OBJ_LATENCY: m.acc[m.colL] = 1; break;
  case PART_OBJ_MEM:
    for (int i = 0; i < G; i++) m.acc[colx(&m, i, r->obj_dev)] = g->groups[i].mem * MB;
    break;
  case PART_OBJ_POWER_Q:
    acc_energy(&m, 1);
    m.acc[m.colP] -= r->q;
    break;
  }
  flush_obj(&m);

  bool found = false;
  int term = glp_term_out(GLP_OFF); /* GLPK's own progress lines */
  double t0 = part_now(), tl = r->time_limit > 0.05 ? r->time_limit : 0.05;
  glp_scale_prob(m.lp, GLP_SF_AUTO);
  glp_smcp sm;
  glp_init_smcp(&sm);
  sm.msg_lev = GLP_MSG_OFF;
  sm.tm_lim = (int)(tl * 1e3);
  if (glp_simplex(m.lp, &sm) == 0 && glp_get_status(m.lp) == GLP_OPT) {
    cb_data_t cb = {r->incumbent ? incumbent_vals(&m, r->incumbent) : NULL, false};
    glp_iocp io;
    glp_init_iocp(&io);
    io.msg_lev = GLP_MSG_OFF;
    io.presolve = GLP_OFF;
    io.cb_func = callback;
    io.cb_info = &cb;
    io.fp_heur = cb.vals ? GLP_OFF : GLP_ON;
    double left = tl - (part_now() - t0);
    io.tm_lim = left > 0.01 ? (int)(left * 1e3) : 10;
    glp_intopt(m.lp, &io);
    int status = glp_mip_status(m.lp);
    if (status == GLP_OPT || status == GLP_FEAS) {
      found = true;
      *optimal = status == GLP_OPT;
      for (int i = 0; i < G; i++) {
        int bd = 0;
        for (int d = 0; d < D; d++)
          if (glp_mip_col_val(m.lp, colx(&m, i, d)) > glp_mip_col_val(m.lp, colx(&m, i, bd))) bd = d;
        assign[i] = bd;
      }
    }
    free(cb.vals);
  }
  glp_delete_prob(m.lp);
  glp_term_out(term);
  free(m.ia);
  free(m.ja);
  free(m.ar);
  free(m.acc);
  free(m.y_e);
  free(m.y_a);
  free(m.y_b);
  return found;
}

/* GLPK keeps an environment per thread (thread-local storage) from the first
 * call on, freed only by glp_free_env in that thread. The solve runs on a thread
 * of its own that frees it at its end, so that a caller's threads (a
 * flagos_session_set_sla from a short-lived thread, say) keep no GLPK memory,
 * and a caller that uses GLPK itself keeps its own environment untouched. */
typedef struct solve_job {
  const part_problem_t *p;
  const part_mip_req_t *r;
  int *assign;
  bool optimal, found;
} solve_job_t;

static void *solve_main(void *arg) {
  solve_job_t *j = arg;
  j->found = mip_solve(j->p, j->r, j->assign, &j->optimal);
  glp_free_env();
  return NULL;
}

bool part_mip_solve(const part_problem_t *p, const part_mip_req_t *r, int *assign, bool *optimal) {
  solve_job_t j = {.p = p, .r = r, .assign = assign};
  pthread_t th;
  if (pthread_create(&th, NULL, solve_main, &j) != 0) return mip_solve(p, r, assign, optimal);
  pthread_join(th, NULL);
  *optimal = j.optimal;
  return j.found;
}
