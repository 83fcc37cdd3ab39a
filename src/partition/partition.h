/* Policy-driven placement (docs/sla.md): device profiles, the cost model, SLA
 * parsing, the placement solver (a mixed-integer program through GLPK, with a
 * greedy incumbent and coarsening of large graphs) and the plan a bundle
 * records for the runtime. */
#ifndef FLAGOS_PARTITION_H
#define FLAGOS_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "bundle/bundle.h"
#include "flagos/backend.h"
#include "ir/ir.h"

#define PART_MAX_DEVICES 8
#define PART_PROFILE_MAX 16
#define PART_PROFILE_FORMAT 1
#define PART_PLAN_FORMAT 1

/* ---- device profiles (part_profile.c) ---- */

typedef struct part_device {
  char id[32];     /* "cpu:0", "opencl:0": target (backend) name and device index */
  char target[16];
  int index;
  char name[128], vendor[64], driver_version[64], plugin_version[32];
  flagos_device_kind_t kind;
  bool host_visible;         /* device memory is host memory: no copies to or from the host */
  double flops_f32, flops_f16; /* peak FLOP/s (f16 also stands for bf16) */
  double mem_bw;             /* device memory bandwidth, bytes/s */
  double h2d_bw, d2h_bw;     /* host<->device bandwidth, bytes/s */
  double link_latency;       /* seconds per copy */
  double launch;             /* seconds per kernel launch */
  double power_active, power_idle; /* watts */
  bool power_measured;       /* false: declared or default, "estimated" */
  char power_source[64];
  uint64_t memory_bytes;     /* 0: unknown */
  bool calibrated;           /* false: the documented defaults (docs/sla.md) */
} part_device_t;

typedef struct part_profile {
  char date[32];
  char flagos_version[16];
  int n_devices;
  part_device_t dev[PART_PROFILE_MAX];
} part_profile_t;

/* $FLAGOS_CACHE_DIR/profiles.json, else ~/.cache/flagos/profiles.json. */
void part_profile_default_path(char *buf, size_t n);
/* FLAGOS_ERR_NOT_FOUND when the file does not exist; parse errors name the field. */
flagos_status_t part_profile_load(const char *path, part_profile_t *out);
flagos_status_t part_profile_parse(const char *json, size_t len, const char *what, part_profile_t *out);
flagos_status_t part_profile_save(const char *path, const part_profile_t *p);
char *part_profile_to_json(const part_profile_t *p);
/* The documented defaults for a device of `target` (di may be NULL when no
 * device is present: a compile for a chip the machine lacks). */
void part_device_defaults(const char *target, int index, const flagos_device_info_t *di, part_device_t *out);
const part_device_t *part_profile_find(const part_profile_t *p, const char *target, int index);

/* ---- the graph to place (part_graph.c) ---- */

typedef struct part_group {
  const char *name;  /* the manifest's "group" (kernel prefix) */
  int node;          /* index of its (first) node in the main graph */
  double flops;      /* useful FLOPs (docs/eaf.md) */
  double bytes;      /* bytes its kernels read and write */
  double mem;        /* device memory it holds: its weights and outputs */
  double in_bytes;   /* bytes it reads from graph inputs (uploaded from the host) */
  double out_bytes;  /* bytes it writes to graph outputs (downloaded to the host) */
  int n_kernels;
  bool half;         /* computes in f16/bf16 */
  int n_members;     /* groups of the original graph it stands for (coarsening) */
} part_group_t;

typedef struct part_edge {
  int src, dst;
  double bytes;
} part_edge_t;

typedef struct part_graph {
  fl_arena_t *arena;
  int n_groups, cap_groups;
  part_group_t *groups;
  int n_edges, cap_edges;
  part_edge_t *edges;
} part_graph_t;

part_graph_t *part_graph_create(void);
void part_graph_destroy(part_graph_t *g);
int part_graph_add_group(part_graph_t *g, const part_group_t *grp); /* returns its index */
/* Adds bytes to the edge src->dst (merged with an existing one). */
void part_graph_add_edge(part_graph_t *g, int src, int dst, double bytes);
/* Groups from the main graph's nodes: node_flops[i] < 0 means unknown (counted
 * 0), node_kernels[i] == 0 marks a node the runtime runs itself (not placed). */
