/* flagos bench (cmd_bench.c runs a suite, bench_report.c writes the JSON, the
 * markdown table and the SVG plot, and compares with an earlier JSON). */
#ifndef FLAGOS_BENCH_H
#define FLAGOS_BENCH_H

#include "cli.h"

/* One (case, target) measurement. */
typedef struct bench_result {
  char case_name[96];
  char kind[16];          /* "op", "model" */
  char what[128];         /* operator and input types, or the model file */
  char target[32];
  char device[64];
  char device_name[128];
  int runs;
  bool stable;            /* the median settled before the run or time limit */
  double median_ms, min_ms, p10_ms, p90_ms, spread_pct;
  double flops, bytes;    /* per run (the profiler's count) */
  double eaf, bw;         /* FLOP/s, byte/s over the median */
  double watts;           /* 0 unknown */
  bool power_estimated;
  char power_source[96];
  double eaf_per_w;
  char error[256];        /* the case failed on this target: why */
  /* --compare */
  bool has_old, regression;
  double old_median_ms, change_pct;
} bench_result_t;

typedef struct bench_report {
  const char *suite;
  bool short_mode;
  double threshold_pct;
  bench_result_t *r;
  int n;
} bench_report_t;

flagos_status_t bench_write_json(const char *path, const bench_report_t *rep);
/* The markdown table, to the file and (when f is not NULL) to f. */
flagos_status_t bench_write_markdown(const char *path, const bench_report_t *rep, FILE *also);
flagos_status_t bench_write_svg(const char *path, const bench_report_t *rep);
/* Marks each result slower than the old file's same (case, target) by more
 * than the threshold (or the two spreads, if larger); returns how many regressed. */
flagos_status_t bench_compare(const char *old_path, bench_report_t *rep, int *n_regressions);

#endif
