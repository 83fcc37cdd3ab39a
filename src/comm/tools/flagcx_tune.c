/* flagcx-tune: measures every host algorithm and chunk size per collective and
 * message size on this machine and saves the fastest as a tuning table
 * (docs/flagcx.md), which FlagCX then reads from FLAGCX_TUNE_FILE or
 * ~/.cache/flagos/flagcx-tune.json. Tables are kept per rank count and
 * transport: a new measurement replaces only the table it measured. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tool_common.h"

enum { T_ALLREDUCE, T_BROADCAST, T_REDUCE, T_ALLGATHER, T_REDUCE_SCATTER, T_ALLTOALL, T_NUM };
static const char *const coll_names[T_NUM] = {"all_reduce", "broadcast", "reduce", "all_gather", "reduce_scatter",
                                              "all_to_all"};

typedef struct topts {
  const char *output;
  size_t minb, maxb;
  int iters;
  size_t chunks[8];
  int nchunks;
  bool colls[T_NUM];
  bool quick;
} topts_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: flagcx-tune [options]\n"
          "Times ring, tree and direct with several chunk sizes for each collective and message size, and\n"
          "saves the fastest choice per size range as a FlagCX tuning table.\n"
          "  -o, --output FILE   where to save (default: $FLAGCX_TUNE_FILE, else ~/.cache/flagos/flagcx-tune.json);\n"
          "                      tables of other rank counts or transports in the file are kept\n"
          "  -b, --minbytes SIZE smallest message measured (default 1K)\n"
          "  -e, --maxbytes SIZE largest message measured (default 16M)\n"
          "  -n, --iters N       timed calls per candidate (default 5; the median counts)\n"
          "      --chunks LIST   chunk sizes to try, e.g. 64K,256K,1M (default)\n"
          "      --colls LIST    collectives to tune (default all: all_reduce,broadcast,reduce,all_gather,\n"
          "                      reduce_scatter,all_to_all)\n"
          "      --quick         a coarse, fast pass (sizes x16, one chunk size)\n"
          "      --nranks N      fork N ranks over TCP when not launched by mpirun (default 2)\n"
          "      --device LIST   device kinds of the ranks, as flagcx-bench (default host); staged\n"
          "                      communicators also get their staging chunk measured\n"
          "  -h, --help          this text\n");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

typedef struct tctx {
  topts_t *o;
  flagcx_comm_t comm;
  int rank, n;
  void *send, *recv, *scalar;
} tctx_t;

static flagcx_result_t run(tctx_t *t, int coll, size_t bytes) {
  flagcx_comm_t c = t->comm;
  size_t count = bytes;
  switch (coll) {
  case T_ALLREDUCE: return flagcx_all_reduce(t->send, t->recv, count, FLAGCX_UINT8, FLAGCX_SUM, c, NULL);
  case T_BROADCAST: return flagcx_broadcast(t->send, t->recv, count, FLAGCX_UINT8, 0, c, NULL);
  case T_REDUCE: return flagcx_reduce(t->send, t->recv, count, FLAGCX_UINT8, FLAGCX_SUM, 0, c, NULL);
  case T_ALLGATHER: return flagcx_all_gather(t->send, t->recv, count / (size_t)t->n, FLAGCX_UINT8, c, NULL);
  case T_REDUCE_SCATTER:
    return flagcx_reduce_scatter(t->send, t->recv, count / (size_t)t->n, FLAGCX_UINT8, FLAGCX_SUM, c, NULL);
  default: return flagcx_all_to_all(t->send, t->recv, count / (size_t)t->n, FLAGCX_UINT8, c, NULL);
  }
}

/* Median time of one call, the slowest rank's. -1 on failure. */
static double measure(tctx_t *t, int coll, size_t bytes) {
  double times[64];
  int iters = t->o->iters < 64 ? t->o->iters : 64;
  if (run(t, coll, bytes) != FLAGCX_SUCCESS) return -1; /* warm-up */
  for (int i = 0; i < iters; i++) {
    double t0 = tool_now_s();
    if (run(t, coll, bytes) != FLAGCX_SUCCESS) return -1;
    times[i] = tool_now_s() - t0;
  }
  qsort(times, (size_t)iters, sizeof times[0], cmp_double);
  double med = times[iters / 2];
  /* The reduction itself runs with the table's choice, the same on all ranks. */
  flagcx_comm_set_algorithm(t->comm, FLAGCX_ALGO_AUTO, 0);
  double out = med;
  if (flagcx_mem_write(t->comm, t->scalar, 0, &med, sizeof med) != FLAGCX_SUCCESS ||
      flagcx_all_reduce(t->scalar, t->scalar, 1, FLAGCX_FLOAT64, FLAGCX_MAX, t->comm, NULL) != FLAGCX_SUCCESS ||
      flagcx_mem_read(t->comm, &out, t->scalar, 0, sizeof out) != FLAGCX_SUCCESS)
    return -1;
  return out;
}

