/* The tuning table: for each collective, size ranges mapped to an algorithm and
 * a chunk size. A built-in table covers every case; a JSON file written by
 * flagcx-tune (format in docs/flagcx.md) replaces the rules it has. Rank 0's
 * table is sent to every rank at init, so all ranks always choose alike. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcx.h"

static void set_rules(fcx_tune_t *t, int coll, int n, const fcx_rule_t *rules) {
  t->nrules[coll] = n;
  memcpy(t->rules[coll], rules, sizeof *rules * (size_t)n);
}

#define KB(x) ((uint64_t)(x) << 10)
#define MB(x) ((uint64_t)(x) << 20)
#define OPEN UINT64_MAX

void fcx_tune_builtin(fcx_tune_t *t, int nranks) {
  memset(t, 0, sizeof *t);
  /* Measured on loopback TCP with 2 to 8 ranks: one round of direct messages
   * wins while latency dominates, the tree's log(n) steps in the middle, and the
   * bandwidth-optimal ring (or chain) for large messages. */
  const fcx_rule_t allreduce[] = {{KB(8), FLAGCX_ALGO_DIRECT, 0, KB(64)},
                                  {KB(256), FLAGCX_ALGO_TREE, 0, KB(64)},
                                  {OPEN, FLAGCX_ALGO_RING, 0, KB(512)}};
  const fcx_rule_t rooted[] = {{KB(16), FLAGCX_ALGO_DIRECT, 0, KB(64)},
                               {MB(1), FLAGCX_ALGO_TREE, 0, KB(128)},
                               {OPEN, FLAGCX_ALGO_RING, 0, KB(512)}};
  const fcx_rule_t gather[] = {{KB(32), FLAGCX_ALGO_DIRECT, 0, KB(64)}, {OPEN, FLAGCX_ALGO_RING, 0, KB(512)}};
  const fcx_rule_t direct[] = {{OPEN, FLAGCX_ALGO_DIRECT, 0, MB(1)}};
  set_rules(t, FCX_COLL_ALLREDUCE, 3, allreduce);
  set_rules(t, FCX_COLL_BROADCAST, 3, rooted);
  set_rules(t, FCX_COLL_REDUCE, 3, rooted);
  set_rules(t, FCX_COLL_ALLGATHER, 2, gather);
  set_rules(t, FCX_COLL_REDUCE_SCATTER, 2, gather);
  set_rules(t, FCX_COLL_ALLTOALL, 1, direct);
  set_rules(t, FCX_COLL_ALLTOALLV, 1, direct);
  set_rules(t, FCX_COLL_P2P, 1, direct);
  if (nranks <= 2) {
    /* With two ranks every algorithm sends the same bytes; the ring's halves
     * pipeline best. */
    t->rules[FCX_COLL_ALLREDUCE][1].algo = FLAGCX_ALGO_RING;
  }
  t->staging_chunk_bytes = MB(2);
  snprintf(t->source, sizeof t->source, "built-in");
}

flagcx_algo_t fcx_algo_for(int coll, flagcx_algo_t algo) {
  switch (coll) {
  case FCX_COLL_ALLREDUCE:
  case FCX_COLL_BROADCAST:
  case FCX_COLL_REDUCE: return algo;
  case FCX_COLL_ALLGATHER:
  case FCX_COLL_REDUCE_SCATTER: return algo == FLAGCX_ALGO_TREE ? FLAGCX_ALGO_RING : algo;
  default: return FLAGCX_ALGO_DIRECT;
  }
}

const fcx_rule_t *fcx_tune_pick(const fcx_tune_t *t, int coll, uint64_t bytes) {
  if (coll <= 0 || coll >= FCX_NUM_COLLS || t->nrules[coll] == 0) return NULL;
  for (int i = 0; i < t->nrules[coll]; i++)
    if (bytes <= t->rules[coll][i].max_bytes) return &t->rules[coll][i];
  return &t->rules[coll][t->nrules[coll] - 1];
}

