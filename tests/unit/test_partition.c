/* The placement solver against brute-force enumeration on small random graphs,
 * the errors of SLAs that cannot be met (with the best achievable values found
 * by enumeration), SLA parse errors, the cost model against hand-computed
 * numbers, profiles and plans through JSON and a bundle, and a large graph
 * planned within seconds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "partition/partition.h"

static int g_fail, g_checks;
#define CHECK(c, ...)                                                                                                  \
  do {                                                                                                                 \
    g_checks++;                                                                                                        \
    if (!(c)) {                                                                                                        \
      g_fail++;                                                                                                        \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                                      \
      printf(__VA_ARGS__);                                                                                             \
      printf("\n");                                                                                                    \
    }                                                                                                                  \
  } while (0)
#define NEAR(a, b, rel) (fabs((a) - (b)) <= (rel) * fmax(fabs(a), fabs(b)) + 1e-15)

static unsigned g_seed;
static double rnd(void) { /* xorshift: the same graphs on every machine */
  g_seed ^= g_seed << 13;
  g_seed ^= g_seed >> 17;
  g_seed ^= g_seed << 5;
  return (g_seed & 0xffffff) / (double)0x1000000;
}
static double rrange(double lo, double hi) { return lo * pow(hi / lo, rnd()); }

static part_graph_t *random_graph(int G) {
  part_graph_t *g = part_graph_create();
  for (int i = 0; i < G; i++) {
    part_group_t grp = {.name = "g", .node = i, .n_kernels = 1 + (int)(rnd() * 3)};
    grp.flops = rrange(1e5, 1e9);
    grp.bytes = rrange(1e4, 1e8);
    grp.mem = rrange(1e4, 1e8);
    grp.half = rnd() < 0.3;
    if (i == 0 || rnd() < 0.2) grp.in_bytes = rrange(1e3, 1e7);
    if (i == G - 1 || rnd() < 0.2) grp.out_bytes = rrange(1e3, 1e7);
    part_graph_add_group(g, &grp);
  }
  for (int j = 1; j < G; j++) {
    part_graph_add_edge(g, (int)(rnd() * j), j, rrange(1e3, 1e8));
    for (int i = 0; i < j; i++)
      if (rnd() < 0.2) part_graph_add_edge(g, i, j, rrange(1e3, 1e8));
  }
  return g;
}

static void random_device(int d, part_device_t *out) {
  static const char *targets[] = {"cpu", "opencl", "cuda"};
  part_device_defaults(targets[d], 0, NULL, out);
  out->flops_f32 = rrange(1e9, 1e13);
  out->flops_f16 = out->flops_f32 * rrange(0.25, 4);
  out->mem_bw = rrange(1e9, 1e12);
  out->launch = rrange(1e-6, 1e-4);
  out->h2d_bw = rrange(1e9, 5e10);
  out->d2h_bw = rrange(1e9, 5e10);
  out->link_latency = rrange(1e-6, 1e-4);
  out->power_active = rrange(10, 400);
  out->power_idle = out->power_active * rrange(0.05, 0.5);
  out->host_visible = d == 0;
  snprintf(out->vendor, sizeof out->vendor, "%s", d == 2 ? "NVIDIA" : "AMD");
}

/* The best feasible objective by enumeration (INFINITY when none). */
static double brute(const part_problem_t *p, int *best_assign) {
  int G = p->g->n_groups, D = p->n_dev;
  int a[16] = {0};
  double best = INFINITY;
  for (;;) {
    part_metrics_t m;
    part_evaluate(p, a, &m);
    if (m.allowed && m.violation <= 1e-9 && m.objective < best) {
      best = m.objective;
      if (best_assign) memcpy(best_assign, a, sizeof(int) * (size_t)G);
    }
    int i = 0;
    while (i < G && ++a[i] == D) a[i++] = 0;
    if (i == G) break;
  }
  return best;
}

