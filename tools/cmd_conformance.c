/* flagos conformance: runs ONNX's backend node tests in worker processes (a
 * failure is always confirmed in a process of its own) so a crash or a hang is a
 * reported failure, compares with ONNX's published outputs,
 * and checks the result against a list of expected failures. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "conformance.h"
#include "io/value_io.h"
#include "runtime/runtime.h"

static const char k_help[] =
    "usage: flagos conformance DIR [options]\n"
    "\n"
    "Runs every ONNX backend test folder under DIR (each holds model.onnx and\n"
    "test_data_set_N/{input,output}_K.pb): compiles the model for the target, runs\n"
    "every data set and compares each output with ONNX's (rtol 1e-3, atol 1e-7 for\n"
    "floats; exact for integers, booleans and strings; NaN where and only where the\n"
    "reference has NaN; dtype and shape must match). Prints one line per failure\n"
    "and a summary 'N passed, N failed'.\n"
    "\n"
    "options:\n"
    "  --target T                  target to compile for and run on (default: cpu);\n"
    "                              T:DEVICE also picks the device (opencl:1,\n"
    "                              opencl:NVIDIA)\n"
    "  --device D                  device to run on (default: the target)\n"
    "  --report FILE               write a JSON report of every test\n"
    "  --filter S                  only tests whose name contains S, in any case\n"
    "                              ('=NAME' for an exact name); repeatable\n"
    "  --shard K/N                 only every N-th test (by name) from the K-th on,\n"
    "                              K in 0..N-1: a sample spread over all operators\n"
    "  --expected-failures FILE    tests listed there (one per line: NAME reason)\n"
    "                              must fail; exit status is 0 only if every other\n"
    "                              test passes and every listed test fails\n"
    "  -j, --jobs N                tests run in parallel (default: number of CPUs)\n"
    "  --batch N                   tests run one after another in one worker\n"
    "                              process (default 16; 1: a process per test).\n"
    "                              A test that fails or crashes in a batch is run\n"
    "                              again alone, and only that result counts\n"
    "  --timeout SEC               per-test limit (default 300)\n"
    "  --rtol X, --atol X          tolerances (defaults 1e-3 and 1e-7)\n"
    "  -v, --verbose               print every test's result\n"
    "  -h, --help                  this help\n"
    "\n"
    "Exit status: 0 when the run matches expectations, 1 otherwise, 2 on bad usage.\n";

typedef struct {
  char *name;
  int status; /* 0 pending, 1 pass, 2 fail */
  char reason[600];
  double ms;
  bool expected_fail;
  char *expected_reason;
  bool reported; /* its line printed and counted */
} test_t;

