/* Shared by the solver's files: the MIP builder and the diagnosis of SLAs that
 * cannot be met. */
#ifndef FLAGOS_PART_SOLVE_INTERNAL_H
#define FLAGOS_PART_SOLVE_INTERNAL_H

#include "partition/partition.h"

/* Relative slack allowed on limits: the MIP's own feasibility tolerance. */
#define PART_TOL 1e-6

typedef enum part_obj {
  PART_OBJ_SLA,     /* the SLA's objective */
  PART_OBJ_LATENCY, /* latency alone */
  PART_OBJ_MEM,     /* memory held on device obj_dev */
  PART_OBJ_POWER_Q  /* energy - q * period (Dinkelbach's step for average power) */
} part_obj_t;

typedef struct part_mip_req {
  part_obj_t obj;
  int obj_dev;
  double q;
  bool use_latency, use_power;
  bool use_mem[PART_MAX_DEVICES];
  double time_limit;      /* seconds */
  const int *incumbent;   /* a placement meeting the enforced limits, or NULL */
} part_mip_req_t;

double part_now(void);
bool part_feasible(const part_metrics_t *m);
bool part_better(const part_metrics_t *a, const part_metrics_t *b);
void part_greedy(const part_problem_t *p, int *assign, part_metrics_t *out, double deadline);
/* True when GLPK found an integer solution (written to assign). */
bool part_mip_solve(const part_problem_t *p, const part_mip_req_t *r, int *assign, bool *optimal);
/* The error for an SLA no placement meets: each violated limit and the best value achievable. */
flagos_status_t part_diagnose(const part_problem_t *p, double deadline);

#endif
