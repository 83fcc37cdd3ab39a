/* Placement at compile time: the groups of the main graph (one per manifest
 * node entry with kernels), one device per target (its saved profile, else the
 * documented defaults refined by the plugin's device_info), the SLA, and the
 * solver (src/partition). The plan goes into the bundle's "plan" section. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"
#include "partition/partition.h"
#include "runtime/runtime.h"

/* The device a target plans for: the profile's entry for TARGET:0, else defaults
 * from the plugin's device 0 when there is one, else defaults alone. */
static void target_device(const char *target, const part_profile_t *prof, part_device_t *out) {
  const part_device_t *d = part_profile_find(prof, target, 0);
  if (d) {
    *out = *d;
    return;
  }
  rt_backend_t *be = NULL;
  flagos_status_t st = rt_backend_get(target, &be);
  if (!st && be->api->device_count(be->state) > 0) {
    flagos_device_info_t di;
    memset(&di, 0, sizeof di);
    st = be->api->device_info(be->state, 0, &di);
    if (!st) {
      part_device_defaults(target, 0, &di, out);
      snprintf(out->plugin_version, sizeof out->plugin_version, "%s", be->api->version);
      return;
    }
  }
  flagos_status_free(st);
  part_device_defaults(target, 0, NULL, out);
}

flagos_status_t compiler_plan(const fir_graph_t *g, const cJSON *nodes, const char *const *targets, int n_targets,
                              const compiler_plan_options_t *po, char **plan_json, char **sla_json) {
  part_sla_t sla;
  void *sla_text;
  size_t sla_len;
  FL_TRY(fl_read_file(po->sla_path, &sla_text, &sla_len));
  flagos_status_t st = part_sla_parse(sla_text, sla_len, po->sla_path, &sla);
  if (st) {
    free(sla_text);
    return st;
  }
  char path[4096];
  if (po->profile_path) snprintf(path, sizeof path, "%s", po->profile_path);
  else part_profile_default_path(path, sizeof path);
  part_profile_t *prof = calloc(1, sizeof *prof);
  if (!prof) {
    free(sla_text);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  st = part_profile_load(path, prof);
  if (st && flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND && !po->profile_path) {
    flagos_status_free(st); /* no saved profile: the defaults */
    st = NULL;
    prof->n_devices = 0;
  }
  part_device_t devs[PART_MAX_DEVICES];
  int n_dev = n_targets < PART_MAX_DEVICES ? n_targets : PART_MAX_DEVICES;
  for (int t = 0; t < n_dev && !st; t++) target_device(targets[t], prof, &devs[t]);
  free(prof);

  int nn = g->n_nodes;
  double *flops = calloc((size_t)nn + 1, sizeof(double));
  int *kernels = calloc((size_t)nn + 1, sizeof(int));
  const char **names = calloc((size_t)nn + 1, sizeof(char *));
  part_graph_t *pg = NULL;
  part_problem_t prob;
  bool have_prob = false;
  int *assign = NULL;
  if (!st && (!flops || !kernels || !names)) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  if (!st) {
    for (int i = 0; i < nn; i++) flops[i] = -1;
    const cJSON *n;
    cJSON_ArrayForEach(n, nodes) {
      const cJSON *ix = cJSON_GetObjectItem(n, "index");
      if (!cJSON_IsNumber(ix) || ix->valueint < 0 || ix->valueint >= nn) continue;
      int i = ix->valueint;
      if (cJSON_IsTrue(cJSON_GetObjectItem(n, "host"))) continue;
      const cJSON *f = cJSON_GetObjectItem(n, "flops"), *gr = cJSON_GetObjectItem(n, "group");
      if (cJSON_IsNumber(f)) flops[i] = f->valuedouble;
      kernels[i] = cJSON_GetArraySize(cJSON_GetObjectItem(n, "steps"));
      if (kernels[i] == 0) kernels[i] = 1; /* a node with no kernels (an empty tensor) still counts a launch */
      names[i] = cJSON_IsString(gr) ? gr->valuestring : g->nodes[i]->name;
    }
    st = part_graph_from_fir(g, flops, kernels, names, &pg);
  }
  if (!st) {
    st = part_problem_init(&prob, pg, devs, n_dev, &sla);
    have_prob = st == NULL;
    if (have_prob && po->tune) part_problem_tune(&prob, po->tune);
  }
  part_solve_info_t info = {0};
  if (!st) {
    assign = calloc((size_t)pg->n_groups + 1, sizeof(int));
    st = assign ? part_solve(&prob, NULL, assign, &info) : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (!st) {
    *plan_json = part_plan_json(&prob, assign, NULL, NULL);
    *sla_json = (char *)sla_text;
    sla_text = NULL;
    if (po->explain) part_explain(&prob, assign, &info, po->explain);
  }
  if (st) st = flagos_status_wrap(st, "placement");
  if (have_prob) part_problem_free(&prob);
  part_graph_destroy(pg);
  free(assign);
  free(flops);
  free(kernels);
  free(names);
  free(sla_text);
  return st;
}

flagos_status_t compiler_plan_image(const fir_graph_t *g, const void *image, size_t size, const compiler_plan_options_t *po,
                                    void **out, size_t *out_size) {
  bundle_file_t *f = NULL;
  FL_TRY(bundle_file_from_memory((void *)image, size, false, &f));
  size_t mlen = 0;
  const char *mtext = bundle_file_section(f, "manifest", &mlen);
  cJSON *man = mtext ? cJSON_ParseWithLength(mtext, mlen) : NULL;
  flagos_status_t st = man ? NULL : FL_ERR(FLAGOS_ERR_CORRUPT, "bundle: no readable manifest");
  const char *targets[PART_MAX_DEVICES];
  int n_targets = 0;
  const cJSON *it;
  if (!st) {
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(man, "targets")) {
      if (cJSON_IsString(it) && n_targets < PART_MAX_DEVICES) targets[n_targets++] = it->valuestring;
    }
  }
  char *plan_json = NULL, *sla_json = NULL, *tune_json = NULL, *mjson = NULL;
  if (!st && po->sla_path) {
    st = compiler_plan(g, cJSON_GetObjectItem(man, "nodes"), targets, n_targets, po, &plan_json, &sla_json);
    if (!st) {
      cJSON *pj = cJSON_CreateObject();
      cJSON_AddStringToObject(pj, "section", PART_PLAN_SECTION);
      cJSON_AddStringToObject(pj, "sla", PART_SLA_SECTION);
      cJSON_DeleteItemFromObject(man, "plan");
      cJSON_AddItemToObject(man, "plan", pj);
    }
  } else if (!st && po->tune) {
    tune_json = part_tune_json(po->tune);
    cJSON *tj = cJSON_CreateObject();
    cJSON_AddStringToObject(tj, "section", "tune");
    cJSON_DeleteItemFromObject(man, "tune");
    cJSON_AddItemToObject(man, "tune", tj);
  }
  if (!st) mjson = cJSON_PrintUnformatted(man);
  if (!st) {
    bundle_writer_t *w = bundle_writer_create();
    int n = bundle_file_num_sections(f);
    for (int i = 0; i < n && !st; i++) {
      const char *name = bundle_file_section_name(f, i);
      size_t len = 0;
      const void *data = bundle_file_section(f, name, &len);
      if (strcmp(name, "manifest") == 0) st = bundle_writer_add(w, name, mjson, strlen(mjson));
      else if (strcmp(name, PART_PLAN_SECTION) && strcmp(name, PART_SLA_SECTION) && strcmp(name, "tune"))
        st = bundle_writer_add(w, name, data, len);
      if (!st && strcmp(name, "weights") == 0) {
        if (plan_json) st = bundle_writer_add(w, PART_PLAN_SECTION, plan_json, strlen(plan_json));
        if (!st && sla_json) st = bundle_writer_add(w, PART_SLA_SECTION, sla_json, strlen(sla_json));
        if (!st && tune_json) st = bundle_writer_add(w, "tune", tune_json, strlen(tune_json));
      }
    }
    if (!st) st = bundle_writer_to_memory(w, out, out_size);
    bundle_writer_destroy(w);
  }
  cJSON_Delete(man);
  free(mjson);
  free(plan_json);
  free(sla_json);
  free(tune_json);
  bundle_file_close(f);
  return st;
}