flagos_status_t part_graph_from_fir(const fir_graph_t *fg, const double *node_flops, const int *node_kernels,
                                    const char *const *node_groups, part_graph_t **out);
/* Coarsening to at most max_groups: first chains (a group whose only consumer
 * has it as only producer), then the heaviest edges, then neighbours in node
 * order. map[i] gets the coarse group (0..return-1) of group i. */
int part_coarsen_map(const part_graph_t *g, int max_groups, int *map);

/* ---- SLA (part_sla.c, docs/sla.md) ---- */

typedef struct part_sla_device {
  char match[64];        /* "cpu", "opencl:1" or "vendor:NVIDIA" */
  double memory_limit;   /* bytes; 0: none */
  double cost_per_hour;  /* currency units per hour; < 0: not given */
} part_sla_device_t;

typedef struct part_sla {
  bool throughput;       /* mode "throughput": the objective's time is the busiest device's */
  double w_latency, lambda, mu;
  double max_latency;    /* seconds; 0: none */
  double max_power;      /* watts; 0: none */
  int n_devices;
  part_sla_device_t devices[PART_MAX_DEVICES * 2];
  int n_preferred, n_forbidden;
  char preferred[8][64], forbidden[8][64];
  double preference;     /* relative penalty of non-preferred devices */
  double time_limit;     /* solver seconds */
} part_sla_t;

void part_sla_default(part_sla_t *s);
/* Errors name the field: "sla.json: field 'max_latency_ms': must be a positive number". */
flagos_status_t part_sla_parse(const char *json, size_t len, const char *what, part_sla_t *out);
flagos_status_t part_sla_load(const char *path, part_sla_t *out);
bool part_sla_matches(const char *match, const part_device_t *d);

/* ---- cost model and evaluation (part_cost.c) ---- */

/* Roofline time of a group on a device plus launches and host transfers of graph inputs and outputs. */
double part_group_time(const part_group_t *g, const part_device_t *d);
/* A copy of `bytes` from device a to device b (0 when a == b). */
double part_link_time(double bytes, const part_device_t *a, const part_device_t *b);

/* ---- measured times (part_tune.c; `flagos compile --tune`, docs/sla.md "Tuning") ---- */

/* What running the model alone on one device measured, per run. */
typedef struct part_tune_dev {
  char id[32];        /* "cpu:0" */
  int runs, warmup;
  double run_s;       /* median wall time of a run of a planned session with every group here (what
                       * `flagos run` of such a plan reports), without the profiler */
  double single_run_s; /* the same in a session of this device alone (`flagos run --device`) */
  double kernel_s;    /* time inside kernels, all groups */
  double copy_s;      /* time inside copies (graph inputs and outputs) */
  int n_groups;
  char **group;       /* group names (the manifest's "group") */
  double *time;       /* kernel seconds of each group */
} part_tune_dev_t;

typedef struct part_tune {
  int n_dev;
  part_tune_dev_t dev[PART_MAX_DEVICES];
  int n_missing;      /* targets --tune asked for that have no device here: they stay modelled */
  char missing[PART_MAX_DEVICES][32];
} part_tune_t;

/* Adds a device's entry (id copied; names and times filled by the caller). */
part_tune_dev_t *part_tune_add(part_tune_t *t, const char *id, int n_groups);
void part_tune_free(part_tune_t *t);
/* Seconds of `group` on the device; false when it was not measured there. */
bool part_tune_group(const part_tune_dev_t *d, const char *group, double *seconds);
/* The measurements as a JSON object (the plan's "tuned", the section "tune"); malloc'ed. */
char *part_tune_json(const part_tune_t *t);

/* Everything the solver needs: times per group and device, per edge and pair,
 * and the SLA's limits resolved per device. */
typedef struct part_problem {
  const part_graph_t *g;
  int n_dev;
  part_device_t dev[PART_MAX_DEVICES];
  part_sla_t sla;
  double *t;       /* [group * n_dev + d], seconds */
  double *te;      /* [(edge * n_dev + a) * n_dev + b], seconds */
  double mem_limit[PART_MAX_DEVICES];  /* bytes; 0: none */
  double price[PART_MAX_DEVICES];      /* currency per second of use */
  bool allowed[PART_MAX_DEVICES];
  bool preferred[PART_MAX_DEVICES];
  /* After part_problem_tune: which times were measured, and the host overhead
   * per group each tuned device's times include. */
  bool tuned[PART_MAX_DEVICES];
  double overhead[PART_MAX_DEVICES];
  double kernel_scale[PART_MAX_DEVICES]; /* < 1: profiled kernels summed to more than a run */
  int n_measured[PART_MAX_DEVICES];
  bool *measured;  /* [group * n_dev + d]; NULL until tuned */
  const part_tune_t *tune;
} part_problem_t;