/* Minimum of a figure over placements meeting the limits given (enumeration). */
typedef double (*figure_fn)(const part_metrics_t *m, int dev);
static double fig_latency(const part_metrics_t *m, int dev) { return (void)dev, m->latency; }
static double fig_power(const part_metrics_t *m, int dev) { return (void)dev, m->power; }
static double fig_mem(const part_metrics_t *m, int dev) { return m->mem[dev]; }
static double brute_min(const part_problem_t *p, figure_fn f, int dev) {
  int G = p->g->n_groups, D = p->n_dev, a[16] = {0};
  double best = INFINITY;
  for (;;) {
    part_metrics_t m;
    part_evaluate(p, a, &m);
    if (m.allowed && m.violation <= 1e-9) best = fmin(best, f(&m, dev));
    int i = 0;
    while (i < G && ++a[i] == D) a[i++] = 0;
    if (i == G) break;
  }
  return best;
}

static void test_random_vs_brute(void) {
  int solved = 0, infeasible = 0, binding = 0;
  for (int seed = 1; seed <= 150; seed++) {
    g_seed = 0x9e3779b9u * (unsigned)seed + 7;
    int G = 2 + (int)(rnd() * 7), D = 2 + (int)(rnd() * 2);
    part_graph_t *g = random_graph(G);
    part_device_t dev[3];
    for (int d = 0; d < D; d++) random_device(d, &dev[d]);
    part_sla_t sla;
    part_sla_default(&sla);
    sla.throughput = rnd() < 0.3;
    if (rnd() < 0.5) sla.lambda = rrange(1, 1e4);
    if (rnd() < 0.5) sla.mu = rrange(1e-4, 1e-1);
    if (rnd() < 0.3) sla.w_latency = rnd() < 0.3 ? 0 : rrange(0.1, 10);
    if (sla.w_latency == 0 && sla.lambda == 0 && sla.mu == 0) sla.w_latency = 1;
    for (int d = 0; d < D; d++) {
      part_sla_device_t *e = &sla.devices[sla.n_devices++];
      snprintf(e->match, sizeof e->match, "%s", dev[d].target);
      e->cost_per_hour = rnd() < 0.7 ? rrange(0.1, 10) : -1;
    }
    if (rnd() < 0.2) snprintf(sla.forbidden[sla.n_forbidden++], 64, "%s", dev[1 + (int)(rnd() * (D - 1))].target);
    if (rnd() < 0.2) snprintf(sla.preferred[sla.n_preferred++], 64, "vendor:%s", rnd() < 0.5 ? "amd" : "nvidia");
    /* Limits placed among the values placements reach, so that they bind. */
    part_problem_t p0;
    part_problem_init(&p0, g, dev, D, &sla);
    double lmin = brute_min(&p0, fig_latency, 0), pmin = brute_min(&p0, fig_power, 0);
    if (rnd() < 0.5) sla.max_latency = lmin * rrange(0.9, 3);
    if (rnd() < 0.4) sla.max_power = pmin * rrange(0.95, 2);
    if (rnd() < 0.4) {
      double total = 0;
      for (int i = 0; i < G; i++) total += g->groups[i].mem;
      sla.devices[0].memory_limit = total * rrange(0.2, 1.2);
    }
    part_problem_free(&p0);

    part_problem_t p;
    flagos_status_t st = part_problem_init(&p, g, dev, D, &sla);
    CHECK(!st, "seed %d: problem: %s", seed, flagos_status_message(st));
    int assign[16], ba[16];
    double want = brute(&p, ba);
    part_solve_info_t info;
    st = part_solve(&p, NULL, assign, &info);
    if (isinf(want)) {
      infeasible++;
      CHECK(st && strstr(flagos_status_message(st), "the SLA cannot be met"), "seed %d: brute force finds no placement but solve says %s",
            seed, st ? flagos_status_message(st) : "ok");
    } else {
      solved++;
      CHECK(!st, "seed %d: brute force finds objective %g, solve fails: %s", seed, want, st ? flagos_status_message(st) : "");
      if (!st) {
        part_metrics_t m;
        part_evaluate(&p, assign, &m);
        CHECK(m.allowed && m.violation <= 1e-6, "seed %d: plan violates the SLA (%g)", seed, m.violation);
        CHECK(NEAR(m.objective, want, 1e-6), "seed %d (G=%d D=%d %s): objective %.12g, enumeration %.12g", seed, G, D,
              info.method, m.objective, want);
        CHECK(info.mip_optimal, "seed %d: GLPK did not prove optimality", seed);
        /* GLPK alone (no greedy incumbent to fall back on) reaches the same optimum. */
        part_solve_options_t mo = {.mip_only = true};
        flagos_status_t st2 = part_solve(&p, &mo, assign, NULL);
        CHECK(!st2, "seed %d: GLPK alone: %s", seed, st2 ? flagos_status_message(st2) : "");
        if (!st2) {
          part_evaluate(&p, assign, &m);
          CHECK(m.allowed && m.violation <= 1e-6 && NEAR(m.objective, want, 1e-6),
                "seed %d: GLPK alone: objective %.12g, enumeration %.12g", seed, m.objective, want);
        }
        flagos_status_free(st2);
        /* A limit binds when the optimum without limits breaks it. */
        part_problem_t pu = p;
        pu.sla.max_latency = pu.sla.max_power = 0;
        for (int d = 0; d < D; d++) pu.mem_limit[d] = 0;
        int ua[16];
        brute(&pu, ua);
        part_metrics_t mu;
        part_evaluate(&p, ua, &mu);
        binding += mu.violation > 1e-9;
      }
    }
    flagos_status_free(st);
    part_problem_free(&p);
    part_graph_destroy(g);
  }
  printf("random graphs: %d solved (%d with a binding limit), %d infeasible, all against enumeration\n", solved,
         binding, infeasible);
  CHECK(solved >= 60 && infeasible >= 3 && binding >= 20, "too few cases of each kind: %d solved (%d binding), %d infeasible",
        solved, binding, infeasible);
}

