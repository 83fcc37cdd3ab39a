/* Sessions: a bundle bound to one device, or placed over several by a plan
 * (docs/sla.md "Running a plan"). A run imports the caller's inputs, executes
 * the main plan in a frame (src/runtime/exec.c; src/runtime/multi.c over
 * several devices) and exports the outputs into host memory the caller owns. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/exec.h"
#include "runtime/placement.h"

/* One device of a session: its plugin, loaded kernels and weights. */
typedef struct rt_slot {
  char id[96]; /* "cpu:0" */
  rt_backend_t *be;
  rt_exec_t x;
  flagos_bmodule_t module;
  rt_weights_t *weights;
  rt_graphs_t *graphs; /* for runs of a plan on this device alone, or NULL (src/runtime/graph.c) */
} rt_slot_t;

struct flagos_session_s {
  flagos_bundle_t *b;
  rt_backend_t *be;
  rt_exec_t x;
  flagos_bmodule_t module;
  double last_ms;
  rt_weights_t *weights; /* device copies of the initializers (devices that are not host-visible) */
  rt_graphs_t *graphs;   /* captured graphs by input shapes, or NULL (src/runtime/graph.c) */
  rt_prof_t *prof; /* created by the first flagos_session_enable_profiling; x.prof is set while it records */
  /* Planned sessions (created without a device while the bundle has a plan, or
   * with device "plan"): one slot per device a plan used so far, the current
   * plan (a run holds a reference), `lock` guarding the plan pointer and
   * `swap_lock` serialising flagos_session_set_sla (which may open slots). */
  bool planned;
  int n_slots;
  rt_slot_t *slots[RT_MAX_SLOTS];
  rt_exec_t *xs[RT_MAX_SLOTS];
  rt_mplan_t *plan;
  pthread_mutex_t lock, swap_lock;
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* NAME, NAME:INDEX or NAME:FILTER. A suffix that does not start with a digit
 * (or '-') is a name filter, matched against the devices' names and vendors
 * (`opencl:NVIDIA`, `opencl:pthread`); *filter then points into spec. */
static flagos_status_t parse_device(const char *spec, char *name, size_t n, int *index, const char **filter) {
  *index = 0;
  *filter = NULL;
  if (!spec || !*spec) spec = "cpu";
  const char *colon = strchr(spec, ':');
  size_t l = colon ? (size_t)(colon - spec) : strlen(spec);
  if (l == 0 || l >= n)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bad device '%s' (expected NAME, NAME:INDEX or NAME:DEVICE-NAME)", spec);
  memcpy(name, spec, l);
  name[l] = 0;
  if (colon && colon[1] && !(colon[1] >= '0' && colon[1] <= '9') && colon[1] != '-') {
    *filter = colon + 1;
  } else if (colon) {
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || v < 0) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "bad device index in '%s'", spec);
    *index = (int)v;
  }
  return NULL;
}

/* The first device of `be` whose name or vendor contains `filter` (any case). */
static flagos_status_t find_device(rt_backend_t *be, const char *name, const char *filter, int nd, int *dev) {
  char seen[512] = "";
  for (int i = 0; i < nd; i++) {
    flagos_device_info_t info;
    memset(&info, 0, sizeof info);
    flagos_status_t st = be->api->device_info(be->state, i, &info);
    if (st) {
      flagos_status_free(st);
      continue;
    }
    info.name[sizeof info.name - 1] = info.vendor[sizeof info.vendor - 1] = 0;
    if (strcasestr(info.name, filter) || strcasestr(info.vendor, filter)) {
      *dev = i;
      return NULL;
    }
    size_t l = strlen(seen);
    snprintf(seen + l, sizeof seen - l, "%s%s:%d '%s'", l ? ", " : "", name, i, info.name);
  }
  return FL_ERR(FLAGOS_ERR_NOT_FOUND, "no %s device's name or vendor contains '%s' (devices: %s)", name, filter,
                seen[0] ? seen : "none");
}

static void slot_close(rt_slot_t *sl) {
  if (!sl) return;
  rt_graphs_destroy(sl->graphs);
  rt_weights_destroy(sl->weights);
  if (sl->module) sl->be->api->module_unload(sl->be->state, sl->module);
  free(sl->x.kernels);
}

