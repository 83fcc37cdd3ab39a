/* Compiling C source to a shared object, with a content-addressed cache.
 *
 * The compiler runs through posix_spawn (no shell: generated paths never meet a
 * shell's parser). Several processes may compile at once, so every file is
 * written under a unique temporary name and renamed into place: a reader sees
 * either no cache entry or a complete one. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/cgen.h"

extern char **environ;

#define CG_MAX_ARGS 64
#define CG_DIAG_LINES 40
#define CG_CAPTURE_MAX (256 * 1024)

/* ---- running a program ---- */
/* Runs argv (argv[0] a path), stdin from /dev/null, stdout and stderr captured
 * (up to CG_CAPTURE_MAX bytes) into `out`. *exit_code is the exit status, or
 * 128 + signal. */
static flagos_status_t run_capture(char *const *argv, fl_buf_t *out, int *exit_code) {
  int fds[2];
  /* Close-on-exec, so that programs other threads spawn meanwhile do not hold the
   * write end open (and delay our end-of-file); dup2 in the child clears it. */
  if (pipe2(fds, O_CLOEXEC) != 0) return FL_ERR(FLAGOS_ERR_IO, "cannot create a pipe: %s", strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return FL_ERR(rc == ENOENT ? FLAGOS_ERR_NOT_FOUND : FLAGOS_ERR_BACKEND, "cannot run '%s': %s", argv[0], strerror(rc));
  }
  char chunk[4096];
  for (;;) {
    ssize_t n = read(fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out->len < CG_CAPTURE_MAX) fl_buf_append(out, chunk, (size_t)n);
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return FL_ERR(FLAGOS_ERR_BACKEND, "waiting for '%s' failed: %s", argv[0], strerror(errno));
  }
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return NULL;
}

/* ---- the compiler and its identity ---- */
typedef struct cc_info {
  char spec[1024];         /* $CC as given ("" means cc) */
  char *argv[CG_MAX_ARGS]; /* resolved program path + its own leading arguments */
  int argc;
  char words[1024];
  char path[PATH_MAX];
  uint64_t id_hash;        /* path + `--version` output */
  flagos_status_t err;     /* why it cannot be used */
} cc_info_t;

static pthread_mutex_t g_cc_lock = PTHREAD_MUTEX_INITIALIZER;
static cc_info_t g_cc;
static bool g_cc_valid;

static bool find_in_path(const char *name, char *out, size_t cap) {
  if (strchr(name, '/')) {
    snprintf(out, cap, "%s", name);
    return access(out, X_OK) == 0;
  }
  const char *p = getenv("PATH");
  if (!p || !*p) p = "/usr/local/bin:/usr/bin:/bin";
  while (*p) {
    const char *e = strchr(p, ':');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n > 0 && n + strlen(name) + 2 < cap) {
      snprintf(out, cap, "%.*s/%s", (int)n, p, name);
      if (access(out, X_OK) == 0) return true;
    }
    p += n + (e ? 1 : 0);
  }
  return false;
}

/* Splits s on blanks into argv words (no quoting: $CC and FLAGOS_CC_FLAGS hold plain words). */
static int split_words(char *s, char **argv, int max) {
  int n = 0;
  for (char *t = strtok(s, " \t\n"); t && n < max; t = strtok(NULL, " \t\n")) argv[n++] = t;
  return n;
}

static void cc_probe(cc_info_t *c) {
  snprintf(c->words, sizeof c->words, "%s", c->spec[0] ? c->spec : "cc");
  c->argc = split_words(c->words, c->argv, CG_MAX_ARGS - 1);
  if (c->argc == 0 || !find_in_path(c->argv[0], c->path, sizeof c->path)) {
    c->err = FL_ERR(FLAGOS_ERR_NOT_FOUND, "C compiler '%s' not found (set $CC to a C compiler)",
                    c->argc ? c->argv[0] : "");
    return;
  }
  char real[PATH_MAX];
  if (realpath(c->path, real)) snprintf(c->path, sizeof c->path, "%s", real);
  c->argv[0] = c->path;
  char *vargv[CG_MAX_ARGS + 1];
  int n = 0;
  for (int i = 0; i < c->argc; i++) vargv[n++] = c->argv[i];
  vargv[n++] = "--version";
  vargv[n] = NULL;
  fl_buf_t out = {0};
  int code = 0;
  flagos_status_t st = run_capture(vargv, &out, &code);
  if (st) {
    c->err = st;
  } else {
    uint64_t h = fl_hash64(c->path, strlen(c->path), 1);
    for (int i = 1; i < c->argc; i++) h = fl_hash64(c->argv[i], strlen(c->argv[i]) + 1, h);
    c->id_hash = fl_hash64(out.data ? out.data : "", out.len, h);
  }
  fl_buf_free(&out);
}

