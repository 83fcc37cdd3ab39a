/* Reading a recorded profile: the summary and per-group totals of the public
 * API, and the Chrome trace-event JSON (docs/profiling.md describes its layout). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/profile.h"

static const char *const k_dir_name[] = {"h2d", "d2h", "d2d"};

void flagos_session_profile_reset(flagos_session_t *s) {
  if (s && rt_session_profiler(s)) rt_prof_reset(rt_session_profiler(s));
}

flagos_status_t flagos_session_profile_summary(const flagos_session_t *s, flagos_profile_summary_t *out) {
  if (!s || !out) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "session or output is NULL");
  memset(out, 0, sizeof(*out));
  const rt_prof_t *p = rt_session_profiler(s);
  if (!p) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the session has not profiled (flagos_session_enable_profiling)");
  rt_prof_view_t v;
  rt_prof_view(p, &v);
  snprintf(out->device, sizeof out->device, "%s", v.device);
  snprintf(out->device_name, sizeof out->device_name, "%s", v.device_name);
  out->runs = v.runs;
  out->wall_ms = v.wall_ms;
  out->peak_mem_bytes = v.peak_mem;
  for (int64_t i = 0; i < v.n_evs; i++) {
    const rt_pev_t *e = &v.evs[i];
    double ms = (e->t1_us - e->t0_us) / 1e3;
    if (e->kind == RT_PEV_KERNEL) {
      out->kernel_events++;
      out->kernel_ms += ms;
      out->flops += e->flops;
      out->kernel_bytes += e->bytes;
    } else if (e->kind == RT_PEV_COPY) {
      out->copy_events++;
      out->copy_ms += ms;
      out->copy_bytes += e->bytes;
      double *d[] = {&out->copy_bytes_h2d, &out->copy_bytes_d2h, &out->copy_bytes_d2d};
      *d[e->dir] += e->bytes;
    } else if (e->label && strcmp(e->label, "prepare") == 0) {
      out->host_ms += ms;
    }
  }
  return NULL;
}

typedef struct group_total {
  const rt_node_t *node;
  int64_t calls;
  double ms, flops, bytes;
} group_total_t;

static int by_node(const void *a, const void *b) {
  const group_total_t *x = a, *y = b;
  return x->node < y->node ? -1 : x->node > y->node;
}

static int by_time_desc(const void *a, const void *b) {
  const group_total_t *x = a, *y = b;
  return x->ms > y->ms ? -1 : x->ms < y->ms;
}

int flagos_session_profile_nodes(const flagos_session_t *s, flagos_profile_node_t *out, int max) {
  const rt_prof_t *p = s ? rt_session_profiler(s) : NULL;
  if (!p) return 0;
  rt_prof_view_t v;
  rt_prof_view(p, &v);
  group_total_t *g = calloc((size_t)v.n_evs + 1, sizeof(*g));
  if (!g) return 0;
  int64_t n = 0;
  for (int64_t i = 0; i < v.n_evs; i++)
    if (v.evs[i].kind == RT_PEV_KERNEL)
      g[n++] = (group_total_t){v.evs[i].node, 1, (v.evs[i].t1_us - v.evs[i].t0_us) / 1e3, v.evs[i].flops, v.evs[i].bytes};
  qsort(g, (size_t)n, sizeof(*g), by_node);
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (m > 0 && g[m - 1].node == g[i].node) {
      g[m - 1].calls++;
      g[m - 1].ms += g[i].ms;
      g[m - 1].flops += g[i].flops;
      g[m - 1].bytes += g[i].bytes;
    } else {
      g[m++] = g[i];
    }
  }
  qsort(g, (size_t)m, sizeof(*g), by_time_desc);
  for (int64_t i = 0; i < m && i < max && out; i++)
    out[i] = (flagos_profile_node_t){g[i].node->group, g[i].node->node->op_type, g[i].node->node->name,
                                     g[i].calls,           g[i].ms,                  g[i].flops,
                                     g[i].bytes};
  free(g);
  return (int)m;
}

/* ---- Chrome trace-event JSON ---- */
static void json_str(fl_buf_t *b, const char *s) {
  fl_buf_putc(b, '"');
  for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c; c++) {
    if (*c == '"' || *c == '\\') fl_buf_printf(b, "\\%c", *c);
    else if (*c < 0x20) fl_buf_printf(b, "\\u%04x", *c);
    else fl_buf_putc(b, (char)*c);
  }
  fl_buf_putc(b, '"');
}