/* Opens device `spec` (NAME, NAME:INDEX, NAME:FILTER) for bundle b: its plugin,
 * the bundle's kernels for its target, and (not host-visible) a weight table. */
static flagos_status_t slot_open(flagos_bundle_t *b, const char *spec, rt_slot_t *sl) {
  memset(sl, 0, sizeof(*sl));
  char name[64];
  int dev;
  const char *filter;
  FL_TRY(parse_device(spec, name, sizeof name, &dev, &filter));
  int code = -1;
  char have[256] = "";
  for (int i = 0; i < b->n_code; i++) {
    if (strcmp(b->code[i].target, name) == 0) code = i;
    size_t l = strlen(have);
    snprintf(have + l, sizeof have - l, "%s%s", l ? ", " : "", b->code[i].target);
  }
  if (code < 0)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "device '%s': this bundle carries kernels for: %s (compile with --target %s)",
                  name, have[0] ? have : "no target", name);
  rt_backend_t *be;
  FL_TRY(rt_backend_get(name, &be));
  int nd = be->api->device_count(be->state);
  if (filter) FL_TRY(find_device(be, name, filter, nd, &dev));
  if (dev >= nd) return FL_ERR(FLAGOS_ERR_NOT_FOUND, "device %s:%d does not exist (%d device(s))", name, dev, nd);
  if (strcmp(be->api->code_format, b->code[code].format) != 0)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "backend '%s' loads %s code, the bundle's %s kernels are %s", name,
                  be->api->code_format, name, b->code[code].format);
  flagos_device_info_t info;
  memset(&info, 0, sizeof info);
  FL_TRY(be->api->device_info(be->state, dev, &info));
  snprintf(sl->id, sizeof sl->id, "%s:%d", name, dev);
  sl->be = be;
  sl->x.api = be->api;
  sl->x.bst = be->state;
  sl->x.device = dev;
  sl->x.host_visible = info.host_visible != 0;
  sl->x.trace = getenv("FLAGOS_TRACE") != NULL;
  flagos_status_t st = NULL;
  sl->x.kernels = calloc((size_t)b->n_kernels + 1, sizeof(flagos_bkernel_t));
  if (!sl->x.kernels) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (!st && b->n_kernels > 0) st = be->api->module_load(be->state, dev, b->code[code].data, b->code[code].size, &sl->module);
  for (int i = 0; !st && i < b->n_kernels; i++)
    st = be->api->kernel_get(be->state, sl->module, b->kernel_names[i], &sl->x.kernels[i]);
  if (!st && !sl->x.host_visible) st = rt_weights_create(be->api, be->state, dev, &sl->weights);
  sl->x.weights = sl->weights;
  if (!st) st = rt_graphs_create(&sl->x, &b->main, &sl->graphs);
  if (st) {
    slot_close(sl);
    memset(sl, 0, sizeof(*sl));
  }
  return st;
}

/* The slot of plan device `id` ("cpu:0"), opened the first time a plan uses it. */
static flagos_status_t session_slot(flagos_session_t *s, const char *id, int *out) {
  for (int i = 0; i < s->n_slots; i++)
    if (strcmp(s->slots[i]->id, id) == 0) {
      *out = i;
      return NULL;
    }
  if (s->n_slots == RT_MAX_SLOTS) return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "a session runs on at most %d devices", RT_MAX_SLOTS);
  rt_slot_t *sl = calloc(1, sizeof *sl);
  if (!sl) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  flagos_status_t st = slot_open(s->b, id, sl);
  if (st) {
    free(sl);
    return flagos_status_wrap(st, "plan device '%s'", id);
  }
  s->slots[s->n_slots] = sl;
  s->xs[s->n_slots] = &sl->x;
  *out = s->n_slots++;
  return NULL;
}