/* Copies the probed compiler for $CC (probing once per distinct $CC). */
static flagos_status_t cc_get(cc_info_t *dst) {
  const char *spec = getenv("CC");
  if (!spec) spec = "";
  pthread_mutex_lock(&g_cc_lock);
  if (!g_cc_valid || strcmp(g_cc.spec, spec) != 0) {
    if (g_cc_valid && g_cc.err) flagos_status_free(g_cc.err);
    memset(&g_cc, 0, sizeof g_cc);
    snprintf(g_cc.spec, sizeof g_cc.spec, "%s", spec);
    cc_probe(&g_cc);
    g_cc_valid = true;
  }
  flagos_status_t st = g_cc.err ? flagos_status_new(flagos_status_code(g_cc.err), "%s", flagos_status_message(g_cc.err)) : NULL;
  *dst = g_cc;
  dst->err = NULL;
  /* argv points into the copy's own storage. */
  for (int i = 1; i < dst->argc; i++) dst->argv[i] = dst->words + (g_cc.argv[i] - g_cc.words);
  dst->argv[0] = dst->path;
  pthread_mutex_unlock(&g_cc_lock);
  return st;
}

/* ---- cache ---- */
static pthread_once_t g_dir_once = PTHREAD_ONCE_INIT;
static void default_dir_init(void) {
  flagos_status_t st = fl_mkdirs(fl_default_cache_dir());
  flagos_status_free(st); /* an unwritable cache only means uncached compiles */
}

const char *cgen_default_cache_dir(void) {
  pthread_once(&g_dir_once, default_dir_init);
  return fl_default_cache_dir();
}

static bool looks_like_elf(const void *p, size_t n) {
  return n > 64 && memcmp(p, "\x7f" "ELF", 4) == 0;
}

/* The first CG_DIAG_LINES lines of the compiler's output. */
static char *first_lines(const fl_buf_t *b) {
  const char *s = b->data ? b->data : "";
  size_t i = 0;
  for (int line = 0; i < b->len && line < CG_DIAG_LINES; i++)
    if (s[i] == '\n') line++;
  char *r = malloc(i + 1);
  if (r) {
    memcpy(r, s, i);
    r[i] = 0;
  }
  return r;
}

static flagos_status_t write_all(int fd, const char *p, size_t n, const char *path) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return FL_ERR(FLAGOS_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return NULL;
}

/* Compiles src in `dir` to `final_so` (renamed into place); on failure keeps
 * the source as <dir>/<key>.failed.c for inspection. */
static flagos_status_t compile_into(const cc_info_t *cc, char **flags, int nflags, const char *src, size_t len,
                                    const char *dir, const char *key, const char *final_so) {
  char csrc[PATH_MAX], tso[PATH_MAX + 8];
  snprintf(csrc, sizeof csrc, "%s/%s.XXXXXX.tmp.c", dir, key);
  int fd = mkstemps(csrc, 6);
  if (fd < 0) return FL_ERR(FLAGOS_ERR_IO, "cannot create a file in '%s': %s", dir, strerror(errno));
  flagos_status_t st = write_all(fd, src, len, csrc);
  if (close(fd) != 0 && !st) st = FL_ERR(FLAGOS_ERR_IO, "cannot write '%s': %s", csrc, strerror(errno));
  if (st) {
    unlink(csrc);
    return st;
  }
  snprintf(tso, sizeof tso, "%.*s.so", (int)(strlen(csrc) - 2), csrc);
  char *argv[2 * CG_MAX_ARGS + 8];
  int n = 0;
  for (int i = 0; i < cc->argc; i++) argv[n++] = cc->argv[i];
  for (int i = 0; i < nflags; i++) argv[n++] = flags[i];
  argv[n++] = "-o";
  argv[n++] = tso;
  argv[n++] = csrc;
  argv[n++] = "-lm";
  argv[n] = NULL;
  fl_buf_t diag = {0};
  int code = 0;
  st = run_capture(argv, &diag, &code);
  if (!st && code != 0) {
    char failed[PATH_MAX + 16];
    snprintf(failed, sizeof failed, "%s/%s.failed.c", dir, key);
    bool kept = rename(csrc, failed) == 0;
    char *head = first_lines(&diag);
    st = FL_ERR(FLAGOS_ERR_BACKEND, "C compiler '%s' failed (exit %d)%s%s:\n%s", cc->path, code,
                kept ? " on " : "", kept ? failed : "", head ? head : "");
    free(head);
  }
  fl_buf_free(&diag);
  unlink(csrc);
  if (!st && rename(tso, final_so) != 0)
    st = FL_ERR(FLAGOS_ERR_IO, "cannot move the compiled kernels to '%s': %s", final_so, strerror(errno));
  if (st) unlink(tso);
  return st;
}