/* Each limit below what any placement reaches: the error names it with the
 * enumeration's best value (the same 4 significant digits). */
static void test_infeasible(void) {
  for (int seed = 1; seed <= 12; seed++) {
    g_seed = 0x51ed27u * (unsigned)seed + 3;
    int G = 3 + (int)(rnd() * 4), D = 2;
    part_graph_t *g = random_graph(G);
    part_device_t dev[2];
    for (int d = 0; d < D; d++) random_device(d, &dev[d]);
    part_sla_t sla;
    part_sla_default(&sla);
    part_problem_t p;
    part_problem_init(&p, g, dev, D, &sla);
    int kind = seed % 3;
    char want[256];
    if (kind == 0) {
      double best = brute_min(&p, fig_latency, 0);
      sla.max_latency = best * 0.8;
      snprintf(want, sizeof want, "max_latency_ms = %g but the best achievable latency is %.4g ms", sla.max_latency * 1e3,
               best * 1e3);
    } else if (kind == 1) {
      double best = brute_min(&p, fig_power, 0);
      sla.max_power = best * 0.8;
      snprintf(want, sizeof want, "max_avg_power_w = %g but the best achievable average power is %.4g W", sla.max_power,
               best);
    } else {
      /* cpu forbidden: everything must fit on opencl's memory */
      snprintf(sla.forbidden[sla.n_forbidden++], 64, "cpu");
      double total = 0;
      for (int i = 0; i < G; i++) total += g->groups[i].mem;
      snprintf(sla.devices[0].match, 64, "opencl");
      sla.devices[0].memory_limit = total * 0.5;
      sla.devices[0].cost_per_hour = -1;
      sla.n_devices = 1;
      part_problem_free(&p);
      part_problem_init(&p, g, dev, D, &sla);
      (void)fig_mem;
      snprintf(want, sizeof want, "the memory limit of opencl:0 (%.4g MB, devices.*.memory_limit_mb) is below the least "
               "memory a placement needs there, %.4g MB", total * 0.5 / 1048576.0, total / 1048576.0);
    }
    part_problem_free(&p);
    part_problem_init(&p, g, dev, D, &sla);
    int assign[16];
    flagos_status_t st = part_solve(&p, NULL, assign, NULL);
    CHECK(st && strstr(flagos_status_message(st), want), "seed %d: expected '%s', got '%s'", seed, want,
          st ? flagos_status_message(st) : "success");
    flagos_status_free(st);
    part_problem_free(&p);
    part_graph_destroy(g);
  }
  /* Two limits, each violated even alone: both named. */
  g_seed = 4242;
  part_graph_t *g = random_graph(5);
  part_device_t dev[2];
  random_device(0, &dev[0]);
  random_device(1, &dev[1]);
  part_sla_t sla;
  part_sla_default(&sla);
  part_problem_t p;
  part_problem_init(&p, g, dev, 2, &sla);
  double lbest = brute_min(&p, fig_latency, 0), pbest = brute_min(&p, fig_power, 0);
  part_problem_free(&p);
  sla.max_latency = lbest / 2;
  sla.max_power = pbest / 2;
  part_problem_init(&p, g, dev, 2, &sla);
  int assign[8];
  flagos_status_t st = part_solve(&p, NULL, assign, NULL);
  char w1[128], w2[128];
  snprintf(w1, sizeof w1, "best achievable latency is %.4g ms", lbest * 1e3);
  snprintf(w2, sizeof w2, "best achievable average power is %.4g W", pbest);
  CHECK(st && strstr(flagos_status_message(st), w1) && strstr(flagos_status_message(st), w2),
        "two limits: expected '%s' and '%s' in '%s'", w1, w2, st ? flagos_status_message(st) : "success");
  flagos_status_free(st);
  part_problem_free(&p);
  /* Every device forbidden. */
  snprintf(sla.forbidden[0], 64, "cpu");
  snprintf(sla.forbidden[1], 64, "vendor:amd");
  sla.n_forbidden = 2;
  st = part_problem_init(&p, g, dev, 2, &sla);
  CHECK(st && strstr(flagos_status_message(st), "field 'forbidden' excludes every device"), "all forbidden: %s",
        st ? flagos_status_message(st) : "success");
  flagos_status_free(st);
  part_graph_destroy(g);
}