/* The run tables of plan pp on this session's slots (opening those it uses). */
static flagos_status_t session_mplan(flagos_session_t *s, const part_plan_t *pp, const char *json, rt_mplan_t **out) {
  bool dev_used[PART_MAX_DEVICES] = {false}, any = false;
  for (int k = 0; k < pp->n_groups; k++) dev_used[pp->groups[k].device] = any = true;
  if (!any) dev_used[0] = true; /* nothing placed: everything runs on the plan's first device */
  int dev_slot[PART_MAX_DEVICES];
  for (int d = 0; d < pp->n_devices; d++) {
    dev_slot[d] = -1;
    if (dev_used[d]) FL_TRY(session_slot(s, pp->devices[d], &dev_slot[d]));
  }
  if (dev_slot[0] < 0) /* the default of last resort must name a real slot */
    for (int d = 0; d < pp->n_devices; d++)
      if (dev_slot[d] >= 0) {
        dev_slot[0] = dev_slot[d];
        break;
      }
  bool hv[RT_MAX_SLOTS] = {false};
  for (int i = 0; i < s->n_slots; i++) hv[i] = s->slots[i]->x.host_visible;
  return rt_mplan_create(s->b, pp, dev_slot, hv, json, out);
}

static flagos_status_t create_planned(flagos_session_t *s, part_plan_t *pp, const char *json) {
  s->planned = true;
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->swap_lock, NULL);
  flagos_status_t st = session_mplan(s, pp, json, &s->plan);
  if (st) return flagos_status_wrap(st, "running the bundle's plan (give a device to run on one)");
  /* What flagos_session_power and the like report: the first device. */
  s->be = s->slots[0]->be;
  s->x = s->slots[0]->x;
  return NULL;
}

/* The bundle's plan, or with device "plan" and no plan in the bundle, one that
 * puts everything on the bundle's first target (cpu when it has cpu kernels). */
static flagos_status_t initial_plan(flagos_bundle_t *b, bool forced, part_plan_t **pp, char **json) {
  *json = NULL;
  flagos_status_t st = part_plan_load(b->file, pp);
  if (!st || !forced || flagos_status_code(st) != FLAGOS_ERR_NOT_FOUND) {
    if (!st) {
      const void *data;
      size_t n;
      if (!bundle_file_get(b->file, PART_PLAN_SECTION, &data, &n) && (*json = malloc(n + 1))) {
        memcpy(*json, data, n);
        (*json)[n] = 0;
      }
    }
    return st;
  }
  flagos_status_free(st);
  const char *t = b->n_code ? b->code[0].target : "cpu";
  for (int i = 0; i < b->n_code; i++)
    if (strcmp(b->code[i].target, "cpu") == 0) t = "cpu";
  char text[128];
  snprintf(text, sizeof text, "{\"format\": 1, \"mode\": \"latency\", \"devices\": [\"%s:0\"], \"groups\": []}", t);
  *json = strdup(text);
  return part_plan_parse(text, strlen(text), pp);
}