typedef struct {
  const char *dir, *target, *device;
  double rtol, atol;
} conf_opts_t;

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Runs one test in this (child) process; writes "P" or "F<reason>" to fd. */
static void run_one(const conf_opts_t *o, const char *name, int fd) {
  char path[4096], why[600] = "";
  bool pass = false;
  flagos_bundle_t *b = NULL;
  flagos_session_t *s = NULL;
  snprintf(path, sizeof path, "%s/%s/model.onnx", o->dir, name);
  char target[64]; /* "opencl:1" compiles for opencl */
  snprintf(target, sizeof target, "%.*s", (int)strcspn(o->target, ":"), o->target);
  flagos_compile_options_t co = {.targets = target};
  flagos_status_t st = flagos_compile_to_bundle(path, &co, &b);
  flagos_session_options_t so = {.device = o->device ? o->device : o->target};
  if (!st) st = flagos_session_create(b, &so, &s);
  int n_sets = 0;
  if (!st) {
    fir_graph_t *g = b->model->graph;
    int ni = g->n_inputs, no = g->n_outputs;
    for (int set = 0; !st; set++) {
      char sd[3800];
      snprintf(sd, sizeof sd, "%s/%s/test_data_set_%d", o->dir, name, set);
      if (!is_dir(sd)) break;
      n_sets++;
      flagos_value_t *vin = calloc((size_t)ni + 1, sizeof(*vin)), *vout = calloc((size_t)no + 1, sizeof(*vout)),
                     *vref = calloc((size_t)no + 1, sizeof(*vref));
      for (int k = 0; k < ni && !st; k++) {
        snprintf(path, sizeof path, "%s/input_%d.pb", sd, k);
        st = io_load_value(path, g->inputs[k]->type, &vin[k]);
      }
      if (!st) st = flagos_session_run(s, vin, ni, vout, no);
      for (int k = 0; k < no && !st; k++) {
        snprintf(path, sizeof path, "%s/output_%d.pb", sd, k);
        st = io_load_value(path, g->outputs[k]->type, &vref[k]);
        char w[500];
        if (!st && !conf_compare(&vout[k], &vref[k], o->rtol, o->atol, w, sizeof w) && !why[0])
          snprintf(why, sizeof why, "data set %d, output '%s': %s", set, g->outputs[k]->name, w);
      }
      for (int k = 0; k < ni; k++) flagos_value_clear(&vin[k]);
      for (int k = 0; k < no; k++) {
        flagos_value_clear(&vout[k]);
        flagos_value_clear(&vref[k]);
      }
      free(vin);
      free(vout);
      free(vref);
    }
  }
  if (st) {
    snprintf(why, sizeof why, "%s", flagos_status_message(st));
    flagos_status_free(st);
  } else if (!why[0]) {
    if (n_sets == 0) snprintf(why, sizeof why, "no test_data_set_0 folder");
    else pass = true;
  }
  flagos_session_destroy(s);
  flagos_bundle_close(b);
  /* One line per test: 'P' or 'F' and the reason. */
  char msg[700];
  int n = snprintf(msg, sizeof msg - 1, "%c%s", pass ? 'P' : 'F', pass ? "" : why);
  if (n > (int)sizeof msg - 2) n = (int)sizeof msg - 2;
  for (int i = 0; i < n; i++)
    if (msg[i] == '\n') msg[i] = ' ';
  msg[n++] = '\n';
  ssize_t w = write(fd, msg, (size_t)n);
  (void)w;
}

/* A worker process runs a batch of tests one after another (so that a device
 * runtime's start-up, e.g. PoCL's kernel library, is paid once per batch), each
 * reporting one line. A test that fails or crashes inside a batch is run again
 * alone, so every failure reported is a failure in a process of its own; tests
 * of a batch that never started are queued again. */
typedef struct {
  pid_t pid;
  int fd;
  int *batch, n_batch, done; /* test indices; how many reported */
  double start;              /* when the current test started */
  char buf[2048];
  size_t len;
} slot_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The reason a worker ended without reporting its current test. */
static void died(test_t *t, int wstatus, bool timed_out, double timeout) {
  t->status = 2;
  if (timed_out) snprintf(t->reason, sizeof t->reason, "timed out after %.0f s", timeout);
  else if (WIFSIGNALED(wstatus))
    snprintf(t->reason, sizeof t->reason, "crashed (signal %d: %s)", WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
  else snprintf(t->reason, sizeof t->reason, "exited with status %d without a result", WEXITSTATUS(wstatus));
}

static int load_expected(const char *path, test_t *tests, int n) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "flagos conformance: error: cannot open expected-failures file '%s': %s\n", path, strerror(errno));
    return -1;
  }
  char line[2048];
  int unknown = 0;
  while (fgets(line, sizeof line, f)) {
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '#' || *p == '\n' || !*p) continue;
    char *end = p;
    while (*end && *end != ' ' && *end != '\t' && *end != '\n') end++;
    char save = *end;
    *end = 0;
    char *reason = save ? end + 1 : end;
    while (*reason == ' ' || *reason == '\t') reason++;
    reason[strcspn(reason, "\n")] = 0;
    bool found = false;
    for (int i = 0; i < n; i++)
      if (strcmp(tests[i].name, p) == 0) {
        tests[i].expected_fail = true;
        tests[i].expected_reason = strdup(reason);
        found = true;
      }
    (void)found;
    unknown += !found;
  }
  fclose(f);
  return unknown;
}

