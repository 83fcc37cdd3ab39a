/* The unit tests' check: counts every check and reports each failure with its
 * file and line; a test's main() prints the counts and fails when any failed.
 * Included by one test file each (the counters are per test program). */
#ifndef FLAGOS_TESTS_CHECK_H
#define FLAGOS_TESTS_CHECK_H
#include <stdio.h>

static int checks, failures;
#define CHECK(cond, ...)                                                                                               \
  do {                                                                                                                 \
    checks++;                                                                                                          \
    if (!(cond)) {                                                                                                     \
      failures++;                                                                                                      \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                             \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
    }                                                                                                                  \
  } while (0)

/* A call returning flagos_status_t (the file includes flagos/flagos.h) that must succeed. */
#define CHECK_OK(expr)                                                                                                 \
  do {                                                                                                                 \
    flagos_status_t st_ = (expr);                                                                                      \
    CHECK(!st_, "%s: %s", #expr, st_ ? flagos_status_message(st_) : "");                                               \
    flagos_status_free(st_);                                                                                           \
  } while (0)

#endif