typedef struct choice {
  size_t bytes;
  int algo;
  size_t chunk;
  double us;
} choice_t;

static const char *default_path(char *buf, size_t n) {
  const char *env = getenv("FLAGCX_TUNE_FILE");
  if (env && *env) return env;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && *xdg) snprintf(buf, n, "%s/flagos/flagcx-tune.json", xdg);
  else snprintf(buf, n, "%s/.cache/flagos/flagcx-tune.json", home ? home : ".");
  return buf;
}

static void mkdirs_for(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
}

static int save(const char *path, cJSON *table, int nranks, const char *transport) {
  cJSON *root = NULL;
  FILE *f = fopen(path, "rb");
  if (f) {
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len > 0 ? malloc((size_t)len + 1) : NULL;
    if (text && fread(text, 1, (size_t)len, f) == (size_t)len) {
      text[len] = 0;
      root = cJSON_Parse(text);
    }
    free(text);
    fclose(f);
    if (!root) fprintf(stderr, "flagcx-tune: %s was not a tuning file; replacing it\n", path);
  }
  const cJSON *fmt = root ? cJSON_GetObjectItemCaseSensitive(root, "format") : NULL;
  if (!root || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "flagcx-tune") != 0) {
    cJSON_Delete(root);
    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "flagcx-tune");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddItemToObject(root, "tables", cJSON_CreateArray());
  }
  cJSON *tables = cJSON_GetObjectItemCaseSensitive(root, "tables");
  if (!cJSON_IsArray(tables)) {
    cJSON_DeleteItemFromObject(root, "tables");
    tables = cJSON_AddArrayToObject(root, "tables");
  }
  for (int i = cJSON_GetArraySize(tables) - 1; i >= 0; i--) {
    const cJSON *tb = cJSON_GetArrayItem(tables, i);
    const cJSON *nr = cJSON_GetObjectItemCaseSensitive(tb, "nranks");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(tb, "transport");
    if (cJSON_IsNumber(nr) && nr->valueint == nranks && cJSON_IsString(tr) && strcmp(tr->valuestring, transport) == 0)
      cJSON_DeleteItemFromArray(tables, i);
  }
  cJSON_AddItemToArray(tables, table);
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) return -1;
  mkdirs_for(path);
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  f = fopen(tmp, "wb");
  int rc = -1;
  if (f) {
    rc = fputs(text, f) >= 0 && fputc('\n', f) != EOF ? 0 : -1;
    if (fclose(f) != 0) rc = -1;
    if (rc == 0 && rename(tmp, path) != 0) rc = -1;
    if (rc != 0) unlink(tmp);
  }
  free(text);
  if (rc != 0) fprintf(stderr, "flagcx-tune: cannot write %s: %s\n", path, strerror(errno));
  return rc;
}