static void expect_sla_error(const char *json, const char *want) {
  part_sla_t s;
  flagos_status_t st = part_sla_parse(json, strlen(json), "sla.json", &s);
  CHECK(st && strstr(flagos_status_message(st), want), "SLA %s: expected '%s', got '%s'", json, want,
        st ? flagos_status_message(st) : "success");
  flagos_status_free(st);
}

static void test_sla_parse(void) {
  const char *ok = "{\"version\": 1, \"mode\": \"throughput\", \"objective\": {\"latency\": 2, \"lambda\": 0.5, \"mu\": 0.01},"
                   " \"max_latency_ms\": 12.5, \"max_avg_power_w\": 300,"
                   " \"devices\": {\"cuda:0\": {\"memory_limit_mb\": 1024, \"cost_per_hour\": 2.5}, \"cpu\": {\"cost_per_hour\": 0}},"
                   " \"preferred\": [\"vendor:NVIDIA\"], \"forbidden\": [\"opencl\"], \"solver_time_limit_s\": 2}";
  part_sla_t s;
  flagos_status_t st = part_sla_parse(ok, strlen(ok), "sla.json", &s);
  CHECK(!st, "valid SLA refused: %s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  CHECK(s.throughput && s.w_latency == 2 && s.lambda == 0.5 && s.mu == 0.01, "objective fields");
  CHECK(s.max_latency == 0.0125 && s.max_power == 300, "limits: %g s %g W", s.max_latency, s.max_power);
  CHECK(s.n_devices == 2 && strcmp(s.devices[0].match, "cuda:0") == 0 && s.devices[0].memory_limit == 1024.0 * 1048576 &&
            s.devices[0].cost_per_hour == 2.5 && s.devices[1].cost_per_hour == 0,
        "devices");
  CHECK(s.n_preferred == 1 && s.n_forbidden == 1 && strcmp(s.forbidden[0], "opencl") == 0 && s.time_limit == 2, "lists");
  expect_sla_error("{\"max_latency_ms\": -1}", "field 'max_latency_ms' must be a positive number");
  expect_sla_error("{\"max_latency_ms\": \"5\"}", "field 'max_latency_ms' must be a positive number");
  expect_sla_error("{\"max_avg_power_w\": 0}", "field 'max_avg_power_w' must be a positive number");
  expect_sla_error("{\"mode\": \"fast\"}", "field 'mode' must be \"latency\" or \"throughput\"");
  expect_sla_error("{\"objective\": {\"lamda\": 1}}", "unknown field 'objective.lamda'");
  expect_sla_error("{\"objective\": {\"latency\": 0}}", "field 'objective': at least one weight must be positive");
  expect_sla_error("{\"devices\": {\"cpu\": {\"memory_limit_mb\": -3}}}", "field 'devices.cpu.memory_limit_mb' must be a positive number");
  expect_sla_error("{\"devices\": {\"cpu\": {\"price\": 3}}}", "unknown field 'devices.cpu.price'");
  expect_sla_error("{\"devices\": {\"cuda:x\": {}}}", "field 'devices.cuda:x'");
  expect_sla_error("{\"forbidden\": \"cpu\"}", "field 'forbidden' must be an array of strings");
  expect_sla_error("{\"preferred\": [\"cpu\", 3]}", "field 'preferred[1]' must be a string");
  expect_sla_error("{\"max_latncy_ms\": 3}", "unknown field 'max_latncy_ms'");
  expect_sla_error("{\"version\": 2}", "field 'version' must be 1");
  expect_sla_error("{\"max_latency_ms\": 3", "not valid JSON");
  expect_sla_error("[1]", "an SLA is a JSON object");
}

/* Numbers worked out by hand (docs/sla.md's formulas). */
static void test_cost_model(void) {
  part_device_t gpu, cpu;
  part_device_defaults("opencl", 0, NULL, &gpu);
  gpu.flops_f32 = 1e9;
  gpu.flops_f16 = 4e9;
  gpu.mem_bw = 1e9;
  gpu.launch = 1e-6;
  gpu.host_visible = false;
  gpu.h2d_bw = 1e9;
  gpu.d2h_bw = 2e9;
  gpu.link_latency = 1e-5;
  gpu.power_active = 100;
  gpu.power_idle = 20;
  part_device_defaults("cpu", 0, NULL, &cpu);
  cpu.flops_f32 = cpu.flops_f16 = 1e8;
  cpu.mem_bw = 1e10;
  cpu.launch = 0;
  cpu.host_visible = true;
  cpu.power_active = 50;
  cpu.power_idle = 10;
  part_group_t a = {.name = "a", .flops = 2e6, .bytes = 1e6, .n_kernels = 2, .in_bytes = 1e6};
  /* 2 launches (2 us) + max(2e6/1e9, 1e6/1e9) = 2 ms + upload 1e6/1e9 + 10 us */
  CHECK(NEAR(part_group_time(&a, &gpu), 0.003012, 1e-12), "gpu time %.9g", part_group_time(&a, &gpu));
  /* cpu: max(2e6/1e8, 1e6/1e10) = 20 ms, no copies */
  CHECK(NEAR(part_group_time(&a, &cpu), 0.02, 1e-12), "cpu time %.9g", part_group_time(&a, &cpu));
  a.half = true; /* f16 peak: 2e6/4e9 = 0.5 ms < 1 ms of memory: memory-bound */
  CHECK(NEAR(part_group_time(&a, &gpu), 0.000002 + 0.001 + 0.001 + 0.00001, 1e-12), "gpu f16 %.9g", part_group_time(&a, &gpu));
  a.half = false;
  /* gpu -> cpu: download at 2 GB/s + 10 us; cpu -> gpu: upload at 1 GB/s + 10 us */
  CHECK(NEAR(part_link_time(1e6, &gpu, &cpu), 0.00051, 1e-12), "link g->c %.9g", part_link_time(1e6, &gpu, &cpu));
  CHECK(NEAR(part_link_time(1e6, &cpu, &gpu), 0.00101, 1e-12), "link c->g %.9g", part_link_time(1e6, &cpu, &gpu));

  /* Two groups a -> b, a on the gpu, b on the cpu. */
  part_graph_t *g = part_graph_create();
  part_graph_add_group(g, &a);
  part_group_t b = {.name = "b", .flops = 1e6, .bytes = 1e5, .n_kernels = 1, .out_bytes = 4e3, .mem = 5e5};
  part_graph_add_group(g, &b);
  g->groups[0].mem = 2e6;
  part_graph_add_edge(g, 0, 1, 1e6);
  part_device_t devs[2] = {cpu, gpu};
  part_sla_t sla;
  part_sla_default(&sla);
  sla.lambda = 2;
  sla.mu = 0.5;
  sla.n_devices = 2;
  snprintf(sla.devices[0].match, 64, "opencl");
  sla.devices[0].cost_per_hour = 36; /* 0.01 per second */
  sla.devices[0].memory_limit = 0;
  snprintf(sla.devices[1].match, 64, "cpu");
  sla.devices[1].cost_per_hour = 3.6; /* 0.001 per second */
  part_problem_t p;
  flagos_status_t st = part_problem_init(&p, g, devs, 2, &sla);
  CHECK(!st, "init");
  int assign[2] = {1, 0};
  part_metrics_t m;
  part_evaluate(&p, assign, &m);
  /* b on cpu: max(1e6/1e8, 1e5/1e10) = 10 ms. latency = 3.012 + 10 + 0.51 ms */
  double L = 0.003012 + 0.01 + 0.00051;
  CHECK(NEAR(m.latency, L, 1e-12), "latency %.9g want %.9g", m.latency, L);
  /* busy: gpu 3.012 + 0.51 ms, cpu 10 + 0.51 ms */
  CHECK(NEAR(m.busy[1], 0.003522, 1e-12) && NEAR(m.busy[0], 0.01051, 1e-12), "busy %g %g", m.busy[0], m.busy[1]);
  /* energy: (100-20)*busy_gpu + (50-10)*busy_cpu + (20+10)*L */
  double E = 80 * 0.003522 + 40 * 0.01051 + 30 * L;
  CHECK(NEAR(m.energy, E, 1e-12), "energy %.9g want %.9g", m.energy, E);
  CHECK(NEAR(m.power, E / L, 1e-12), "power");
  double C = (0.01 + 0.001) * L;
  CHECK(NEAR(m.cost, C, 1e-12), "cost %.9g want %.9g", m.cost, C);
  CHECK(NEAR(m.objective, L + 2 * C + 0.5 * E, 1e-12), "objective %.9g", m.objective);
  CHECK(m.transfers == 1 && m.transfer_bytes == 1e6, "transfers");
  CHECK(m.mem[1] == 2e6 && m.mem[0] == 5e5, "memory");
  /* Throughput mode: the period is the busiest device's time (cpu, 10.51 ms). */
  p.sla.throughput = true;
  part_evaluate(&p, assign, &m);
  CHECK(NEAR(m.period, 0.01051, 1e-12), "period %.9g", m.period);
  CHECK(NEAR(m.energy, 80 * 0.003522 + 40 * 0.01051 + 30 * 0.01051, 1e-12), "throughput energy %.9g", m.energy);
  part_problem_free(&p);
  part_graph_destroy(g);
}

static void test_profile_and_plan(void) {
  part_profile_t pr = {0};
  snprintf(pr.date, sizeof pr.date, "2026-01-01T00:00:00Z");
  pr.n_devices = 2;
  part_device_defaults("cpu", 0, NULL, &pr.dev[0]);
  part_device_defaults("opencl", 1, NULL, &pr.dev[1]);
  pr.dev[1].flops_f32 = 1.5e12;
  pr.dev[1].power_measured = true;
  pr.dev[1].calibrated = true;
  char *js = part_profile_to_json(&pr);
  part_profile_t back;
  flagos_status_t st = part_profile_parse(js, strlen(js), "p.json", &back);
  CHECK(!st && back.n_devices == 2, "profile round trip: %s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  const part_device_t *d = part_profile_find(&back, "opencl", 1);
  CHECK(d && d->flops_f32 == 1.5e12 && d->power_measured && d->calibrated && strcmp(d->id, "opencl:1") == 0,
        "profile device");
  free(js);
  const char *bad = "{\"format\": 1, \"devices\": [{\"device\": \"cpu:0\", \"peak_flops\": {\"f32\": 1}}]}";
  st = part_profile_parse(bad, strlen(bad), "p.json", &back);
  CHECK(st && strstr(flagos_status_message(st), "field 'devices[0].peak_flops.f16' is missing"), "profile error: %s",
        st ? flagos_status_message(st) : "success");
  flagos_status_free(st);

  /* A plan through a bundle section. */
  g_seed = 99;
  part_graph_t *g = random_graph(4);
  part_device_t devs[2];
  random_device(0, &devs[0]);
  random_device(1, &devs[1]);
  part_problem_t p;
  part_problem_init(&p, g, devs, 2, NULL);
  int assign[4] = {0, 1, 1, 0};
  const char *names[4] = {"n0_MatMul", "n1_Add", "n2_Relu", "n5_Add"};
  int nodes[4] = {0, 1, 2, 5};
  char *pj = part_plan_json(&p, assign, names, nodes);
  bundle_writer_t *w = bundle_writer_create();
  bundle_writer_add(w, "manifest", "{}", 2);
  bundle_writer_add(w, PART_PLAN_SECTION, pj, strlen(pj));
  void *img;
  size_t n;
  bundle_writer_to_memory(w, &img, &n);
  bundle_writer_destroy(w);
  bundle_file_t *f;
  st = bundle_file_from_memory(img, n, true, &f);
  part_plan_t *plan = NULL;
  if (!st) st = part_plan_load(f, &plan);
  CHECK(!st && plan, "plan load: %s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  if (plan) {
    CHECK(plan->n_devices == 2 && strcmp(plan->devices[1], "opencl:0") == 0 && plan->n_groups == 4, "plan devices");
    CHECK(part_plan_device_of(plan, "n2_Relu") == 1 && part_plan_device_of(plan, "n5_Add") == 0 &&
              part_plan_device_of(plan, "nope") == -1 && plan->groups[3].node == 5,
          "plan groups");
    part_metrics_t m;
    part_evaluate(&p, assign, &m);
    CHECK(NEAR(plan->latency, m.latency, 1e-12) && NEAR(plan->mem[1], m.mem[1], 1e-12), "plan predictions");
  }
  part_plan_free(plan);
  bundle_file_close(f);
  free(pj);
  part_problem_free(&p);
  part_graph_destroy(g);
  const char *badplan = "{\"format\": 1, \"devices\": [\"cpu:0\"], \"groups\": [{\"group\": \"a\", \"node\": 0, \"device\": 3}]}";
  st = part_plan_parse(badplan, strlen(badplan), &plan);
  CHECK(st && strstr(flagos_status_message(st), "groups[0]"), "bad plan: %s", st ? flagos_status_message(st) : "success");
  flagos_status_free(st);
}

/* A BERT-sized graph (1,000 groups, 3 devices): coarsened, planned in seconds,
 * and no worse than the best one-device placement. */
static void test_large(void) {
  g_seed = 12345;
  part_graph_t *g = random_graph(1000);
  part_device_t dev[3];
  for (int d = 0; d < 3; d++) random_device(d, &dev[d]);
  part_sla_t sla;
  part_sla_default(&sla);
  sla.time_limit = 2;
  sla.lambda = 10;
  sla.devices[0] = (part_sla_device_t){.match = "cuda", .memory_limit = 0, .cost_per_hour = 3};
  sla.n_devices = 1;
  part_problem_t p;
  part_problem_init(&p, g, dev, 3, &sla);
  int *assign = calloc(1000, sizeof(int)), *one = calloc(1000, sizeof(int));
  part_solve_info_t info;
  clock_t c0 = clock();
  flagos_status_t st = part_solve(&p, NULL, assign, &info);
  double cpu_s = (double)(clock() - c0) / CLOCKS_PER_SEC;
  CHECK(!st, "large: %s", st ? flagos_status_message(st) : "");
  flagos_status_free(st);
  CHECK(info.coarsened && info.n_coarse <= 200, "large: coarsened to %d", info.n_coarse);
  CHECK(cpu_s < 20, "large: %.2f s of CPU time", cpu_s);
  part_metrics_t m, m1;
  part_evaluate(&p, assign, &m);
  for (int d = 0; d < 3; d++) {
    for (int i = 0; i < 1000; i++) one[i] = d;
    part_evaluate(&p, one, &m1);
    CHECK(m.objective <= m1.objective * (1 + 1e-9), "large: worse than all on device %d (%g > %g)", d, m.objective,
          m1.objective);
  }
  printf("1000 groups: %s, %d coarse groups, %.2f s\n", info.method, info.n_coarse, info.seconds);
  free(assign);
  free(one);
  part_problem_free(&p);
  part_graph_destroy(g);
}

/* Measured times (compile --tune) in place of the roofline, against
 * hand-computed numbers; the plan JSON says which devices were measured. */
static void test_tune(void) {
  part_device_t gpu, cpu;
  part_device_defaults("opencl", 0, NULL, &gpu);
  gpu.flops_f32 = gpu.flops_f16 = 1e9;
  gpu.mem_bw = 1e9;
  gpu.launch = 1e-6;
  gpu.host_visible = false;
  gpu.h2d_bw = 1e9;
  gpu.d2h_bw = 2e9;
  gpu.link_latency = 1e-5;
  part_device_defaults("cpu", 0, NULL, &cpu);
  cpu.host_visible = true;
  part_graph_t *g = part_graph_create();
  part_group_t a = {.name = "a", .flops = 2e6, .bytes = 1e6, .n_kernels = 2, .in_bytes = 1e6};
  part_group_t b = {.name = "b", .flops = 1e6, .bytes = 1e5, .n_kernels = 1, .out_bytes = 4e3};
  part_graph_add_group(g, &a);
  part_graph_add_group(g, &b);
  part_graph_add_edge(g, 0, 1, 1e6);
  part_device_t devs[2] = {cpu, gpu};
  part_problem_t p;
  CHECK(!part_problem_init(&p, g, devs, 2, NULL), "init");
  double roof_a = p.t[0 * 2 + 1], roof_b = p.t[1 * 2 + 1];
  part_tune_t t;
  memset(&t, 0, sizeof t);
  /* cpu: a run takes 20 ms, kernels a 6 ms and b 10 ms: 4 ms of host overhead, 2 ms per group. */
  part_tune_dev_t *d = part_tune_add(&t, cpu.id, 2);
  d->run_s = 0.020;
  d->group[0] = strdup("b");
  d->time[0] = 0.010;
  d->group[1] = strdup("a");
  d->time[1] = 0.006;
  snprintf(t.missing[t.n_missing++], 32, "%s", gpu.id);
  part_problem_tune(&p, &t);
  CHECK(p.tuned[0] && !p.tuned[1], "tuned %d %d", p.tuned[0], p.tuned[1]);
  CHECK(NEAR(p.overhead[0], 0.002, 1e-12), "overhead %.9g", p.overhead[0]);
  CHECK(NEAR(p.t[0], 0.008, 1e-12) && NEAR(p.t[2], 0.012, 1e-12), "cpu times %.9g %.9g", p.t[0], p.t[2]);
  CHECK(p.t[1] == roof_a && p.t[3] == roof_b && p.measured[0] && !p.measured[1], "the gpu keeps the roofline");
  int on_cpu[2] = {0, 0};
  part_metrics_t m;
  part_evaluate(&p, on_cpu, &m);
  CHECK(NEAR(m.latency, 0.020, 1e-12), "single-device latency is the measured run: %.9g", m.latency);
  char *js = part_plan_json(&p, on_cpu, NULL, NULL);
  part_plan_t *pl = NULL;
  CHECK(js && !part_plan_parse(js, strlen(js), &pl), "plan parse");
  CHECK(pl && pl->tuned && pl->n_tuned == 1 && strcmp(pl->tuned_on[0], cpu.id) == 0, "plan says tuned on %s",
        pl && pl->n_tuned ? pl->tuned_on[0] : "-");
  CHECK(js && strstr(js, "\"modelled\":[\"opencl:0\"]") && strstr(js, "\"measured\":true"), "plan json %s", js);
  part_plan_free(pl);
  free(js);
  part_problem_free(&p);
  part_tune_free(&t);

  /* gpu: the profiled kernels (3 + 1 ms) exceed the 2 ms run less its modelled
   * copies (upload 1 ms + 10 us, download 2 us + 10 us): they are scaled to it. */
  CHECK(!part_problem_init(&p, g, devs, 2, NULL), "init");
  memset(&t, 0, sizeof t);
  d = part_tune_add(&t, gpu.id, 2);
  d->run_s = 0.002;
  d->group[0] = strdup("a");
  d->time[0] = 0.003;
  d->group[1] = strdup("b");
  d->time[1] = 0.001;
  part_problem_tune(&p, &t);
  double sc = (0.002 - 0.001022) / 0.004;
  CHECK(NEAR(p.kernel_scale[1], sc, 1e-12) && p.overhead[1] == 0, "scale %.9g", p.kernel_scale[1]);
  CHECK(NEAR(p.t[1], 0.003 * sc + 0.00101, 1e-12) && NEAR(p.t[3], 0.001 * sc + 0.000012, 1e-12), "gpu times %.9g %.9g",
        p.t[1], p.t[3]);
  int on_gpu[2] = {1, 1};
  part_evaluate(&p, on_gpu, &m);
  CHECK(NEAR(m.latency, 0.002, 1e-12), "gpu latency %.9g", m.latency);
  part_problem_free(&p);
  part_tune_free(&t);
  part_graph_destroy(g);
}

int main(void) {
  test_cost_model();
  test_tune();
  test_sla_parse();
  test_profile_and_plan();
  test_random_vs_brute();
  test_infeasible();
  test_large();
  printf("%d checks, %d failures\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