flagos_status_t flagos_session_create(flagos_bundle_t *b, const flagos_session_options_t *opts, flagos_session_t **out) {
  const char *device = opts ? opts->device : NULL;
  bool want_plan = device && strcmp(device, "plan") == 0;
  part_plan_t *pp = NULL;
  char *json = NULL;
  if (!device || !*device || want_plan) {
    flagos_status_t st = initial_plan(b, want_plan, &pp, &json);
    if (st && flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND) flagos_status_free(st); /* no plan: one device */
    else if (st) return flagos_status_wrap(st, "the bundle's plan");
  }
  flagos_session_t *s = calloc(1, sizeof(*s));
  if (!s) {
    part_plan_free(pp);
    free(json);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  s->b = b;
  flagos_status_t st;
  if (pp) {
    st = create_planned(s, pp, json);
    part_plan_free(pp);
    free(json);
  } else {
    rt_slot_t one;
    st = slot_open(b, device, &one);
    if (!st) {
      s->be = one.be;
      s->x = one.x;
      s->module = one.module;
      s->weights = one.weights;
      s->x.weights = s->weights;
      s->graphs = one.graphs;
    }
  }
  if (st) {
    flagos_session_destroy(s);
    return st;
  }
  *out = s;
  return NULL;
}

static void plan_release(rt_mplan_t *mp) {
  if (mp && __atomic_sub_fetch(&mp->refs, 1, __ATOMIC_ACQ_REL) == 0) rt_mplan_free(mp);
}

static rt_mplan_t *plan_acquire(flagos_session_t *s) {
  pthread_mutex_lock(&s->lock);
  rt_mplan_t *mp = s->plan;
  __atomic_add_fetch(&mp->refs, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&s->lock);
  return mp;
}

void flagos_session_destroy(flagos_session_t *s) {
  if (!s) return;
  if (s->planned) {
    plan_release(s->plan);
    for (int i = 0; i < s->n_slots; i++) {
      slot_close(s->slots[i]);
      free(s->slots[i]);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->swap_lock);
    free(s);
    return;
  }
  rt_graphs_destroy(s->graphs);
  rt_weights_destroy(s->weights);
  if (s->module) s->be->api->module_unload(s->be->state, s->module);
  rt_prof_destroy(s->prof);
  free(s->x.kernels);
  free(s);
}

flagos_status_t flagos_session_set_sla(flagos_session_t *s, const char *sla_json) {
  if (!s || !sla_json) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "session or SLA is NULL");
  if (!s->planned)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED,
                  "this session runs on one device (%s:%d); create it with device \"plan\" (or none, for a bundle "
                  "with a plan) to place it by an SLA",
                  s->be->name, s->x.device);
  pthread_mutex_lock(&s->swap_lock);
  /* The candidates: device 0 of each target the bundle carries kernels for,
   * where this machine has one. */
  part_profile_t *prof = NULL;
  flagos_status_t st = rt_load_profiles(&prof);
  part_device_t devs[PART_MAX_DEVICES];
  int n = 0;
  for (int i = 0; !st && i < s->b->n_code && n < PART_MAX_DEVICES; i++) {
    rt_backend_t *be;
    flagos_status_t bs = rt_backend_get(s->b->code[i].target, &be);
    flagos_device_info_t di;
    memset(&di, 0, sizeof di);
    if (!bs && be->api->device_count(be->state) > 0 && strcmp(be->api->code_format, s->b->code[i].format) == 0)
      bs = be->api->device_info(be->state, 0, &di);
    else if (!bs)
      bs = FL_ERR(FLAGOS_ERR_NOT_FOUND, "no device");
    if (bs) {
      flagos_status_free(bs); /* a target this machine cannot run is no candidate */
      continue;
    }
    rt_slot_device(s->b->code[i].target, 0, &di, be->api->version, prof, &devs[n++]);
  }
  free(prof);
  if (!st && n == 0) st = FL_ERR(FLAGOS_ERR_NOT_FOUND, "none of the bundle's targets has a device here");
  char *json = NULL;
  if (!st) st = rt_solve_plan(s->b, devs, n, sla_json, &json);
  part_plan_t *pp = NULL;
  if (!st) st = part_plan_parse(json, strlen(json), &pp);
  rt_mplan_t *mp = NULL;
  if (!st) st = session_mplan(s, pp, json, &mp);
  if (!st) {
    /* Runs that started before keep their reference to the old plan. */
    pthread_mutex_lock(&s->lock);
    rt_mplan_t *old = s->plan;
    s->plan = mp;
    pthread_mutex_unlock(&s->lock);
    plan_release(old);
  }
  part_plan_free(pp);
  free(json);
  pthread_mutex_unlock(&s->swap_lock);
  return st;
}

double flagos_session_last_run_ms(const flagos_session_t *s) {
  double v;
  __atomic_load(&s->last_ms, &v, __ATOMIC_RELAXED);
  return v;
}

static void dims_str(char *buf, size_t n, int rank, const int64_t *dims, const fir_type_t *t) {
  size_t o = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && o < n; i++) {
    if (t && t->dims[i].value < 0)
      o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? "," : "", t->dims[i].sym ? t->dims[i].sym : "?");
    else
      o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)(t ? t->dims[i].value : dims[i]));
  }
  if (o < n) snprintf(buf + o, n - o, "]");
}

