/* Plans at run time (docs/sla.md "Running a plan"): the node-to-slot tables a
 * multi-device run follows (rt_mplan_t), built from a plan (the bundle's or a
 * new one), and re-planning with a new SLA over the bundle's targets with the
 * kernels already in the bundle (flagos_session_set_sla). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/placement.h"

flagos_status_t rt_mplan_create(const flagos_bundle_t *b, const part_plan_t *pp, const int *dev_slot,
                                const bool *slot_host_visible, const char *json, rt_mplan_t **out) {
  const rt_plan_t *p = &b->main;
  const fir_graph_t *g = p->graph;
  rt_mplan_t *mp = calloc(1, sizeof *mp);
  if (!mp) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  mp->refs = 1;
  mp->n_nodes = p->n_nodes;
  mp->node_slot = malloc(sizeof(int) * (size_t)(p->n_nodes + 1));
  mp->input_slot = malloc(sizeof(int) * (size_t)(g->n_inputs + 1));
  mp->json = json ? strdup(json) : NULL;
  flagos_status_t st = NULL;
  if (!mp->node_slot || !mp->input_slot || (json && !mp->json)) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; !st && i < p->n_nodes; i++) mp->node_slot[i] = -1;
  for (int k = 0; !st && k < pp->n_groups; k++) {
    const part_plan_group_t *pg = &pp->groups[k];
    if (pg->node < 0 || pg->node >= p->n_nodes) {
      st = FL_ERR(FLAGOS_ERR_CORRUPT, "plan: group '%s' names node %d, the model has %d", pg->group, pg->node, p->n_nodes);
      break;
    }
    const rt_node_t *rn = &p->nodes[pg->node];
    const char *name = rn->group ? rn->group : rn->node->name;
    if (strcmp(name, pg->group) != 0 || rn->host)
      st = FL_ERR(FLAGOS_ERR_CORRUPT, "plan: group '%s' does not match node %d ('%s')", pg->group, pg->node, name);
    else
      mp->node_slot[pg->node] = dev_slot[pg->device];
  }
  /* The default slot (host operators, unplaced nodes, unread inputs, weights
   * that are outputs): the first host-visible slot the plan uses, else its first. */
  mp->default_slot = -1;
  bool used[RT_MAX_SLOTS] = {false};
  for (int i = 0; !st && i < p->n_nodes; i++)
    if (mp->node_slot[i] >= 0) used[mp->node_slot[i]] = true;
  for (int d = 0; d < RT_MAX_SLOTS && mp->default_slot < 0; d++)
    if (used[d] && slot_host_visible[d]) mp->default_slot = d;
  for (int d = 0; d < RT_MAX_SLOTS && mp->default_slot < 0; d++)
    if (used[d]) mp->default_slot = d;
  if (mp->default_slot < 0) mp->default_slot = dev_slot[0];
  for (int i = 0; !st && i < p->n_nodes; i++) {
    if (mp->node_slot[i] < 0) mp->node_slot[i] = mp->default_slot;
    used[mp->node_slot[i]] = true;
  }
  used[mp->default_slot] = true;
  size_t nv = (size_t)g->n_values + 1;
  for (int d = 0; !st && d < RT_MAX_SLOTS; d++) {
    if (!used[d]) continue;
    mp->n_used++;
    mp->single_slot = d;
    mp->uses_on[d] = calloc(nv, sizeof(int));
    mp->weights_on[d] = calloc(nv, sizeof(bool));
    mp->first_on[d] = malloc(nv * sizeof(int));
    if (!mp->uses_on[d] || !mp->weights_on[d] || !mp->first_on[d])
      st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; !st && i < nv; i++) mp->first_on[d][i] = p->n_nodes;
  }
  if (!st && mp->n_used > 1) mp->single_slot = -1;
  for (int i = 0; !st && i < p->n_nodes; i++) {
    const rt_node_t *rn = &p->nodes[i];
    int d = mp->node_slot[i];
    for (int k = 0; k < rn->node->n_inputs + rn->n_captures; k++) {
      fir_value_t *v = k < rn->node->n_inputs ? rn->node->inputs[k] : rn->captures[k - rn->node->n_inputs];
      if (!v || v->graph != g) continue;
      if (!mp->uses_on[d][v->id]++) mp->first_on[d][v->id] = i;
      if (v->init) mp->weights_on[d][v->id] = true;
    }
  }
  for (int k = 0; !st && k < g->n_outputs; k++)
    if (g->outputs[k]->init) mp->weights_on[mp->default_slot][g->outputs[k]->id] = true;
  /* An input goes to the slot of its first consumer. */
  for (int k = 0; !st && k < g->n_inputs; k++) {
    int id = g->inputs[k]->id, first = p->n_nodes;
    mp->input_slot[k] = mp->default_slot;
    for (int d = 0; d < RT_MAX_SLOTS; d++)
      if (mp->first_on[d] && mp->first_on[d][id] < first) {
        first = mp->first_on[d][id];
        mp->input_slot[k] = d;
      }
  }
  if (st) {
    rt_mplan_free(mp);
    return st;
  }
  *out = mp;
  return NULL;
}

