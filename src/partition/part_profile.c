/* Device profiles: what the cost model knows of each device, measured by
 * `flagos devices --calibrate` (src/compiler/calibrate.c) or, without a saved
 * profile, the documented defaults (docs/sla.md, "Device profiles"). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition/partition.h"

void part_profile_default_path(char *buf, size_t n) { snprintf(buf, n, "%s/profiles.json", fl_default_cache_dir()); }

/* Defaults are deliberately round, mid-range figures: a plan made from them
 * prefers the right kind of device for each group, and calibration refines it. */
void part_device_defaults(const char *target, int index, const flagos_device_info_t *di, part_device_t *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->target, sizeof out->target, "%s", target);
  snprintf(out->id, sizeof out->id, "%s:%d", target, index);
  out->index = index;
  bool cpu_like = strcmp(target, "cpu") == 0 || (di && di->kind == FLAGOS_DEVICE_CPU);
  if (di) {
    snprintf(out->name, sizeof out->name, "%s", di->name);
    snprintf(out->vendor, sizeof out->vendor, "%s", di->vendor);
    snprintf(out->driver_version, sizeof out->driver_version, "%s", di->driver_version);
    out->kind = di->kind;
    out->host_visible = di->host_visible != 0;
    out->memory_bytes = di->memory_bytes;
  } else {
    out->kind = cpu_like ? FLAGOS_DEVICE_CPU : FLAGOS_DEVICE_GPU;
    out->host_visible = strcmp(target, "cpu") == 0;
  }
  int cu = di && di->compute_units > 0 ? di->compute_units : (cpu_like ? 4 : 80);
  if (cpu_like) {
    out->flops_f32 = cu * 32e9; /* 2 GHz x 16 FLOP/cycle (one 8-wide FMA) per core */
    out->flops_f16 = out->flops_f32 / 4; /* no native half arithmetic: converted */
    out->mem_bw = 20e9;
    out->launch = 5e-6;
    out->power_active = 10.0 * cu;
    out->power_idle = 2.0 * cu;
  } else {
    out->flops_f32 = 10e12;
    out->flops_f16 = 40e12;
    out->mem_bw = 500e9;
    out->launch = 10e-6;
    out->power_active = 250;
    out->power_idle = 50;
  }
  out->h2d_bw = out->d2h_bw = out->host_visible ? out->mem_bw : 10e9;
  out->link_latency = out->host_visible ? 0 : 20e-6;
  snprintf(out->power_source, sizeof out->power_source, "default");
}

const part_device_t *part_profile_find(const part_profile_t *p, const char *target, int index) {
  for (int i = 0; p && i < p->n_devices; i++)
    if (strcmp(p->dev[i].target, target) == 0 && p->dev[i].index == index) return &p->dev[i];
  return NULL;
}

static const char *kind_name(flagos_device_kind_t k) {
  return k == FLAGOS_DEVICE_CPU ? "cpu" : k == FLAGOS_DEVICE_GPU ? "gpu" : "accelerator";
}

char *part_profile_to_json(const part_profile_t *p) {
  cJSON *r = cJSON_CreateObject();
  cJSON_AddNumberToObject(r, "format", PART_PROFILE_FORMAT);
  cJSON_AddStringToObject(r, "date", p->date);
  cJSON_AddStringToObject(r, "flagos_version", p->flagos_version);
  cJSON *arr = cJSON_AddArrayToObject(r, "devices");
  for (int i = 0; i < p->n_devices; i++) {
    const part_device_t *d = &p->dev[i];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "device", d->id);
    cJSON_AddStringToObject(j, "name", d->name);
    cJSON_AddStringToObject(j, "vendor", d->vendor);
    cJSON_AddStringToObject(j, "driver_version", d->driver_version);
    cJSON_AddStringToObject(j, "plugin_version", d->plugin_version);
    cJSON_AddStringToObject(j, "kind", kind_name(d->kind));
    cJSON_AddBoolToObject(j, "host_visible", d->host_visible);
    cJSON_AddNumberToObject(j, "memory_bytes", (double)d->memory_bytes);
    cJSON *pf = cJSON_AddObjectToObject(j, "peak_flops");
    cJSON_AddNumberToObject(pf, "f32", d->flops_f32);
    cJSON_AddNumberToObject(pf, "f16", d->flops_f16);
    cJSON_AddNumberToObject(j, "memory_bandwidth", d->mem_bw);
    cJSON_AddNumberToObject(j, "h2d_bandwidth", d->h2d_bw);
    cJSON_AddNumberToObject(j, "d2h_bandwidth", d->d2h_bw);
    cJSON_AddNumberToObject(j, "link_latency_s", d->link_latency);
    cJSON_AddNumberToObject(j, "launch_overhead_s", d->launch);
    cJSON *pw = cJSON_AddObjectToObject(j, "power");
    cJSON_AddNumberToObject(pw, "active_w", d->power_active);
    cJSON_AddNumberToObject(pw, "idle_w", d->power_idle);
    cJSON_AddStringToObject(pw, "source", d->power_source);
    cJSON_AddBoolToObject(pw, "estimated", !d->power_measured);
    cJSON_AddBoolToObject(j, "calibrated", d->calibrated);
    cJSON_AddItemToArray(arr, j);
  }
  char *s = cJSON_Print(r);
  cJSON_Delete(r);
  return s;
}

flagos_status_t part_profile_save(const char *path, const part_profile_t *p) {
  char *s = part_profile_to_json(p);
  if (!s) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  flagos_status_t st = NULL;
  if (slash && slash != dir) {
    *slash = 0;
    st = fl_mkdirs(dir);
  }
  if (!st) st = fl_write_file(path, s, strlen(s));
  free(s);
  return st;
}