static int tune_body(flagcx_comm_t comm, int rank, int n, void *ctx) {
  topts_t *o = ctx;
  tctx_t t = {.o = o, .comm = comm, .rank = rank, .n = n};
  size_t bytes = o->maxb + (size_t)n * 8;
  if (flagcx_mem_alloc(comm, bytes, &t.send) || flagcx_mem_alloc(comm, bytes, &t.recv) ||
      flagcx_mem_alloc(comm, sizeof(double), &t.scalar)) {
    fprintf(stderr, "rank %d: cannot allocate buffers: %s\n", rank, flagcx_last_error(comm));
    return 1;
  }
  const char *desc = flagcx_comm_describe(comm);
  const char *tp = strstr(desc, "transport ");
  char transport[16] = "tcp";
  if (tp) sscanf(tp + 10, "%15[a-z]", transport);
  bool staged = strstr(desc, "path staged") != NULL;
  cJSON *rules = cJSON_CreateObject();
  int failed = 0;
  if (rank == 0) printf("# flagcx-tune: %d ranks; %s\n", n, desc);
  for (int coll = 0; coll < T_NUM && !failed; coll++) {
    if (!o->colls[coll]) continue;
    choice_t best[64];
    int nb = 0;
    size_t step = o->quick ? 16 : 4;
    for (size_t size = o->minb; size <= o->maxb && nb < 64 && !failed; size *= step) {
      size_t sz = coll >= T_ALLGATHER ? size / (size_t)n * (size_t)n : size;
      if (sz == 0) continue;
      choice_t c = {.bytes = sz, .us = 1e300};
      for (int algo = FLAGCX_ALGO_RING; algo <= FLAGCX_ALGO_DIRECT && !failed; algo++) {
        if (algo == FLAGCX_ALGO_TREE && coll >= T_ALLGATHER) continue; /* no tree for these */
        if (algo != FLAGCX_ALGO_DIRECT && coll == T_ALLTOALL) continue;
        for (int k = 0; k < o->nchunks; k++) {
          flagcx_comm_set_algorithm(comm, (flagcx_algo_t)algo, o->chunks[k]);
          double s = measure(&t, coll, sz);
          if (s < 0) {
            fprintf(stderr, "rank %d: %s failed: %s\n", rank, coll_names[coll], flagcx_last_error(comm));
            failed = 1;
            break;
          }
          if (s * 1e6 < c.us) {
            c.us = s * 1e6;
            c.algo = algo;
            c.chunk = o->chunks[k];
          }
          if (sz <= o->chunks[0]) break; /* smaller than every chunk: chunk sizes cannot differ */
        }
      }
      if (rank == 0 && !failed)
        printf("%-15s %10zu B  %-6s chunk %8zu  %10.2f us\n", coll_names[coll], sz, flagcx_algo_name((flagcx_algo_t)c.algo),
               c.chunk, c.us);
      best[nb++] = c;
    }
    /* Consecutive sizes with the same choice form one rule. */
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < nb; i++) {
      if (i + 1 < nb && best[i + 1].algo == best[i].algo && best[i + 1].chunk == best[i].chunk) continue;
      cJSON *r = cJSON_CreateObject();
      if (i + 1 < nb) cJSON_AddNumberToObject(r, "max_bytes", (double)best[i].bytes);
      cJSON_AddStringToObject(r, "algo", flagcx_algo_name((flagcx_algo_t)best[i].algo));
      cJSON_AddNumberToObject(r, "chunk_bytes", (double)best[i].chunk);
      cJSON_AddItemToArray(list, r);
    }
    cJSON_AddItemToObject(rules, coll_names[coll], list);
  }
  size_t stage_best = 2u << 20;
  if (staged && !failed) {
    /* Mixed communicators: the staging chunk trades copy/network overlap against per-chunk cost. */
    static const size_t stages[] = {256u << 10, 1u << 20, 4u << 20};
    double best_us = 1e300;
    flagcx_comm_set_algorithm(comm, FLAGCX_ALGO_AUTO, 0);
    for (size_t k = 0; k < 3 && !failed; k++) {
      flagcx_comm_set_staging_chunk(comm, stages[k]);
      double s = measure(&t, T_ALLREDUCE, o->maxb);
      if (s < 0) failed = 1;
      else if (s < best_us) {
        best_us = s;
        stage_best = stages[k];
      }
    }
    if (rank == 0 && !failed) printf("staging chunk %zu bytes\n", stage_best);
  }
  flagcx_comm_set_algorithm(comm, FLAGCX_ALGO_AUTO, 0);
  int rc = failed;
  if (rank == 0 && !failed) {
    cJSON *table = cJSON_CreateObject();
    char host[128] = "", when[32];
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddNumberToObject(table, "nranks", n);
    cJSON_AddStringToObject(table, "transport", transport);
    cJSON_AddStringToObject(table, "host", host);
    cJSON_AddStringToObject(table, "measured", when);
    cJSON_AddNumberToObject(table, "staging_chunk_bytes", (double)stage_best);
    cJSON_AddItemToObject(table, "rules", rules);
    rules = NULL;
    char buf[1024];
    const char *path = o->output ? o->output : default_path(buf, sizeof buf);
    if (save(path, table, n, transport) == 0) printf("# saved the table for %d ranks over %s to %s\n", n, transport, path);
    else rc = 1;
  }
  cJSON_Delete(rules);
  flagcx_mem_free(comm, t.send);
  flagcx_mem_free(comm, t.recv);
  flagcx_mem_free(comm, t.scalar);
  return rc;
}