flagos_status_t cgen_c_compile(const char *src, size_t len, int opt_level, const char *cache_dir, void **so,
                               size_t *so_len) {
  *so = NULL;
  *so_len = 0;
  if (!src && len) return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, "cgen_c_compile: no source");
  if (!src) src = "";
  cc_info_t cc;
  FL_TRY(cc_get(&cc));
  if (opt_level < 0) opt_level = 0;
  if (opt_level > 3) opt_level = 3;
  /* No -march=native: the bundle must run on other x86-64 machines. Neither flag
   * below changes a result: no errno from math functions, and FP operations are
   * not assumed to trap (FlagOS never unmasks FP exceptions), which lets GCC turn
   * selects into vector blends. */
  char olevel[8];
  snprintf(olevel, sizeof olevel, "-O%d", opt_level);
  char *flags[2 * CG_MAX_ARGS];
  int nflags = 0;
  const char *base[] = {olevel, "-fPIC", "-shared", "-fopenmp", "-std=gnu17", "-fno-math-errno", "-fno-trapping-math", "-pipe"};
  for (size_t i = 0; i < FL_ARRAY_LEN(base); i++) flags[nflags++] = (char *)base[i];
  char extra[1024] = "";
  const char *ex = getenv("FLAGOS_CC_FLAGS");
  if (ex) {
    snprintf(extra, sizeof extra, "%s", ex);
    nflags += split_words(extra, flags + nflags, CG_MAX_ARGS);
  }
  uint64_t h1 = fl_hash64(src, len, cc.id_hash), h2 = fl_hash64(src, len, ~cc.id_hash ^ 0x9e3779b97f4a7c15ull);
  for (int i = 0; i < nflags; i++) {
    h1 = fl_hash64(flags[i], strlen(flags[i]) + 1, h1);
    h2 = fl_hash64(flags[i], strlen(flags[i]) + 1, h2);
  }
  char key[40];
  snprintf(key, sizeof key, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);

  if (!cache_dir) cache_dir = cgen_default_cache_dir();
  char dir[PATH_MAX], path[PATH_MAX + 64];
  snprintf(dir, sizeof dir, "%s/c", cache_dir);
  flagos_status_t st = fl_mkdirs(dir);
  bool cached = st == NULL;
  flagos_status_free(st);
  if (cached) {
    snprintf(path, sizeof path, "%s/%s.so", dir, key);
    void *data;
    size_t n;
    flagos_status_t rs = fl_read_file(path, &data, &n);
    if (!rs) {
      if (looks_like_elf(data, n)) {
        *so = data;
        *so_len = n;
        return NULL;
      }
      free(data); /* a damaged entry is compiled again and replaced */
    }
    flagos_status_free(rs); /* a missing entry is the ordinary miss */
    st = compile_into(&cc, flags, nflags, src, len, dir, key, path);
  } else {
    /* Unwritable cache: compile in a private temporary directory. */
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/flagos-cc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return FL_ERR(FLAGOS_ERR_IO, "cannot create a temporary directory: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/%s.so", dir, key);
    st = compile_into(&cc, flags, nflags, src, len, dir, key, path);
  }
  if (!st) {
    st = fl_read_file(path, so, so_len);
    if (!st && !looks_like_elf(*so, *so_len)) {
      free(*so);
      *so = NULL;
      *so_len = 0;
      st = FL_ERR(FLAGOS_ERR_BACKEND, "the C compiler produced '%s', which is not an ELF shared object", path);
    }
  }
  if (!cached) {
    unlink(path);
    rmdir(dir);
  }
  return st;
}