static flagos_status_t get_num(const cJSON *o, const char *key, const char *what, const char *field, bool required,
                               double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v) {
    if (required) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field '%s%s' is missing", what, field, key);
    return NULL;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble < 0)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field '%s%s' must be a non-negative number", what, field, key);
  *out = v->valuedouble;
  return NULL;
}

static void get_str(const cJSON *o, const char *key, char *dst, size_t n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (cJSON_IsString(v)) snprintf(dst, n, "%s", v->valuestring);
}

static flagos_status_t parse_device(const cJSON *j, const char *what, int i, part_device_t *d) {
  char field[64];
  snprintf(field, sizeof field, "devices[%d].", i);
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "device");
  const char *colon = cJSON_IsString(id) ? strrchr(id->valuestring, ':') : NULL;
  if (!colon || colon == id->valuestring || (size_t)(colon - id->valuestring) >= sizeof d->target)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field '%sdevice' must be a string TARGET:INDEX", what, field);
  char *end;
  long idx = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || idx < 0)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field '%sdevice' must be a string TARGET:INDEX", what, field);
  char target[sizeof d->target];
  snprintf(target, sizeof target, "%.*s", (int)(colon - id->valuestring), id->valuestring);
  part_device_defaults(target, (int)idx, NULL, d);
  get_str(j, "name", d->name, sizeof d->name);
  get_str(j, "vendor", d->vendor, sizeof d->vendor);
  get_str(j, "driver_version", d->driver_version, sizeof d->driver_version);
  get_str(j, "plugin_version", d->plugin_version, sizeof d->plugin_version);
  char kind[32] = "";
  get_str(j, "kind", kind, sizeof kind);
  if (kind[0]) d->kind = strcmp(kind, "cpu") == 0 ? FLAGOS_DEVICE_CPU : strcmp(kind, "gpu") == 0 ? FLAGOS_DEVICE_GPU
                                                                                                 : FLAGOS_DEVICE_ACCELERATOR;
  d->host_visible = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "host_visible"));
  double mem = 0;
  FL_TRY(get_num(j, "memory_bytes", what, field, false, &mem));
  d->memory_bytes = (uint64_t)mem;
  const cJSON *pf = cJSON_GetObjectItemCaseSensitive(j, "peak_flops");
  if (!cJSON_IsObject(pf)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field '%speak_flops' must be an object", what, field);
  char sub[96];
  snprintf(sub, sizeof sub, "%speak_flops.", field);
  FL_TRY(get_num(pf, "f32", what, sub, true, &d->flops_f32));
  FL_TRY(get_num(pf, "f16", what, sub, true, &d->flops_f16));
  FL_TRY(get_num(j, "memory_bandwidth", what, field, true, &d->mem_bw));
  FL_TRY(get_num(j, "h2d_bandwidth", what, field, true, &d->h2d_bw));
  FL_TRY(get_num(j, "d2h_bandwidth", what, field, true, &d->d2h_bw));
  FL_TRY(get_num(j, "link_latency_s", what, field, true, &d->link_latency));
  FL_TRY(get_num(j, "launch_overhead_s", what, field, true, &d->launch));
  if (d->flops_f32 <= 0 || d->flops_f16 <= 0 || d->mem_bw <= 0 || d->h2d_bw <= 0 || d->d2h_bw <= 0)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: device '%s' has a zero FLOP/s or bandwidth", what, d->id);
  const cJSON *pw = cJSON_GetObjectItemCaseSensitive(j, "power");
  if (!cJSON_IsObject(pw)) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field '%spower' must be an object", what, field);
  snprintf(sub, sizeof sub, "%spower.", field);
  FL_TRY(get_num(pw, "active_w", what, sub, true, &d->power_active));
  FL_TRY(get_num(pw, "idle_w", what, sub, true, &d->power_idle));
  get_str(pw, "source", d->power_source, sizeof d->power_source);
  d->power_measured = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pw, "estimated"));
  d->calibrated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "calibrated"));
  return NULL;
}

flagos_status_t part_profile_parse(const char *json, size_t len, const char *what, part_profile_t *out) {
  memset(out, 0, sizeof *out);
  cJSON *r = cJSON_ParseWithLength(json, len);
  if (!r) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: not valid JSON", what);
  flagos_status_t st = NULL;
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(r, "format");
  const cJSON *devs = cJSON_GetObjectItemCaseSensitive(r, "devices");
  if (!cJSON_IsNumber(fmt) || fmt->valueint < 1)
    st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field 'format' must be a positive integer", what);
  else if (fmt->valueint > PART_PROFILE_FORMAT)
    st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s: profile format %d is newer than this FlagOS reads (%d)", what, fmt->valueint,
                PART_PROFILE_FORMAT);
  else if (!cJSON_IsArray(devs))
    st = FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "%s: field 'devices' must be an array", what);
  if (!st) {
    get_str(r, "date", out->date, sizeof out->date);
    get_str(r, "flagos_version", out->flagos_version, sizeof out->flagos_version);
    const cJSON *d;
    cJSON_ArrayForEach(d, devs) {
      if (out->n_devices == PART_PROFILE_MAX) break;
      st = parse_device(d, what, out->n_devices, &out->dev[out->n_devices]);
      if (st) break;
      out->n_devices++;
    }
  }
  cJSON_Delete(r);
  return st;
}

flagos_status_t part_profile_load(const char *path, part_profile_t *out) {
  void *data;
  size_t n;
  FL_TRY(fl_read_file(path, &data, &n));
  flagos_status_t st = part_profile_parse(data, n, path, out);
  free(data);
  return st;
}
