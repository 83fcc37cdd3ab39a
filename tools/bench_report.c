/* flagos bench's outputs: the JSON results, the markdown table, the SVG plot
 * (written directly: two panels, EAF and EAF per watt, log scale, one bar per
 * target in each case's row) and the comparison with an earlier run. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "bench.h"

static void jstr(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static flagos_status_t closed(FILE *f, const char *path) {
  return fclose(f) == 0 ? NULL : flagos_status_new(FLAGOS_ERR_IO, "cannot write %s", path);
}

flagos_status_t bench_write_json(const char *path, const bench_report_t *rep) {
  FILE *f = fopen(path, "w");
  if (!f) return flagos_status_new(FLAGOS_ERR_IO, "cannot write %s", path);
  time_t now = time(NULL);
  char date[64];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  fprintf(f, "{\"flagos_version\":\"%s\",\"date\":\"%s\",\"suite\":", FLAGOS_VERSION_STRING, date);
  jstr(f, rep->suite);
  fprintf(f, ",\"short\":%s,\"threshold_pct\":%g,\"results\":[", rep->short_mode ? "true" : "false", rep->threshold_pct);
  for (int i = 0; i < rep->n; i++) {
    const bench_result_t *r = &rep->r[i];
    fprintf(f, "%s\n{\"case\":", i ? "," : "");
    jstr(f, r->case_name);
    fprintf(f, ",\"kind\":");
    jstr(f, r->kind);
    fprintf(f, ",\"what\":");
    jstr(f, r->what);
    fprintf(f, ",\"target\":");
    jstr(f, r->target);
    fprintf(f, ",\"device\":");
    jstr(f, r->device);
    fprintf(f, ",\"device_name\":");
    jstr(f, r->device_name);
    if (r->error[0]) {
      fprintf(f, ",\"error\":");
      jstr(f, r->error);
      fputc('}', f);
      continue;
    }
    fprintf(f,
            ",\"runs\":%d,\"stable\":%s,\"median_ms\":%.9g,\"min_ms\":%.9g,\"p10_ms\":%.9g,\"p90_ms\":%.9g,"
            "\"spread_pct\":%.4g,\"flops\":%.17g,\"bytes\":%.17g,\"eaf_flops_per_s\":%.9g,\"bandwidth_bytes_per_s\":%.9g,"
            "\"power_w\":%.6g,\"power_estimated\":%s,\"power_source\":",
            r->runs, r->stable ? "true" : "false", r->median_ms, r->min_ms, r->p10_ms, r->p90_ms, r->spread_pct, r->flops,
            r->bytes, r->eaf, r->bw, r->watts, r->power_estimated ? "true" : "false");
    jstr(f, r->power_source);
    fprintf(f, ",\"eaf_per_w\":%.9g", r->eaf_per_w);
    if (r->has_old)
      fprintf(f, ",\"old_median_ms\":%.9g,\"change_pct\":%.4g,\"regression\":%s", r->old_median_ms, r->change_pct,
              r->regression ? "true" : "false");
    fputc('}', f);
  }
  fprintf(f, "\n]}\n");
  return closed(f, path);
}

static void md_row(FILE *f, const bench_result_t *r, bool compared) {
  if (r->error[0]) {
    fprintf(f, "| %s | %s | failed: %.80s | | | | | | | |%s\n", r->case_name, r->target, r->error, compared ? " |" : "");
    return;
  }
  char pw[48], eafw[32];
  if (r->watts > 0) {
    snprintf(pw, sizeof pw, "%.1f%s", r->watts, r->power_estimated ? " (estimated)" : "");
    snprintf(eafw, sizeof eafw, "%.4g", r->eaf_per_w / 1e9);
  } else {
    snprintf(pw, sizeof pw, "n/a");
    snprintf(eafw, sizeof eafw, "n/a");
  }
  fprintf(f, "| %s | %s | %d%s | %.4f | ±%.1f%% | %.4g | %.4g | %.4g | %s | %s |", r->case_name, r->target, r->runs,
          r->stable ? "" : "*", r->median_ms, r->spread_pct, r->flops / 1e9, r->eaf / 1e9, r->bw / 1e9, pw, eafw);
  if (compared) {
    if (!r->has_old) fprintf(f, " new |");
    else fprintf(f, " %+.1f%%%s |", r->change_pct, r->regression ? " **REGRESSION**" : "");
  }
  fputc('\n', f);
}

static void md_table(FILE *f, const bench_report_t *rep) {
  bool compared = false;
  for (int i = 0; i < rep->n; i++) compared = compared || rep->r[i].has_old;
  fprintf(f, "| case | target | runs | median ms | spread | GFLOP/run | EAF GFLOP/s | GB/s | power W | EAF/W GFLOP/s/W |%s\n",
          compared ? " vs old |" : "");
  fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|%s\n", compared ? "---:|" : "");
  for (int i = 0; i < rep->n; i++) md_row(f, &rep->r[i], compared);
  fprintf(f, "\nspread: half the 10th-90th percentile range of the run times, relative to the median; * the median had not "
             "settled within the run or time limit. EAF = useful FLOPs per run / median wall time; GB/s = bytes the nodes "
             "read and wrote per run / median wall time (docs/eaf.md).\n");
  /* the devices, once each */
  for (int i = 0; i < rep->n; i++) {
    bool seen = false;
    for (int j = 0; j < i; j++) seen = seen || strcmp(rep->r[j].device, rep->r[i].device) == 0;
    if (seen || rep->r[i].error[0]) continue;
    fprintf(f, "\n%s: %s; power: %s%s", rep->r[i].device, rep->r[i].device_name,
            rep->r[i].watts > 0 && rep->r[i].power_source[0] ? rep->r[i].power_source : "unknown",
            !(rep->r[i].watts > 0) ? "" : rep->r[i].power_estimated ? " (estimated)" : " (measured)");
  }
  fputc('\n', f);
}