void rt_slot_device(const char *target, int index, const flagos_device_info_t *di, const char *plugin_version,
                    const part_profile_t *prof, part_device_t *out) {
  const part_device_t *d = prof ? part_profile_find(prof, target, index) : NULL;
  if (d) {
    *out = *d;
    return;
  }
  part_device_defaults(target, index, di, out);
  if (plugin_version) snprintf(out->plugin_version, sizeof out->plugin_version, "%s", plugin_version);
}

flagos_status_t rt_load_profiles(part_profile_t **out) {
  *out = NULL;
  part_profile_t *prof = calloc(1, sizeof *prof);
  if (!prof) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  char path[4096];
  part_profile_default_path(path, sizeof path);
  flagos_status_t st = part_profile_load(path, prof);
  if (st && flagos_status_code(st) == FLAGOS_ERR_NOT_FOUND) { /* none saved: the documented defaults */
    flagos_status_free(st);
    free(prof);
    return NULL;
  }
  if (st) {
    free(prof);
    return st;
  }
  *out = prof;
  return NULL;
}

flagos_status_t rt_solve_plan(const flagos_bundle_t *b, const part_device_t *devs, int n_dev, const char *sla_json,
                              char **plan_json) {
  part_sla_t sla;
  FL_TRY(part_sla_parse(sla_json, strlen(sla_json), "sla", &sla));
  const rt_plan_t *p = &b->main;
  const fir_graph_t *g = p->graph;
  int nn = p->n_nodes;
  double *flops = calloc((size_t)nn + 1, sizeof(double));
  int *kernels = calloc((size_t)nn + 1, sizeof(int));
  const char **names = calloc((size_t)nn + 1, sizeof(char *));
  int *assign = NULL;
  part_graph_t *pg = NULL;
  part_problem_t prob;
  bool have_prob = false;
  flagos_status_t st = NULL;
  if (!flops || !kernels || !names) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  /* The same groups as the compiler's (src/compiler/plan.c), from the manifest
   * the bundle was loaded with. */
  for (int i = 0; !st && i < nn; i++) {
    const rt_node_t *rn = &p->nodes[i];
    flops[i] = rn->flops;
    kernels[i] = rn->host ? 0 : rn->n_steps > 0 ? rn->n_steps : 1;
    names[i] = rn->group ? rn->group : rn->node->name;
  }
  if (!st) st = part_graph_from_fir(g, flops, kernels, names, &pg);
  if (!st) {
    st = part_problem_init(&prob, pg, devs, n_dev, &sla);
    have_prob = st == NULL;
  }
  if (!st) {
    part_solve_info_t info;
    memset(&info, 0, sizeof info);
    assign = calloc((size_t)pg->n_groups + 1, sizeof(int));
    st = assign ? part_solve(&prob, NULL, assign, &info) : FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (!st) {
    *plan_json = part_plan_json(&prob, assign, NULL, NULL);
    if (!*plan_json) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (st) st = flagos_status_wrap(st, "placement");
  if (have_prob) part_problem_free(&prob);
  part_graph_destroy(pg);
  free(assign);
  free(flops);
  free(kernels);
  free(names);
  return st;
}
