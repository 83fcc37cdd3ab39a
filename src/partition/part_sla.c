/* The SLA file (docs/sla.md, docs/sla.schema.json). Unknown fields are errors so
 * that a misspelt limit is never silently ignored. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "partition/partition.h"

void part_sla_default(part_sla_t *s) {
  memset(s, 0, sizeof *s);
  s->w_latency = 1;
  s->preference = 0.001;
  s->time_limit = 5;
}

#define BAD(...) FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, __VA_ARGS__)

static flagos_status_t num(const cJSON *v, const char *what, const char *field, bool positive, double *out) {
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 || (positive && v->valuedouble == 0))
    return BAD("%s: field '%s' must be a %s number", what, field, positive ? "positive" : "non-negative");
  *out = v->valuedouble;
  return NULL;
}

static flagos_status_t check_match(const char *s, const char *what, const char *field) {
  size_t n = strlen(s);
  if (n == 0 || n >= 64) return BAD("%s: field '%s': '%s' must be 1 to 63 characters", what, field, s);
  if (strncmp(s, "vendor:", 7) == 0) return s[7] ? NULL : BAD("%s: field '%s': 'vendor:' needs a vendor name", what, field);
  const char *colon = strchr(s, ':');
  if (colon) {
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || v < 0 || colon == s)
      return BAD("%s: field '%s': '%s' must be TARGET, TARGET:INDEX or vendor:NAME", what, field, s);
  }
  return NULL;
}

static flagos_status_t str_list(const cJSON *v, const char *what, const char *field, char (*dst)[64], int *n) {
  if (!cJSON_IsArray(v)) return BAD("%s: field '%s' must be an array of strings", what, field);
  const cJSON *it;
  int i = 0;
  cJSON_ArrayForEach(it, v) {
    char f[64];
    snprintf(f, sizeof f, "%s[%d]", field, i++);
    if (!cJSON_IsString(it)) return BAD("%s: field '%s' must be a string", what, f);
    FL_TRY(check_match(it->valuestring, what, f));
    if (*n == 8) return BAD("%s: field '%s' holds more than 8 entries", what, field);
    snprintf(dst[(*n)++], 64, "%s", it->valuestring);
  }
  return NULL;
}

static flagos_status_t parse_root(const cJSON *r, const char *what, part_sla_t *s) {
  if (!cJSON_IsObject(r)) return BAD("%s: an SLA is a JSON object", what);
  const cJSON *it;
  cJSON_ArrayForEach(it, r) {
    const char *k = it->string;
    if (strcmp(k, "version") == 0) {
      if (!cJSON_IsNumber(it) || it->valuedouble != 1) return BAD("%s: field 'version' must be 1", what);
    } else if (strcmp(k, "mode") == 0) {
      if (!cJSON_IsString(it) || (strcmp(it->valuestring, "latency") && strcmp(it->valuestring, "throughput")))
        return BAD("%s: field 'mode' must be \"latency\" or \"throughput\"", what);
      s->throughput = strcmp(it->valuestring, "throughput") == 0;
    } else if (strcmp(k, "objective") == 0) {
      if (!cJSON_IsObject(it)) return BAD("%s: field 'objective' must be an object", what);
      const cJSON *o;
      cJSON_ArrayForEach(o, it) {
        char f[96];
        snprintf(f, sizeof f, "objective.%s", o->string);
        if (strcmp(o->string, "latency") == 0) FL_TRY(num(o, what, f, false, &s->w_latency));
        else if (strcmp(o->string, "lambda") == 0) FL_TRY(num(o, what, f, false, &s->lambda));
        else if (strcmp(o->string, "mu") == 0) FL_TRY(num(o, what, f, false, &s->mu));
        else return BAD("%s: unknown field '%s'", what, f);
      }
      if (s->w_latency == 0 && s->lambda == 0 && s->mu == 0)
        return BAD("%s: field 'objective': at least one weight must be positive", what);
    } else if (strcmp(k, "max_latency_ms") == 0) {
      FL_TRY(num(it, what, k, true, &s->max_latency));
      s->max_latency /= 1e3;
    } else if (strcmp(k, "max_avg_power_w") == 0) {
      FL_TRY(num(it, what, k, true, &s->max_power));
    } else if (strcmp(k, "devices") == 0) {
      if (!cJSON_IsObject(it)) return BAD("%s: field 'devices' must be an object", what);
      const cJSON *d;
      cJSON_ArrayForEach(d, it) {
        char f[128];
        snprintf(f, sizeof f, "devices.%s", d->string);
        FL_TRY(check_match(d->string, what, f));
        if (!cJSON_IsObject(d)) return BAD("%s: field '%s' must be an object", what, f);
        if (s->n_devices == (int)FL_ARRAY_LEN(s->devices)) return BAD("%s: field 'devices' has too many entries", what);
        part_sla_device_t *sd = &s->devices[s->n_devices++];
        memset(sd, 0, sizeof *sd);
        snprintf(sd->match, sizeof sd->match, "%s", d->string);
        sd->cost_per_hour = -1;
        const cJSON *e;
        cJSON_ArrayForEach(e, d) {
          char ff[192];
          snprintf(ff, sizeof ff, "%s.%s", f, e->string);
          if (strcmp(e->string, "memory_limit_mb") == 0) {
            FL_TRY(num(e, what, ff, true, &sd->memory_limit));
            sd->memory_limit *= 1024.0 * 1024.0;
          } else if (strcmp(e->string, "cost_per_hour") == 0) {
            FL_TRY(num(e, what, ff, false, &sd->cost_per_hour));
          } else {
            return BAD("%s: unknown field '%s'", what, ff);
          }
        }
      }
    } else if (strcmp(k, "preferred") == 0) {
      FL_TRY(str_list(it, what, k, s->preferred, &s->n_preferred));
    } else if (strcmp(k, "forbidden") == 0) {
      FL_TRY(str_list(it, what, k, s->forbidden, &s->n_forbidden));
    } else if (strcmp(k, "preference") == 0) {
      FL_TRY(num(it, what, k, false, &s->preference));
    } else if (strcmp(k, "solver_time_limit_s") == 0) {
      FL_TRY(num(it, what, k, true, &s->time_limit));
    } else {
      return BAD("%s: unknown field '%s'", what, k);
    }
  }
  return NULL;
}

flagos_status_t part_sla_parse(const char *json, size_t len, const char *what, part_sla_t *out) {
  part_sla_default(out);
  const char *end = NULL;
  cJSON *r = cJSON_ParseWithLengthOpts(json, len, &end, false);
  if (!r) {
    size_t off = end && end >= json ? (size_t)(end - json) : 0;
    return BAD("%s: not valid JSON (near byte %zu)", what, off);
  }
  flagos_status_t st = parse_root(r, what, out);
  cJSON_Delete(r);
  return st;
}

flagos_status_t part_sla_load(const char *path, part_sla_t *out) {
  void *data;
  size_t n;
  FL_TRY(fl_read_file(path, &data, &n));
  flagos_status_t st = part_sla_parse(data, n, path, out);
  free(data);
  return st;
}

bool part_sla_matches(const char *match, const part_device_t *d) {
  if (strncmp(match, "vendor:", 7) == 0) return d->vendor[0] && strcasestr(d->vendor, match + 7) != NULL;
  if (strchr(match, ':')) return strcmp(match, d->id) == 0;
  return strcmp(match, d->target) == 0;
}