static flagos_status_t check_tensor(const char *name, const fir_type_t *t, const flagos_tensor_t *x) {
  if (t->kind != FIR_TYPE_TENSOR) return NULL;
  if (x->dtype != t->dtype)
    return FL_ERR(FLAGOS_ERR_SHAPE, "input '%s': expected dtype %s, got %s", name, flagos_dtype_name(t->dtype),
                  flagos_dtype_name(x->dtype));
  bool ok = t->rank < 0 || x->rank == t->rank;
  for (int i = 0; ok && i < t->rank; i++)
    if (t->dims[i].value >= 0 && t->dims[i].value != x->dims[i]) ok = false;
  for (int i = 0; i < x->rank; i++)
    if (x->dims[i] < 0) ok = false;
  if (!ok) {
    char e[256], gv[256];
    dims_str(e, sizeof e, t->rank, NULL, t);
    dims_str(gv, sizeof gv, x->rank, x->dims, NULL);
    return FL_ERR(FLAGOS_ERR_SHAPE, "input '%s': expected shape %s, got %s", name, e, gv);
  }
  if (x->dtype == FLAGOS_STRING) {
    /* char ** of numel strings; nbytes may be left 0 by callers (the dims say how many). */
    int64_t n = rt_numel(x->rank, x->dims);
    if ((n && !x->data) || (x->nbytes && x->nbytes < (size_t)n * sizeof(char *)))
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': a string tensor of %lld elements needs as many char pointers",
                    name, (long long)n);
    for (int64_t i = 0; i < n; i++)
      if (!((char *const *)x->data)[i])
        return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': string element %lld is NULL", name, (long long)i);
    return NULL;
  }
  if (x->nbytes < (size_t)rt_numel(x->rank, x->dims) * flagos_dtype_size(x->dtype) || (!x->data && x->nbytes))
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': buffer of %zu bytes is smaller than its shape needs", name,
                  x->nbytes);
  return NULL;
}

/* Makes a runtime value of a caller's input: a view of host memory on a
 * host-visible device, a copy otherwise. */
flagos_status_t rt_import_value(rt_exec_t *x, const char *name, const fir_type_t *t, const flagos_value_t *in,
                                    rt_val_t *rv) {
  memset(rv, 0, sizeof(*rv));
  if (in->kind == FLAGOS_VALUE_TENSOR) {
    if (t && t->kind != FIR_TYPE_TENSOR && t->kind != FIR_TYPE_UNKNOWN)
      return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': expected a %s, got a tensor", name,
                    t->kind == FIR_TYPE_SEQUENCE ? "sequence" : "optional");
    if (t) FL_TRY(check_tensor(name, t, &in->tensor));
    const flagos_tensor_t *tt = &in->tensor;
    if (x->host_visible || tt->dtype == FLAGOS_STRING) { /* strings stay host arrays on every backend */
      rv->present = true;
      rv->kind = FLAGOS_VALUE_TENSOR;
      rv->dtype = tt->dtype;
      rv->rank = tt->rank;
      memcpy(rv->dims, tt->dims, sizeof(int64_t) * (size_t)tt->rank);
      rv->ptr = tt->data;
      rv->nbytes = (size_t)rt_numel(tt->rank, tt->dims) * flagos_dtype_size(tt->dtype);
      return NULL;
    }
    return rt_val_from_host(x, rv, tt->dtype, tt->rank, tt->dims, tt->data);
  }
  if (t && t->kind != FIR_TYPE_UNKNOWN &&
      t->kind != (in->kind == FLAGOS_VALUE_SEQUENCE ? FIR_TYPE_SEQUENCE : FIR_TYPE_OPTIONAL))
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "input '%s': the value's kind does not match the model's input", name);
  rv->present = true;
  rv->kind = in->kind;
  rv->dtype = in->elem_dtype;
  const fir_type_t *et = t ? t->elem : NULL;
  if (in->kind == FLAGOS_VALUE_OPTIONAL) {
    if (!in->present) return NULL;
    rv->items = calloc(1, sizeof(rt_val_t));
    if (!rv->items) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    rv->n_items = 1;
    if (in->n_items == 1 && in->items) return rt_import_value(x, name, et, &in->items[0], &rv->items[0]);
    flagos_value_t tv = {.kind = FLAGOS_VALUE_TENSOR, .tensor = in->tensor};
    return rt_import_value(x, name, et, &tv, &rv->items[0]);
  }
  rv->items = calloc((size_t)in->n_items + 1, sizeof(rt_val_t));
  if (!rv->items) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < in->n_items; i++) {
    FL_TRY(rt_import_value(x, name, et, &in->items[i], &rv->items[i]));
    rv->n_items++;
  }
  return NULL;
}