flagos_status_t part_problem_init(part_problem_t *p, const part_graph_t *g, const part_device_t *devs, int n_dev,
                                  const part_sla_t *sla);
void part_problem_free(part_problem_t *p);
/* Replaces the roofline of each (device, group) pair the tune measured by what
 * the runtime pays there: the group's kernel time, the device's host overhead
 * per group (a run's wall time less its kernel time and the modelled graph
 * input/output copies, spread evenly over the groups) and those copies. Devices
 * and groups it did not measure keep the model. The tune must outlive p. */
void part_problem_tune(part_problem_t *p, const part_tune_t *t);

typedef struct part_metrics {
  double latency;      /* s: sum of group times on their devices and of transfers */
  double period;       /* s: the objective's time: latency, or the busiest device's time in throughput mode */
  double busy[PART_MAX_DEVICES];
  double mem[PART_MAX_DEVICES];
  bool used[PART_MAX_DEVICES];
  double energy;       /* J per request */
  double power;        /* W: energy / period */
  double cost;         /* currency per request */
  double transfer_bytes, transfer_time;
  int transfers;
  double objective;    /* w*period + lambda*cost + mu*energy + preference penalty */
  double violation;    /* 0: every limit met; else the sum of the relative excesses */
  bool allowed;        /* no group on a forbidden device */
} part_metrics_t;

void part_evaluate(const part_problem_t *p, const int *assign, part_metrics_t *m);

/* ---- the solver (part_solve.c) ---- */

typedef struct part_solve_options {
  int max_groups;      /* coarsen above this many groups (0: 200) */
  bool no_mip;         /* greedy only */
  bool mip_only;       /* GLPK's answer alone, without the greedy incumbent (tests) */
} part_solve_options_t;

typedef struct part_solve_info {
  int n_groups, n_coarse;
  bool coarsened, mip_used, mip_optimal;
  double seconds;
  char method[64];
} part_solve_info_t;

/* assign gets one device index per group. An SLA that cannot be met is
 * FLAGOS_ERR_INVALID_ARGUMENT naming each violated limit and the best value
 * achievable. */
flagos_status_t part_solve(const part_problem_t *p, const part_solve_options_t *o, int *assign,
                           part_solve_info_t *info);

/* ---- plans (part_plan.c) ---- */

typedef struct part_plan_group {
  const char *group;
  int node;
  int device;
} part_plan_group_t;

typedef struct part_plan {
  fl_arena_t *arena;
  bool throughput;
  int n_devices;
  char devices[PART_MAX_DEVICES][32]; /* "cpu:0" */
  int n_groups;
  part_plan_group_t *groups;          /* in node order */
  double latency, power, cost, energy;
  double mem[PART_MAX_DEVICES];
  double transfer_bytes;
  bool tuned;                         /* made with measured times (compile --tune) */
  int n_tuned;
  char tuned_on[PART_MAX_DEVICES][32]; /* the devices measured */
} part_plan_t;

/* The bundle section holding the plan (JSON, docs/sla.md) and the SLA it was made for. */
#define PART_PLAN_SECTION "plan"
#define PART_SLA_SECTION "sla"

char *part_plan_json(const part_problem_t *p, const int *assign, const char *const *group_names, const int *group_nodes);
flagos_status_t part_plan_parse(const void *data, size_t len, part_plan_t **out);
/* The plan a bundle records; FLAGOS_ERR_NOT_FOUND when it has none. */
flagos_status_t part_plan_load(bundle_file_t *b, part_plan_t **out);
void part_plan_free(part_plan_t *p);
/* Device index of a group, or -1 when the plan does not name it. */
int part_plan_device_of(const part_plan_t *p, const char *group);

/* The --explain text. */
void part_explain(const part_problem_t *p, const int *assign, const part_solve_info_t *info, fl_buf_t *out);

#endif