static int coll_from_name(const char *s) {
  for (int c = 1; c < FCX_NUM_COLLS; c++)
    if (strcmp(fcx_coll_name(c), s) == 0) return c;
  if (strcmp(s, "p2p") == 0) return FCX_COLL_P2P;
  return -1;
}

static flagcx_result_t parse_rules(fcx_tune_t *t, const cJSON *rules, const char *where, fcx_err_t *err) {
  const cJSON *item;
  cJSON_ArrayForEach(item, rules) {
    int coll = coll_from_name(item->string ? item->string : "");
    if (coll < FCX_COLL_ALLREDUCE || coll > FCX_COLL_P2P)
      return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s: unknown collective '%s' in \"rules\"", where,
                        item->string ? item->string : "");
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) < 1 || cJSON_GetArraySize(item) > FCX_MAX_RULES)
      return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s: rules of %s must be an array of 1 to %d rules", where,
                        item->string, FCX_MAX_RULES);
    fcx_rule_t rs[FCX_MAX_RULES];
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, item) {
      const cJSON *mb = cJSON_GetObjectItemCaseSensitive(r, "max_bytes");
      const cJSON *al = cJSON_GetObjectItemCaseSensitive(r, "algo");
      const cJSON *ch = cJSON_GetObjectItemCaseSensitive(r, "chunk_bytes");
      int algo = cJSON_IsString(al) ? flagcx_algo_from_name(al->valuestring) : -1;
      if (algo <= FLAGCX_ALGO_AUTO)
        return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s: %s rule %d: \"algo\" must be ring, tree or direct",
                          where, item->string, n);
      if (!cJSON_IsNumber(ch) || ch->valuedouble < 1 || ch->valuedouble > 1e12)
        return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s: %s rule %d: \"chunk_bytes\" must be a positive number",
                          where, item->string, n);
      uint64_t max = OPEN;
      if (mb && !cJSON_IsNull(mb)) {
        if (!cJSON_IsNumber(mb) || mb->valuedouble < 0)
          return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s: %s rule %d: \"max_bytes\" must be a number",
                            where, item->string, n);
        max = (uint64_t)mb->valuedouble;
      }
      if (n > 0 && max <= rs[n - 1].max_bytes)
        return fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT,
                          "%s: %s rule %d: \"max_bytes\" must grow from rule to rule (only the last may be open)",
                          where, item->string, n);
      rs[n++] = (fcx_rule_t){max, fcx_algo_for(coll, (flagcx_algo_t)algo), 0, (uint64_t)ch->valuedouble};
    }
    rs[n - 1].max_bytes = OPEN; /* the last rule covers everything larger */
    set_rules(t, coll, n, rs);
  }
  return FLAGCX_SUCCESS;
}