static void meta(fl_buf_t *b, const char *what, int pid, int tid, const char *name) {
  fl_buf_printf(b, "{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":", what, pid, tid);
  json_str(b, name);
  fl_buf_puts(b, "}},\n");
}

static void sort_index(fl_buf_t *b, int pid, int idx) {
  fl_buf_printf(b, "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"sort_index\":%d}},\n", pid,
                idx);
}

static void x_begin(fl_buf_t *b, const char *name, const char *cat, int pid, int tid, double t0, double t1) {
  fl_buf_puts(b, "{\"name\":");
  json_str(b, name);
  double dur = t1 - t0;
  fl_buf_printf(b, ",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{", cat, pid, tid, t0,
                dur > 0 ? dur : 0);
}

static void kernel_event(fl_buf_t *b, const rt_pev_t *e, int pid, double base) {
  const rt_node_t *rn = e->node;
  x_begin(b, rn->group, "kernel", pid, 1, e->t0_us - base, e->t1_us - base);
  fl_buf_puts(b, "\"op\":");
  json_str(b, rn->node->op_type);
  /* the ONNX nodes the group covers: one until fusion lands */
  fl_buf_puts(b, ",\"onnx_nodes\":[");
  json_str(b, rn->node->name);
  fl_buf_puts(b, "],\"kernels\":[");
  for (int k = 0; k < rn->n_steps; k++) {
    if (k) fl_buf_putc(b, ',');
    json_str(b, rn->steps[k].kernel);
  }
  fl_buf_putc(b, ']');
  if (e->library) {
    fl_buf_puts(b, ",\"library\":");
    json_str(b, e->library);
  }
  fl_buf_printf(b, ",\"flops\":%.17g,\"bytes\":%.17g,\"run\":%d}},\n", e->flops, e->bytes, e->run);
}

static void write_session(fl_buf_t *b, const rt_prof_view_t *v, int idx, double base) {
  int pid = idx + 1, htid_run = 2 * idx + 2, htid = 2 * idx + 1;
  char name[256];
  snprintf(name, sizeof name, "%s %s", v->device, v->device_name);
  meta(b, "process_name", pid, 0, name);
  sort_index(b, pid, pid);
  meta(b, "thread_name", pid, 1, "stream 0 (default)");
  snprintf(name, sizeof name, "%s: runtime", v->device);
  meta(b, "thread_name", 0, htid, name);
  snprintf(name, sizeof name, "%s: runs", v->device);
  meta(b, "thread_name", 0, htid_run, name);
  for (int64_t i = 0; i < v->n_evs; i++) {
    const rt_pev_t *e = &v->evs[i];
    if (e->kind == RT_PEV_KERNEL) {
      kernel_event(b, e, pid, base);
    } else if (e->kind == RT_PEV_COPY) {
      snprintf(name, sizeof name, "copy %s", k_dir_name[e->dir]);
      x_begin(b, name, "copy", pid, 1, e->t0_us - base, e->t1_us - base);
      fl_buf_printf(b, "\"bytes\":%.17g,\"direction\":\"%s\",\"run\":%d}},\n", e->bytes, k_dir_name[e->dir], e->run);
    } else {
      bool run = strcmp(e->label, "run") == 0;
      if (e->node) snprintf(name, sizeof name, "%s %s", e->label, e->node->group);
      else snprintf(name, sizeof name, "%s", e->label);
      x_begin(b, name, "host", 0, run ? htid_run : htid, e->t0_us - base, e->t1_us - base);
      if (e->node) {
        fl_buf_puts(b, "\"op\":");
        json_str(b, e->node->node->op_type);
        fl_buf_puts(b, ",\"onnx_nodes\":[");
        json_str(b, e->node->node->name);
        fl_buf_puts(b, "],");
      }
      fl_buf_printf(b, "\"run\":%d}},\n", e->run);
    }
  }
  for (int64_t i = 0; i < v->n_mem; i++)
    fl_buf_printf(b, "{\"name\":\"device memory\",\"ph\":\"C\",\"pid\":%d,\"tid\":0,\"ts\":%.3f,\"args\":{\"bytes\":%llu}},\n",
                  pid, v->mem[i].t_us - base, (unsigned long long)v->mem[i].bytes);
}

flagos_status_t flagos_profile_write_trace(const char *path, flagos_session_t *const *sessions, int n) {
  if (!path || (n > 0 && !sessions)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "trace path or sessions is NULL");
  rt_prof_view_t *v = calloc((size_t)n + 1, sizeof(*v));
  if (!v) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  double base = 0;
  for (int i = 0; i < n; i++) {
    const rt_prof_t *p = sessions[i] ? rt_session_profiler(sessions[i]) : NULL;
    if (!p) {
      free(v);
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "session %d has not profiled (flagos_session_enable_profiling)", i);
    }
    rt_prof_view(p, &v[i]);
    /* one clock for all: the host's, from the earliest profiler's start */
    if (i == 0 || v[i].epoch_us < base) base = v[i].epoch_us;
  }
  fl_buf_t b = {0};
  fl_buf_puts(&b, "{\"traceEvents\":[\n");
  meta(&b, "process_name", 0, 0, "host (FlagOS runtime)");
  sort_index(&b, 0, 0);
  for (int i = 0; i < n; i++) write_session(&b, &v[i], i, base);
  /* the last event's ",\n" */
  if (b.len >= 2 && b.data[b.len - 2] == ',') b.len -= 2;
  fl_buf_puts(&b, "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"flagos_version\":\"" FLAGOS_VERSION_STRING "\",");
  fl_buf_puts(&b, "\"clock\":\"host monotonic microseconds since the first profiler started; device events are "
                  "mapped through an anchor event recorded at the start of each run\",\"devices\":[");
  for (int i = 0; i < n; i++) {
    double flops = 0, kms = 0;
    for (int64_t k = 0; k < v[i].n_evs; k++)
      if (v[i].evs[k].kind == RT_PEV_KERNEL) {
        flops += v[i].evs[k].flops;
        kms += (v[i].evs[k].t1_us - v[i].evs[k].t0_us) / 1e3;
      }
    fl_buf_printf(&b, "%s{\"pid\":%d,\"device\":", i ? "," : "", i + 1);
    json_str(&b, v[i].device);
    fl_buf_puts(&b, ",\"name\":");
    json_str(&b, v[i].device_name);
    fl_buf_printf(&b, ",\"runs\":%d,\"wall_ms\":%.6f,\"kernel_ms\":%.6f,\"flops\":%.17g,\"peak_memory_bytes\":%llu}", v[i].runs,
                  v[i].wall_ms, kms, flops, (unsigned long long)v[i].peak_mem);
  }
  fl_buf_puts(&b, "]}}\n");
  free(v);
  flagos_status_t st = fl_write_file(path, b.data, b.len);
  fl_buf_free(&b);
  return st ? flagos_status_wrap(st, "writing trace") : NULL;
}