static flagos_status_t export_value(rt_exec_t *x, const rt_val_t *rv, flagos_value_t *out) {
  memset(out, 0, sizeof(*out));
  out->kind = rv->kind;
  out->elem_dtype = rv->dtype;
  if (rv->kind == FLAGOS_VALUE_TENSOR) {
    flagos_tensor_t *t = &out->tensor;
    t->dtype = rv->dtype;
    t->rank = rv->rank;
    memcpy(t->dims, rv->dims, sizeof(int64_t) * (size_t)rv->rank);
    size_t n = (size_t)rt_numel(rv->rank, rv->dims) * flagos_dtype_size(rv->dtype);
    t->data = rv->dtype == FLAGOS_STRING ? calloc(n ? n : 1, 1) : malloc(n ? n : 1);
    if (!t->data) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for an output", n);
    t->nbytes = n;
    if (rv->dtype == FLAGOS_STRING) { /* each string malloc'ed, as flagos_value_clear() frees them */
      char **d = t->data;
      for (size_t i = 0; i < n / sizeof(char *); i++) {
        const char *src = rt_str_get(rv, (int64_t)i);
        size_t l = strlen(src) + 1;
        if (!(d[i] = malloc(l))) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate an output string");
        memcpy(d[i], src, l);
      }
      return NULL;
    }
    if (n) FL_TRY(x->api->copy_d2h(x->bst, NULL, t->data, rv->ptr, 0, n));
    return NULL;
  }
  if (rv->kind == FLAGOS_VALUE_OPTIONAL) {
    out->present = rv->n_items > 0;
    if (!out->present) return NULL;
    if (rv->items[0].kind == FLAGOS_VALUE_TENSOR) {
      flagos_value_t tmp;
      FL_TRY(export_value(x, &rv->items[0], &tmp));
      out->tensor = tmp.tensor;
      return NULL;
    }
    out->items = calloc(1, sizeof(flagos_value_t));
    if (!out->items) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    out->n_items = 1;
    return export_value(x, &rv->items[0], &out->items[0]);
  }
  out->items = calloc((size_t)rv->n_items + 1, sizeof(flagos_value_t));
  if (!out->items) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < rv->n_items; i++) {
    FL_TRY(export_value(x, &rv->items[i], &out->items[i]));
    out->n_items++;
  }
  return NULL;
}

/* Writes a tensor output into a buffer the caller supplied. */
static flagos_status_t export_into(rt_exec_t *x, const rt_val_t *rv, const char *name, flagos_value_t *out) {
  flagos_tensor_t *t = &out->tensor;
  if (rv->kind != FLAGOS_VALUE_TENSOR || rv->dtype == FLAGOS_STRING)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "output '%s': caller-owned buffers hold numeric tensors only", name);
  if (t->dtype != FLAGOS_UNDEFINED && t->dtype != rv->dtype)
    return FL_ERR(FLAGOS_ERR_SHAPE, "output '%s' is %s, the caller's buffer is declared %s", name,
                  flagos_dtype_name(rv->dtype), flagos_dtype_name(t->dtype));
  size_t n = (size_t)rt_numel(rv->rank, rv->dims) * flagos_dtype_size(rv->dtype);
  if (t->nbytes < n)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "output '%s' needs %zu bytes, the caller's buffer has %zu", name, n,
                  t->nbytes);
  if (n) FL_TRY(x->api->copy_d2h(x->bst, NULL, t->data, rv->ptr, 0, n));
  t->dtype = rv->dtype;
  t->rank = rv->rank;
  memcpy(t->dims, rv->dims, sizeof(int64_t) * (size_t)rv->rank);
  return NULL;
}

/* Output i is read through xs[i] when xs is given, else through x. */
static flagos_status_t export_outputs(rt_exec_t *x, rt_exec_t *const *xs, rt_val_t *const *vals,
                                      flagos_value_t *outputs, int n_outputs, const fir_graph_t *g) {
  /* A tensor output whose data the caller set is written there; the others are allocated. */
  bool *caller = calloc((size_t)n_outputs + 1, sizeof(bool));
  if (!caller) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < n_outputs; i++)
    caller[i] = outputs[i].kind == FLAGOS_VALUE_TENSOR && outputs[i].tensor.data != NULL;
  int exported = 0;
  flagos_status_t st = NULL;
  for (int i = 0; i < n_outputs && !st; i++) {
    const rt_val_t *rv = vals[i];
    if (!rv || !rv->present) {
      st = FL_ERR(FLAGOS_ERR_INTERNAL, "output '%s' was not computed", g->outputs[i]->name);
      break;
    }
    rt_exec_t *xi = xs ? xs[i] : x;
    st = caller[i] ? export_into(xi, rv, g->outputs[i]->name, &outputs[i]) : export_value(xi, rv, &outputs[i]);
    exported++;
  }
  if (st)
    for (int i = 0; i < exported; i++)
      if (!caller[i]) flagos_value_clear(&outputs[i]);
  free(caller);
  return st;
}