flagos_status_t bench_write_markdown(const char *path, const bench_report_t *rep, FILE *also) {
  FILE *f = fopen(path, "w");
  if (!f) return flagos_status_new(FLAGOS_ERR_IO, "cannot write %s", path);
  fprintf(f, "# flagos bench: %s%s\n\n", rep->suite, rep->short_mode ? " (short)" : "");
  md_table(f, rep);
  if (also) md_table(also, rep);
  return closed(f, path);
}

/* ---- the plot ---- */
static const char *const k_colors[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"};

static void xml_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '&') fputs("&amp;", f);
    else if (*s == '"') fputs("&quot;", f);
    else fputc(*s, f);
  }
}

/* One panel: a row per case, a bar per target, log10 x axis over whole decades. */
static void panel(FILE *f, const bench_report_t *rep, const char *const *cases, int nc, const char *const *targets, int nt,
                  bool per_watt, double x0, double y0, double w, double row_h, double label_w) {
  double lo = INFINITY, hi = 0;
  for (int i = 0; i < rep->n; i++) {
    double v = per_watt ? rep->r[i].eaf_per_w : rep->r[i].eaf;
    if (rep->r[i].error[0] || !(v > 0)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", x0, y0 - 28,
          per_watt ? "EAF per watt (GFLOP/s/W)" : "EAF (GFLOP/s)");
  if (!(hi > 0)) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">no data</text>\n", x0 + label_w, y0 + 14);
    return;
  }
  double d0 = floor(log10(lo)), d1 = ceil(log10(hi));
  if (d1 <= d0) d1 = d0 + 1;
  double pw = w - label_w - 70, px = x0 + label_w, ph = row_h * nc;
  for (double d = d0; d <= d1 + 1e-9; d += 1) {
    double x = px + pw * (d - d0) / (d1 - d0);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x, y0 - 6, x, y0 + ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%g</text>\n", x, y0 - 10,
            pow(10, d) / 1e9);
  }
  for (int ci = 0; ci < nc; ci++) {
    double ry = y0 + row_h * ci;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", px - 6, ry + row_h / 2 + 4);
    xml_text(f, cases[ci]);
    fputs("</text>\n", f);
    double bh = (row_h - 6) / (nt > 0 ? nt : 1);
    for (int ti = 0; ti < nt; ti++) {
      for (int i = 0; i < rep->n; i++) {
        const bench_result_t *r = &rep->r[i];
        if (strcmp(r->case_name, cases[ci]) != 0 || strcmp(r->target, targets[ti]) != 0 || r->error[0]) continue;
        double v = per_watt ? r->eaf_per_w : r->eaf;
        if (!(v > 0)) continue;
        double bw = pw * (log10(v) - d0) / (d1 - d0), by = ry + 3 + bh * ti;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"%s><title>", px, by,
                bw > 1 ? bw : 1, bh - 1, k_colors[ti % 7], per_watt && r->power_estimated ? " fill-opacity=\"0.55\"" : "");
        xml_text(f, r->case_name);
        fprintf(f, " on %s: %.4g %s%s</title></rect>\n", r->target, v / 1e9, per_watt ? "GFLOP/s/W" : "GFLOP/s",
                per_watt && r->power_estimated ? " (power estimated)" : "");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"9\">%.3g%s</text>\n", px + (bw > 1 ? bw : 1) + 3, by + bh - 2,
                v / 1e9, per_watt && r->power_estimated ? " est." : "");
      }
    }
  }
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", px, y0 - 6, px, y0 + ph);
}