int main(int argc, char **argv) {
  topts_t o = {.minb = 1024, .maxb = 16u << 20, .iters = 5, .chunks = {64u << 10, 256u << 10, 1u << 20}, .nchunks = 3};
  for (int k = 0; k < T_NUM; k++) o.colls[k] = true;
  tool_launch_t l = {.devices = "host", .nranks = 2};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "--quick") == 0) {
      o.quick = true;
      continue;
    }
    if (!v) {
      fprintf(stderr, "flagcx-tune: %s needs a value (see --help)\n", a);
      return 2;
    }
    i++;
    size_t sz;
    if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)) o.output = v;
    else if ((strcmp(a, "-b") == 0 || strcmp(a, "--minbytes") == 0) && tool_parse_size(v, &sz) == 0 && sz) o.minb = sz;
    else if ((strcmp(a, "-e") == 0 || strcmp(a, "--maxbytes") == 0) && tool_parse_size(v, &sz) == 0 && sz) o.maxb = sz;
    else if ((strcmp(a, "-n") == 0 || strcmp(a, "--iters") == 0) && atoi(v) > 0) o.iters = atoi(v);
    else if (strcmp(a, "--nranks") == 0 && atoi(v) > 0) l.nranks = atoi(v);
    else if (strcmp(a, "--device") == 0) l.devices = v;
    else if (strcmp(a, "--chunks") == 0) {
      o.nchunks = 0;
      char buf[256];
      snprintf(buf, sizeof buf, "%s", v);
      for (char *tok = strtok(buf, ","); tok && o.nchunks < 8; tok = strtok(NULL, ",")) {
        if (tool_parse_size(tok, &sz) != 0 || sz < 64) {
          fprintf(stderr, "flagcx-tune: bad chunk size '%s'\n", tok);
          return 2;
        }
        o.chunks[o.nchunks++] = sz;
      }
    } else if (strcmp(a, "--colls") == 0) {
      for (int k = 0; k < T_NUM; k++) o.colls[k] = false;
      char buf[256];
      snprintf(buf, sizeof buf, "%s", v);
      for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int found = -1;
        for (int k = 0; k < T_NUM; k++)
          if (strcmp(tok, coll_names[k]) == 0) found = k;
        if (found < 0) {
          fprintf(stderr, "flagcx-tune: unknown collective '%s'\n", tok);
          return 2;
        }
        o.colls[found] = true;
      }
    } else {
      fprintf(stderr, "flagcx-tune: bad option or value: %s %s (see --help)\n", a, v);
      return 2;
    }
  }
  if (o.quick) {
    o.nchunks = 1;
    o.chunks[0] = 256u << 10;
  }
  if (o.nchunks == 0 || o.minb > o.maxb) {
    fprintf(stderr, "flagcx-tune: nothing to measure (check --chunks, --minbytes, --maxbytes)\n");
    return 2;
  }
  /* Smallest chunk first: the "message smaller than every chunk" shortcut relies on it. */
  qsort(o.chunks, (size_t)o.nchunks, sizeof o.chunks[0], cmp_size);
  return tool_run(&l, tune_body, &o);
}