flagcx_result_t fcx_tune_load(fcx_tune_t *t, const char *path, int nranks, const char *transport, fcx_err_t *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) return fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "%s does not exist", path);
    return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "cannot open tuning file %s: %s", path, strerror(errno));
  }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = len >= 0 && len < (64 << 20) ? malloc((size_t)len + 1) : NULL;
  if (!text || fread(text, 1, (size_t)len, f) != (size_t)len) {
    fclose(f);
    free(text);
    return fcx_seterr(err, FLAGCX_ERR_SYSTEM, "cannot read tuning file %s", path);
  }
  fclose(f);
  text[len] = 0;
  cJSON *root = cJSON_Parse(text);
  const char *bad_at = root ? NULL : cJSON_GetErrorPtr();
  long err_off = bad_at && bad_at >= text && bad_at <= text + len ? (long)(bad_at - text) : -1;
  free(text);
  flagcx_result_t r = FLAGCX_SUCCESS;
  const cJSON *tables = root ? cJSON_GetObjectItemCaseSensitive(root, "tables") : NULL;
  const cJSON *fmt = root ? cJSON_GetObjectItemCaseSensitive(root, "format") : NULL;
  if (!root) {
    r = fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "tuning file %s is not valid JSON (near byte %ld)", path, err_off);
  } else if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "flagcx-tune") != 0 || !cJSON_IsArray(tables)) {
    r = fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT,
                   "tuning file %s: expected {\"format\": \"flagcx-tune\", \"tables\": [...]}", path);
  } else {
    /* Same transport; the exact rank count, else the nearest. */
    const cJSON *best = NULL, *tb;
    int best_dist = 1 << 30, idx = 0, best_idx = -1;
    cJSON_ArrayForEach(tb, tables) {
      const cJSON *nr = cJSON_GetObjectItemCaseSensitive(tb, "nranks");
      const cJSON *tr = cJSON_GetObjectItemCaseSensitive(tb, "transport");
      if (cJSON_IsNumber(nr) && cJSON_IsString(tr) && strcmp(tr->valuestring, transport) == 0) {
        int d = abs(nr->valueint - nranks);
        if (d < best_dist) {
          best_dist = d;
          best = tb;
          best_idx = idx;
        }
      }
      idx++;
    }
    if (!best) {
      r = fcx_seterr(err, FLAGCX_ERR_UNAVAILABLE, "tuning file %s has no table for transport %s", path, transport);
    } else {
      fcx_tune_t tmp = *t;
      char where[256];
      snprintf(where, sizeof where, "tuning file %s, table %d", path, best_idx);
      const cJSON *rules = cJSON_GetObjectItemCaseSensitive(best, "rules");
      const cJSON *st = cJSON_GetObjectItemCaseSensitive(best, "staging_chunk_bytes");
      if (!cJSON_IsObject(rules)) r = fcx_seterr(err, FLAGCX_ERR_INVALID_ARGUMENT, "%s: no \"rules\" object", where);
      else r = parse_rules(&tmp, rules, where, err);
      if (r == FLAGCX_SUCCESS && cJSON_IsNumber(st) && st->valuedouble >= 1024) tmp.staging_chunk_bytes = (uint64_t)st->valuedouble;
      if (r == FLAGCX_SUCCESS) {
        const cJSON *nr = cJSON_GetObjectItemCaseSensitive(best, "nranks");
        snprintf(tmp.source, sizeof tmp.source, "%.150s (table for %d ranks)", path, nr->valueint);
        *t = tmp;
      }
    }
  }
  cJSON_Delete(root);
  return r;
}

flagcx_result_t fcx_tune_default(fcx_tune_t *t, int nranks, const char *transport, fcx_err_t *err) {
  fcx_tune_builtin(t, nranks);
  const char *path = fcx_env_str("FLAGCX_TUNE_FILE");
  char buf[512];
  bool explicit_file = path != NULL;
  if (!path) {
    const char *home = fcx_env_str("HOME");
    const char *xdg = fcx_env_str("XDG_CACHE_HOME");
    if (xdg) snprintf(buf, sizeof buf, "%s/flagos/flagcx-tune.json", xdg);
    else if (home) snprintf(buf, sizeof buf, "%s/.cache/flagos/flagcx-tune.json", home);
    else return FLAGCX_SUCCESS;
    path = buf;
  }
  if (strcmp(path, "none") == 0) return FLAGCX_SUCCESS;
  fcx_err_t e2;
  flagcx_result_t r = fcx_tune_load(t, path, nranks, transport, &e2);
  if (r == FLAGCX_SUCCESS || r == FLAGCX_ERR_UNAVAILABLE) {
    fcx_debug("tuning: %s%s%s", t->source, r ? " because " : "", r ? e2.msg : "");
    return FLAGCX_SUCCESS;
  }
  if (explicit_file) return fcx_seterr(err, r, "FLAGCX_TUNE_FILE: %s", e2.msg);
  /* A damaged cache must not stop programs: say so and use the built-in table. */
  fprintf(stderr, "flagcx: warning: ignoring %s\n", e2.msg);
  fcx_tune_builtin(t, nranks);
  return FLAGCX_SUCCESS;
}