/* Runs of one session may end on several threads at once. */
static void set_last_ms(flagos_session_t *s, double ms) { __atomic_store(&s->last_ms, &ms, __ATOMIC_RELAXED); }

/* A run on one device: through a captured graph where gs can, else plainly. */
static flagos_status_t run_one(flagos_session_t *s, rt_exec_t *x, rt_graphs_t *gs, const flagos_value_t *inputs,
                               int n_inputs, flagos_value_t *outputs, int n_outputs, double t0) {
  fir_graph_t *g = s->b->model->graph;
  if (gs && !x->prof) {
    bool done;
    flagos_status_t st = rt_graphs_run(gs, x, inputs, n_inputs, outputs, n_outputs, &done);
    if (done) {
      set_last_ms(s, now_ms() - t0);
      return st;
    }
  }
  rt_frame_t f = {0};
  flagos_status_t st = x->prof ? rt_prof_run_begin(x->prof) : NULL;
  double prof_t0 = x->prof ? rt_prof_now_us() : 0;
  if (!st) st = rt_frame_init(x, &s->b->main, NULL, &f);
  for (int i = 0; i < n_inputs && !st; i++) {
    rt_val_t *rv = &f.vals[g->inputs[i]->id];
    rt_val_release(x, rv); /* an input with a default (initializer) is overridden */
    st = rt_import_value(x, g->inputs[i]->name, g->inputs[i]->type, &inputs[i], rv);
    rv->pinned = true;
  }
  if (x->prof) rt_prof_host_span(x->prof, "import inputs", NULL, prof_t0);
  if (!st) st = rt_exec_graph(x, &f);
  if (x->prof) prof_t0 = rt_prof_now_us();
  if (!st) {
    rt_val_t **vals = calloc((size_t)n_outputs + 1, sizeof(*vals));
    if (!vals) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n_outputs && vals; i++) vals[i] = rt_lookup(&f, g->outputs[i]);
    if (vals) st = rt_export_outputs(x, vals, outputs, n_outputs, g);
    free(vals);
  }
  rt_frame_free(x, &f);
  set_last_ms(s, now_ms() - t0);
  if (x->prof) {
    rt_prof_host_span(x->prof, "export outputs", NULL, prof_t0);
    flagos_status_t ps = rt_prof_run_end(x->prof, st == NULL, flagos_session_last_run_ms(s));
    if (!st) st = ps;
    else flagos_status_free(ps);
  }
  return st;
}

flagos_status_t rt_export_outputs(rt_exec_t *x, rt_val_t *const *vals, flagos_value_t *outputs, int n_outputs,
                                  const fir_graph_t *g) {
  return export_outputs(x, NULL, vals, outputs, n_outputs, g);
}

flagos_status_t rt_export_outputs_on(rt_exec_t *const *xs, rt_val_t *const *vals, flagos_value_t *outputs, int n_outputs,
                                     const fir_graph_t *g) {
  return export_outputs(NULL, xs, vals, outputs, n_outputs, g);
}

