/* `flagos bench --short` on the default suite, as CI runs it: every case runs on
 * cpu, the JSON's FLOPs per run match docs/eaf.md's formulas (worked out here
 * for each case's shapes), EAF and EAF/W are consistent with the reported
 * median and power, the markdown table and the SVG plot are written, and
 * --compare marks a case that got slower (and only that). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "flagos/flagos.h"

#include "check.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  size_t got = fread(b, 1, (size_t)n, f);
  fclose(f);
  b[got] = 0;
  return b;
}

static cJSON *load_json(const char *path) {
  char *t = slurp(path);
  cJSON *j = t ? cJSON_Parse(t) : NULL;
  free(t);
  CHECK(j != NULL, "%s missing or not JSON", path);
  return j;
}

static int run(const char *cmd) {
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static const cJSON *result_of(const cJSON *res, const char *name) {
  const cJSON *r;
  cJSON_ArrayForEach(r, res) {
    const cJSON *c = cJSON_GetObjectItem(r, "case"), *t = cJSON_GetObjectItem(r, "target");
    if (cJSON_IsString(c) && !strcmp(c->valuestring, name) && cJSON_IsString(t) && !strcmp(t->valuestring, "cpu")) return r;
  }
  return NULL;
}

static double num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

int main(void) {
  char suite[512], out[512], cmd[8192], path[1024];
  snprintf(suite, sizeof suite, "%s/bench/suites/default.json", FLAGOS_SOURCE_DIR);
  snprintf(out, sizeof out, "%s/tests/bench-short", FLAGOS_BINARY_DIR);
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s/flagos' bench '%s' --short --targets cpu -o '%s' > '%s.log' 2>&1", out,
           FLAGOS_BINARY_DIR, suite, out, out);
  int rc = run(cmd);
  CHECK(rc == 0, "flagos bench --short exited %d (log: %s.log)", rc, out);

  snprintf(path, sizeof path, "%s/bench.json", out);
  cJSON *res_root = load_json(path), *suite_root = load_json(suite);
  if (!res_root || !suite_root) return 1;
  const cJSON *res = cJSON_GetObjectItem(res_root, "results"), *c;
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(res_root, "short")), "bench.json does not say short");
  int expected = 0;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(suite_root, "cases")) {
    if (cJSON_IsFalse(cJSON_GetObjectItem(c, "short"))) continue;
    expected++;
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const cJSON *r = result_of(res, name);
    CHECK(r != NULL, "%s: no cpu result", name);
    if (!r) continue;
    CHECK(!cJSON_GetObjectItem(r, "error"), "%s failed: %s", name,
          cJSON_IsString(cJSON_GetObjectItem(r, "error")) ? cJSON_GetObjectItem(r, "error")->valuestring : "");
    double med = num(r, "median_ms"), flops = num(r, "flops"), eaf = num(r, "eaf_flops_per_s"), w = num(r, "power_w");
    CHECK(num(r, "runs") >= 3, "%s: %g runs, short mode runs at least 3", name, num(r, "runs"));
    CHECK(med > 0 && num(r, "p10_ms") <= med && med <= num(r, "p90_ms") && num(r, "min_ms") <= num(r, "p10_ms"),
          "%s: median %g outside [p10 %g, p90 %g] or min %g above p10", name, med, num(r, "p10_ms"), num(r, "p90_ms"),
          num(r, "min_ms"));
    CHECK(fabs(eaf - flops / (med / 1e3)) <= 1e-6 * eaf, "%s: EAF %g is not flops / median = %g", name, eaf,
          flops / (med / 1e3));
    CHECK(fabs(num(r, "bandwidth_bytes_per_s") - num(r, "bytes") / (med / 1e3)) <= 1e-6 * num(r, "bandwidth_bytes_per_s"),
          "%s: bandwidth is not bytes / median", name);
    CHECK(w > 0 && fabs(num(r, "eaf_per_w") - eaf / w) <= 1e-6 * eaf / w, "%s: EAF/W %g with EAF %g and %g W", name,
          num(r, "eaf_per_w"), eaf, w);
  }
  int n_results = cJSON_GetArraySize(res);
  CHECK(n_results == expected, "%d results for %d short cases on cpu", n_results, expected);

  /* FLOPs per run from docs/eaf.md, for each case's shapes */
  struct {
    const char *name;
    double flops;
  } want[] = {
      {"matmul_f32_512", 2.0 * 512 * 512 * 512},
      {"matmul_f16_256", 2.0 * 256 * 256 * 256},
      {"gemm_f32_bias", 2.0 * 256 * 1024 * 1024},
      {"conv3x3_f32", 2.0 * 1 * 64 * 56 * 56 * 64 * 3 * 3},
      {"conv_depthwise_f32", 2.0 * 1 * 128 * 56 * 56 * 1 * 3 * 3},
      {"add_f32_1M", 1024.0 * 1024},
      {"gelu_f32_1M", 8.0 * 1024 * 1024},
      {"softmax_f32", 5.0 * 512 * 1024},
      {"layernorm_f32", 7.0 * 512 * 1024},
      {"reducesum_f32", 1024.0 * 1024},
      {"attention_f32", 1.0 * 8 * 128 * 128 * (2.0 * (64 + 64) + 5)},
      /* examples/mlp.onnx at batch 256: MatMul 16->32, Add, Relu, MatMul 32->4, Add */
      {"mlp_onnx", 2.0 * 256 * 16 * 32 + 256 * 32 + 256 * 32 + 2.0 * 256 * 32 * 4 + 256 * 4},
      /* LayerNorm, MatMul 512->2048, Gelu, MatMul 2048->512, Add on [128, 512] */
      {"ffn_block", 7.0 * 128 * 512 + 2.0 * 128 * 512 * 2048 + 8.0 * 128 * 2048 + 2.0 * 128 * 2048 * 512 + 128.0 * 512},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const cJSON *r = result_of(res, want[i].name);
    CHECK(r && num(r, "flops") == want[i].flops, "%s: %.17g FLOPs per run, expected %.17g", want[i].name,
          r ? num(r, "flops") : -1, want[i].flops);
  }

  snprintf(path, sizeof path, "%s/bench.md", out);
  char *md = slurp(path);
  CHECK(md && strstr(md, "| case | target | runs | median ms | spread | GFLOP/run | EAF GFLOP/s | GB/s | power W |"),
        "bench.md has no table header");
  CHECK(md && count(md, "| cpu |") == n_results, "bench.md has %d cpu rows, expected %d", md ? count(md, "| cpu |") : 0,
        n_results);
  free(md);
  snprintf(path, sizeof path, "%s/bench.svg", out);
  char *svg = slurp(path);
  CHECK(svg && !strncmp(svg, "<svg ", 5) && strstr(svg, "</svg>\n") && !strstr(svg, "</svg>\n<"), "bench.svg is not one svg element");
  /* one bar (with its tooltip) per result in each panel: EAF and EAF per watt */
  CHECK(svg && count(svg, "<title>") == 2 * n_results, "bench.svg has %d bars, expected %d", svg ? count(svg, "<title>") : 0,
        2 * n_results);
  CHECK(svg && strstr(svg, "EAF (GFLOP/s)") && strstr(svg, "EAF per watt"), "bench.svg lacks its panel titles");
  free(svg);

  /* --compare: an old run far faster on matmul_f32_512 is a regression; one far slower is not.
   * The old medians are extremes (1 ns, 1e9 ms) so that load on the machine running the
   * test cannot turn the comparison around: this checks --compare's logic, not a speed. */
  for (int slower = 0; slower < 2; slower++) {
    cJSON *old = cJSON_Duplicate(res_root, 1);
    cJSON *r = (cJSON *)result_of(cJSON_GetObjectItem(old, "results"), "matmul_f32_512");
    cJSON_SetNumberValue(cJSON_GetObjectItem(r, "median_ms"), slower ? 1e9 : 1e-6);
    cJSON_SetNumberValue(cJSON_GetObjectItem(r, "spread_pct"), 0);
    char old_path[600], out2[600];
    snprintf(old_path, sizeof old_path, "%s/old-%d.json", out, slower);
    snprintf(out2, sizeof out2, "%s/compare-%d", out, slower);
    char *text = cJSON_Print(old);
    FILE *f = fopen(old_path, "w");
    if (f) {
      fputs(text, f);
      fclose(f);
    }
    free(text);
    cJSON_Delete(old);
    snprintf(cmd, sizeof cmd,
             "'%s/flagos' bench '%s' --short --targets cpu --filter matmul_f32_512 --compare '%s' --fail-on-regression "
             "-o '%s' > '%s.log' 2>&1",
             FLAGOS_BINARY_DIR, suite, old_path, out2, out2);
    rc = run(cmd);
    CHECK(rc == (slower ? 0 : 3), "compare against a %s old run: exit %d", slower ? "slower" : "faster", rc);
    snprintf(path, sizeof path, "%s/bench.json", out2);
    cJSON *cmp = load_json(path);
    const cJSON *cr = cmp ? result_of(cJSON_GetObjectItem(cmp, "results"), "matmul_f32_512") : NULL;
    CHECK(cr && cJSON_IsBool(cJSON_GetObjectItem(cr, "regression")) &&
              cJSON_IsTrue(cJSON_GetObjectItem(cr, "regression")) == !slower,
          "compare (%s old run): regression flag wrong", slower ? "slower" : "faster");
    CHECK(cr && (slower ? num(cr, "change_pct") < 0 : num(cr, "change_pct") > 50), "change %g%%", cr ? num(cr, "change_pct") : 0);
    snprintf(path, sizeof path, "%s/bench.md", out2);
    char *m2 = slurp(path);
    CHECK(m2 && (strstr(m2, "REGRESSION") != NULL) == !slower, "bench.md regression mark wrong");
    free(m2);
    cJSON_Delete(cmp);
  }
  cJSON_Delete(res_root);
  cJSON_Delete(suite_root);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