flagos_status_t bench_write_svg(const char *path, const bench_report_t *rep) {
  const char **cases = calloc((size_t)rep->n + 1, sizeof(char *)), **targets = calloc((size_t)rep->n + 1, sizeof(char *));
  if (!cases || !targets) {
    free(cases);
    free(targets);
    return flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  int nc = 0, nt = 0;
  for (int i = 0; i < rep->n; i++) {
    bool sc = false, st = false;
    for (int j = 0; j < nc; j++) sc = sc || strcmp(cases[j], rep->r[i].case_name) == 0;
    for (int j = 0; j < nt; j++) st = st || strcmp(targets[j], rep->r[i].target) == 0;
    if (!sc) cases[nc++] = rep->r[i].case_name;
    if (!st) targets[nt++] = rep->r[i].target;
  }
  double row_h = 8.0 + 12.0 * (nt > 0 ? nt : 1), panel_w = 560, label_w = 170, top = 104;
  double height = top + row_h * nc + 44, width = 2 * panel_w + 40;
  FILE *f = fopen(path, "w");
  if (!f) {
    free(cases);
    free(targets);
    return flagos_status_new(FLAGOS_ERR_IO, "cannot write %s", path);
  }
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
          "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
          width, height, width, height);
  fprintf(f, "<text x=\"20\" y=\"22\" font-size=\"15\" font-weight=\"bold\">flagos bench: ");
  xml_text(f, rep->suite);
  fprintf(f, "%s</text>\n", rep->short_mode ? " (short)" : "");
  for (int t = 0; t < nt; t++) {
    fprintf(f, "<rect x=\"%.0f\" y=\"32\" width=\"12\" height=\"12\" fill=\"%s\"/>", 20 + 110.0 * t, k_colors[t % 7]);
    fprintf(f, "<text x=\"%.0f\" y=\"43\" font-size=\"12\">", 36 + 110.0 * t);
    xml_text(f, targets[t]);
    fputs("</text>\n", f);
  }
  fprintf(f, "<text x=\"%.0f\" y=\"43\" font-size=\"11\" fill=\"#555\">log scale; pale bars and \"est.\": power "
             "estimated, not measured</text>\n", 20 + 110.0 * nt + 10);
  panel(f, rep, cases, nc, targets, nt, false, 10, top, panel_w, row_h, label_w);
  panel(f, rep, cases, nc, targets, nt, true, panel_w + 30, top, panel_w, row_h, label_w);
  /* say which targets have no bars in the per-watt panel, rather than leave a silent gap */
  for (int t = 0, k = 0; t < nt; t++) {
    bool any = false;
    for (int i = 0; i < rep->n; i++) any = any || (!strcmp(rep->r[i].target, targets[t]) && rep->r[i].watts > 0);
    if (any) continue;
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" fill=\"#555\">", panel_w + 30 + label_w,
            top + row_h * nc + 20 + 14.0 * k++);
    xml_text(f, targets[t]);
    fputs(": no power figure (its plugin reports none)</text>\n", f);
  }
  fputs("</svg>\n", f);
  free(cases);
  free(targets);
  return closed(f, path);
}

/* ---- --compare ---- */
flagos_status_t bench_compare(const char *old_path, bench_report_t *rep, int *n_regressions) {
  *n_regressions = 0;
  void *text;
  size_t len;
  FL_TRY(fl_read_file(old_path, &text, &len));
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *res = root ? cJSON_GetObjectItem(root, "results") : NULL;
  if (!cJSON_IsArray(res)) {
    cJSON_Delete(root);
    return flagos_status_new(FLAGOS_ERR_INVALID_ARGUMENT, "%s: not a flagos bench JSON file (no \"results\")", old_path);
  }
  for (int i = 0; i < rep->n; i++) {
    bench_result_t *r = &rep->r[i];
    if (r->error[0]) continue;
    const cJSON *o;
    cJSON_ArrayForEach(o, res) {
      const cJSON *c = cJSON_GetObjectItem(o, "case"), *t = cJSON_GetObjectItem(o, "target");
      const cJSON *m = cJSON_GetObjectItem(o, "median_ms"), *sp = cJSON_GetObjectItem(o, "spread_pct");
      if (!cJSON_IsString(c) || !cJSON_IsString(t) || !cJSON_IsNumber(m) || m->valuedouble <= 0) continue;
      if (strcmp(c->valuestring, r->case_name) != 0 || strcmp(t->valuestring, r->target) != 0) continue;
      r->has_old = true;
      r->old_median_ms = m->valuedouble;
      r->change_pct = 100.0 * (r->median_ms / r->old_median_ms - 1.0);
      /* noise: a change within both runs' spreads is not a regression */
      double tol = rep->threshold_pct, noise = r->spread_pct + (cJSON_IsNumber(sp) ? sp->valuedouble : 0);
      if (noise > tol) tol = noise;
      r->regression = r->change_pct > tol;
      if (r->regression) (*n_regressions)++;
      break;
    }
  }
  cJSON_Delete(root);
  return NULL;
}