flagos_status_t flagos_session_run(flagos_session_t *s, const flagos_value_t *inputs, int n_inputs,
                                   flagos_value_t *outputs, int n_outputs) {
  double t0 = now_ms();
  if (!s) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "session is NULL");
  fir_graph_t *g = s->b->model->graph;
  if (n_inputs != g->n_inputs)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the model takes %d input(s), %d given", g->n_inputs, n_inputs);
  if (n_outputs != g->n_outputs)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "the model has %d output(s), room for %d given", g->n_outputs, n_outputs);
  if (n_inputs && !inputs) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "inputs is NULL");
  if (n_outputs && !outputs) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "outputs is NULL");
  if (!s->planned) return run_one(s, &s->x, s->graphs, inputs, n_inputs, outputs, n_outputs, t0);
  /* The plan is taken at the start: a swap meanwhile does not touch this run. */
  rt_mplan_t *mp = plan_acquire(s);
  flagos_status_t st;
  if (mp->single_slot >= 0) {
    /* The plan on one device runs as a session for that device alone would,
     * captured graphs included. */
    rt_exec_t *x = s->xs[mp->single_slot];
    st = run_one(s, x, s->slots[mp->single_slot]->graphs, inputs, n_inputs, outputs, n_outputs, t0);
    int kn = 0;
    for (int i = 0; i < s->b->main.n_nodes; i++) kn += !s->b->main.nodes[i].host;
    __atomic_fetch_add(&x->nodes_run, kn, __ATOMIC_RELAXED);
  } else {
    st = rt_multi_run(s->xs, mp, s->b, inputs, n_inputs, outputs, n_outputs);
    set_last_ms(s, now_ms() - t0);
  }
  plan_release(mp);
  return st;
}

/* ---- for tests and reports ---- */
void rt_session_stats(const flagos_session_t *s, int64_t *weight_uploads, rt_graph_stats_t *graphs) {
  if (weight_uploads) {
    *weight_uploads = rt_weights_uploads(s->weights);
    for (int i = 0; s->planned && i < s->n_slots; i++) *weight_uploads += rt_weights_uploads(s->slots[i]->weights);
  }
  if (graphs) {
    rt_graphs_stats(s->graphs, graphs);
    for (int i = 0; s->planned && i < s->n_slots; i++) {
      rt_graph_stats_t g;
      rt_graphs_stats(s->slots[i]->graphs, &g);
      graphs->captures += g.captures;
      graphs->replays += g.replays;
      graphs->fallbacks += g.fallbacks;
    }
  }
}

bool rt_session_slot_stats(const flagos_session_t *s, int i, rt_slot_stats_t *out) {
  memset(out, 0, sizeof(*out));
  if (!s->planned || i < 0 || i >= s->n_slots) return false;
  const rt_slot_t *sl = s->slots[i];
  snprintf(out->id, sizeof out->id, "%s", sl->id);
  out->nodes_run = __atomic_load_n(&sl->x.nodes_run, __ATOMIC_RELAXED);
  out->copies_in = __atomic_load_n(&sl->x.copies_in, __ATOMIC_RELAXED);
  out->copies_ahead = __atomic_load_n(&sl->x.copies_ahead, __ATOMIC_RELAXED);
  out->weight_uploads = rt_weights_uploads(sl->weights);
  return true;
}

/* ---- profiling (src/runtime/profile.c, profile_report.c) ---- */
rt_prof_t *rt_session_profiler(const flagos_session_t *s) { return s->prof; }

flagos_status_t flagos_session_enable_profiling(flagos_session_t *s, bool enable) {
  if (!s) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "session is NULL");
  if (s->planned && enable)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "profiling a session placed over several devices is not supported yet "
                                          "(create the session for one device)");
  if (enable && !s->prof) FL_TRY(rt_prof_create(s->be, s->x.device, &s->prof));
  /* The executor calls the backend through the profiler's forwarders only while it records. */
  s->x.prof = enable ? s->prof : NULL;
  s->x.api = enable ? rt_prof_api(s->prof) : s->be->api;
  s->x.bst = enable ? (void *)s->prof : s->be->state;
  return NULL;
}

flagos_status_t flagos_session_power(const flagos_session_t *s, flagos_device_power_t *out) {
  if (!s || !out) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "session or output is NULL");
  memset(out, 0, sizeof(*out));
  if (!FLAGOS_BACKEND_HAS(s->be->api, device_power)) return NULL;
  flagos_power_info_t pi;
  memset(&pi, 0, sizeof pi);
  FL_TRY(s->be->api->device_power(s->be->state, s->x.device, &pi));
  out->measured = pi.has_energy != 0;
  out->energy_j = (double)pi.energy_uj / 1e6;
  out->energy_range_j = (double)pi.energy_range_uj / 1e6;
  out->declared_watts = pi.declared_watts;
  snprintf(out->energy_source, sizeof out->energy_source, "%s", pi.has_energy ? pi.energy_source : "");
  snprintf(out->declared_source, sizeof out->declared_source, "%s", pi.declared_source);
  return NULL;
}