static int conformance_main(int argc, char **argv, const char **filters) {
  conf_opts_t o = {NULL, "cpu", NULL, 1e-3, 1e-7};
  const char *report = NULL, *expected = NULL;
  int n_filters = 0, jobs = (int)sysconf(_SC_NPROCESSORS_ONLN);
  double timeout = 300;
  int batch = 16;
  bool verbose = false;
  int shard_k = 0, shard_n = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (cli_is_help(a)) {
      fputs(k_help, stdout);
      return 0;
    } else if (strncmp(a, "--target", 8) == 0) {
      if (!(o.target = cli_value("conformance", argc, argv, &i))) return 2;
    } else if (strncmp(a, "--device", 8) == 0) {
      if (!(o.device = cli_value("conformance", argc, argv, &i))) return 2;
    } else if (strncmp(a, "--report", 8) == 0) {
      if (!(report = cli_value("conformance", argc, argv, &i))) return 2;
    } else if (strncmp(a, "--filter", 8) == 0) {
      if (!(v = cli_value("conformance", argc, argv, &i))) return 2;
      filters[n_filters++] = v;
    } else if (strncmp(a, "--expected-failures", 19) == 0) {
      if (!(expected = cli_value("conformance", argc, argv, &i))) return 2;
    } else if (strcmp(a, "-j") == 0 || strncmp(a, "--jobs", 6) == 0 || (a[0] == '-' && a[1] == 'j' && a[2] >= '0' && a[2] <= '9')) {
      if (a[1] == 'j' && a[2]) v = a + 2;
      else if (!(v = cli_value("conformance", argc, argv, &i))) return 2;
      jobs = atoi(v);
    } else if (strncmp(a, "--shard", 7) == 0) {
      if (!(v = cli_value("conformance", argc, argv, &i))) return 2;
      if (sscanf(v, "%d/%d", &shard_k, &shard_n) != 2 || shard_n < 1 || shard_k < 0 || shard_k >= shard_n) {
        fprintf(stderr, "flagos conformance: error: bad --shard '%s' (expected K/N with 0 <= K < N)\n", v);
        return 2;
      }
    } else if (strncmp(a, "--batch", 7) == 0) {
      if (!(v = cli_value("conformance", argc, argv, &i))) return 2;
      batch = atoi(v);
      if (batch < 1) {
        fprintf(stderr, "flagos conformance: error: bad --batch '%s' (expected a count >= 1)\n", v);
        return 2;
      }
    } else if (strncmp(a, "--timeout", 9) == 0) {
      if (!(v = cli_value("conformance", argc, argv, &i))) return 2;
      timeout = atof(v);
    } else if (strncmp(a, "--rtol", 6) == 0) {
      if (!(v = cli_value("conformance", argc, argv, &i))) return 2;
      o.rtol = atof(v);
    } else if (strncmp(a, "--atol", 6) == 0) {
      if (!(v = cli_value("conformance", argc, argv, &i))) return 2;
      o.atol = atof(v);
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      verbose = true;
    } else if (a[0] == '-') {
      fprintf(stderr, "flagos conformance: error: unknown option '%s' (see --help)\n", a);
      return 2;
    } else if (!o.dir) {
      o.dir = a;
    } else {
      fprintf(stderr, "flagos conformance: error: unexpected argument '%s'\n", a);
      return 2;
    }
  }
  if (!o.dir) {
    fputs(k_help, stderr);
    return 2;
  }
  if (jobs < 1) jobs = 1;
  if (timeout <= 0) timeout = 300;
  DIR *d = opendir(o.dir);
  if (!d) {
    fprintf(stderr, "flagos conformance: error: cannot open '%s': %s\n", o.dir, strerror(errno));
    return 1;
  }
  int cap = 256, n = 0;
  char **names = malloc(sizeof(char *) * (size_t)cap);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/model.onnx", o.dir, e->d_name);
    if (access(p, R_OK) != 0) continue;
    bool keep = n_filters == 0;
    for (int f = 0; f < n_filters && !keep; f++)
      keep = filters[f][0] == '=' ? strcmp(e->d_name, filters[f] + 1) == 0 : strcasestr(e->d_name, filters[f]) != NULL;
    if (!keep) continue;
    if (n == cap) names = realloc(names, sizeof(char *) * (size_t)(cap *= 2));
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof(char *), cmp_names);
  if (shard_n > 1) {
    int kept = 0;
    for (int i = 0; i < n; i++) {
      if (i % shard_n == shard_k) names[kept++] = names[i];
      else free(names[i]);
    }
    n = kept;
  }
  test_t *tests = calloc((size_t)n + 1, sizeof(*tests));
  for (int i = 0; i < n; i++) tests[i].name = names[i];
  free(names);
  int unknown_expected = 0;
  if (expected && (unknown_expected = load_expected(expected, tests, n)) < 0) return 1;

  fflush(stdout);
  if (batch < 1) batch = 1;
  /* queue: tests to run in batches; solo: tests to run (again) one per process. */
  int *queue = malloc(sizeof(int) * (size_t)(n + 1)), *solo = malloc(sizeof(int) * (size_t)(n + 1));
  int q_head = 0, q_len = n, s_head = 0, s_len = 0;
  for (int i = 0; i < n; i++) queue[i] = i;
  slot_t *slots = calloc((size_t)jobs, sizeof(*slots));
  for (int j = 0; j < jobs; j++) slots[j].batch = malloc(sizeof(int) * (size_t)batch);
  int running = 0, done = 0;
  while (done < n) {
    while (running < jobs && (s_head < s_len || q_head < q_len)) {
      int j = 0;
      while (slots[j].pid) j++;
      slot_t *sl = &slots[j];
      sl->n_batch = 0;
      if (s_head < s_len) {
        sl->batch[sl->n_batch++] = solo[s_head++];
      } else {
        /* Batches shrink towards the end so that the last ones spread over every job. */
        int want = (q_len - q_head + jobs - 1) / jobs;
        if (want > batch) want = batch;
        while (sl->n_batch < want) sl->batch[sl->n_batch++] = queue[q_head++];
      }
      int p[2];
      if (pipe(p) != 0) {
        perror("flagos conformance: pipe");
        return 1;
      }
      fflush(stdout);
      pid_t pid = fork();
      if (pid == 0) {
        close(p[0]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
          dup2(devnull, 1);
          dup2(devnull, 2);
        }
        for (int k = 0; k < sl->n_batch; k++) run_one(&o, tests[sl->batch[k]].name, p[1]);
        _exit(0);
      }
      close(p[1]);
      fcntl(p[0], F_SETFL, O_NONBLOCK);
      sl->pid = pid;
      sl->fd = p[0];
      sl->done = 0;
      sl->len = 0;
      sl->start = now_s();
      running++;
    }
    bool progressed = false;
    for (int j = 0; j < jobs; j++) {
      slot_t *sl = &slots[j];
      if (!sl->pid) continue;
      ssize_t r;
      int ws = 0;
      bool timed_out = false, exited = false;
      for (;;) {
        while ((r = read(sl->fd, sl->buf + sl->len, sizeof sl->buf - 1 - sl->len)) > 0) sl->len += (size_t)r;
        /* Every complete line is the result of the batch's next test. */
        char *nl;
        while (sl->done < sl->n_batch && (nl = memchr(sl->buf, '\n', sl->len))) {
          test_t *t = &tests[sl->batch[sl->done]];
          size_t line = (size_t)(nl - sl->buf);
          double t_end = now_s();
          t->ms = (t_end - sl->start) * 1e3;
          if (line > 0 && sl->buf[0] == 'P') {
            t->status = 1;
          } else if (sl->n_batch > 1) {
            solo[s_len++] = sl->batch[sl->done]; /* confirm it alone */
          } else {
            t->status = 2;
            snprintf(t->reason, sizeof t->reason, "%.*s", line > 0 ? (int)line - 1 : 0, sl->buf + 1);
          }
          memmove(sl->buf, nl + 1, sl->len - line - 1);
          sl->len -= line + 1;
          sl->done++;
          sl->start = t_end;
          progressed = true;
        }
        if (exited || sl->len >= sizeof sl->buf - 1) break;
        timed_out = now_s() - sl->start > timeout;
        if (timed_out) {
          kill(sl->pid, SIGKILL);
          waitpid(sl->pid, &ws, 0);
        } else if (waitpid(sl->pid, &ws, WNOHANG) == 0) {
          break;
        }
        exited = true; /* read what it wrote before it ended, then settle the batch */
      }
      if (!exited) continue;
      close(sl->fd);
      for (int k = sl->done; k < sl->n_batch; k++) {
        int ti = sl->batch[k];
        if (k == sl->done && sl->n_batch == 1) died(&tests[ti], ws, timed_out, timeout);
        else if (k == sl->done) solo[s_len++] = ti; /* the test it died in: again, alone */
        else queue[--q_head] = ti;                   /* never started */
      }
      sl->pid = 0;
      running--;
      progressed = true;
    }
    /* Report what is settled, in no particular order. */
    for (int i = 0; i < n; i++) {
      test_t *t = &tests[i];
      if (t->status == 0 || t->reported) continue;
      t->reported = true;
      done++;
      if (verbose || (t->status == 2 && !t->expected_fail) || (t->status == 1 && t->expected_fail)) {
        if (t->status == 1)
          printf("%s %s%s\n", t->expected_fail ? "UNEXPECTED PASS" : "PASS", t->name,
                 t->expected_fail ? " (remove it from the expected-failures list)" : "");
        else
          printf("%s %s: %s\n", t->expected_fail ? "xfail" : "FAIL", t->name, t->reason);
        fflush(stdout);
      }
    }
    if (!progressed) usleep(2000);
  }
  for (int j = 0; j < jobs; j++) free(slots[j].batch);
  free(slots);
  free(queue);
  free(solo);

  int passed = 0, failed = 0, unexpected_fail = 0, unexpected_pass = 0;
  for (int i = 0; i < n; i++) {
    if (tests[i].status == 1) passed++;
    else failed++;
    if (tests[i].status == 2 && !tests[i].expected_fail) unexpected_fail++;
    if (tests[i].status == 1 && tests[i].expected_fail) unexpected_pass++;
  }
  if (report) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "target", o.target);
    cJSON_AddStringToObject(root, "suite", o.dir);
    cJSON_AddNumberToObject(root, "total", n);
    cJSON_AddNumberToObject(root, "passed", passed);
    cJSON_AddNumberToObject(root, "failed", failed);
    cJSON *arr = cJSON_AddArrayToObject(root, "tests");
    for (int i = 0; i < n; i++) {
      cJSON *t = cJSON_CreateObject();
      cJSON_AddStringToObject(t, "name", tests[i].name);
      cJSON_AddStringToObject(t, "result", tests[i].status == 1 ? "pass" : "fail");
      if (tests[i].status != 1) cJSON_AddStringToObject(t, "reason", tests[i].reason);
      cJSON_AddNumberToObject(t, "ms", (double)(int64_t)tests[i].ms);
      if (tests[i].expected_fail) cJSON_AddBoolToObject(t, "expected_failure", true);
      cJSON_AddItemToArray(arr, t);
    }
    char *txt = cJSON_Print(root);
    flagos_status_t st = fl_write_file(report, txt, strlen(txt));
    free(txt);
    cJSON_Delete(root);
    if (st) return cli_fail("conformance", st);
  }
  if (expected)
    printf("expected failures: %d listed, %d failed unexpectedly, %d passed unexpectedly%s\n", failed - unexpected_fail,
           unexpected_fail, unexpected_pass, unknown_expected ? " (some listed names are not in this run)" : "");
  printf("%d passed, %d failed\n", passed, failed);
  for (int i = 0; i < n; i++) {
    free(tests[i].name);
    free(tests[i].expected_reason);
  }
  free(tests);
  if (expected) return unexpected_fail || unexpected_pass ? 1 : 0;
  return failed ? 1 : 0;
}

int cmd_conformance(int argc, char **argv) {
  /* --filter may be given any number of times: room for one per argument. */
  const char **filters = calloc((size_t)argc + 1, sizeof(char *));
  if (!filters) return 1;
  int rc = conformance_main(argc, argv, filters);
  free(filters);
  return rc;
}
