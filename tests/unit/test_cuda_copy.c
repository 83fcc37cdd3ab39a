/* The cuda plugin's host<->device copies (backends/cuda/cuda_staging.c): small
 * copies through one pinned buffer, copies of 4 MB and more split over the
 * device's copy threads, copies past the pinned buffers' 64 MB from pageable
 * memory, at odd sizes and offsets, on the default stream and on streams of
 * their own, from several host threads at once (the threads share the device's
 * pool). Each copy goes up, down, and is compared byte for byte with the host
 * data it came from (a pattern that differs at every byte of a chunk).
 *
 * With a GPU only (skipped here); without one it checks that the plugin
 * reports no device and refuses an allocation on a device that is not there. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "cuda_plugin_test.h"

static void fill(unsigned char *p, size_t n, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    p[i] = (unsigned char)(x >> 24);
  }
}

/* Up at `off` in a buffer of off + n bytes, down from there into a buffer at an
 * odd host offset; 0 when every byte came back. */
static int round_trip(const flagos_backend_t *api, void *state, flagos_bstream_t stream, size_t n, size_t off,
                      uint32_t seed) {
  unsigned char *src = malloc(n + 1), *want = malloc(n), *back = malloc(n + 3);
  flagos_devptr_t d = NULL;
  int bad = 1;
  flagos_status_t st = !src || !want || !back ? flagos_status_new(FLAGOS_ERR_OUT_OF_MEMORY, "test: out of memory")
                                              : api->mem_alloc(state, 0, n + off, &d);
  if (!st) {
    fill(src + 1, n, seed);
    memcpy(want, src + 1, n);
    memset(back, 0xa5, n + 3);
    st = api->copy_h2d(state, stream, d, off, src + 1, n);
    if (!st) st = api->copy_d2h(state, stream, back + 3, d, off, n);
    if (!st && stream) st = api->stream_sync(state, stream);
  }
  if (st) {
    CHECK(false, "%zu bytes at offset %zu: %s", n, off, msg(st));
  } else {
    size_t i = 0;
    while (i < n && back[3 + i] == want[i]) i++;
    CHECK(i == n, "%zu bytes at offset %zu%s: byte %zu came back %u, not %u", n, off, stream ? " (stream)" : "", i,
          i < n ? back[3 + i] : 0, i < n ? want[i] : 0);
    CHECK(back[0] == 0xa5 && back[1] == 0xa5 && back[2] == 0xa5, "%zu bytes: the copy wrote before its destination", n);
    bad = i != n;
  }
  flagos_status_free(st);
  if (d) api->mem_free(state, 0, d);
  free(src);
  free(want);
  free(back);
  return bad;
}

static const size_t sizes[] = {1, 3, 65536, 65537, ((size_t)4 << 20) - 1, (size_t)4 << 20, ((size_t)24 << 20) + 5,
                               ((size_t)64 << 20), ((size_t)64 << 20) + 1, (size_t)100 << 20};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

typedef struct job {
  const flagos_backend_t *api;
  void *state;
  int id, bad;
} job_t;

static void *worker(void *arg) {
  job_t *j = arg;
  flagos_bstream_t stream = NULL;
  flagos_status_t st = j->api->stream_create(j->state, 0, &stream);
  if (st) {
    flagos_status_free(st);
    j->bad = 1;
    return NULL;
  }
  for (int r = 0; r < 3; r++)
    for (size_t i = 4; i < N_SIZES - 1; i++) j->bad += round_trip(j->api, j->state, stream, sizes[i], 16 * (size_t)j->id, (uint32_t)(j->id * 100 + r));
  j->api->stream_destroy(j->state, stream);
  return NULL;
}

static void check_gpu(const flagos_backend_t *api, void *state) {
  for (size_t i = 0; i < N_SIZES; i++) round_trip(api, state, NULL, sizes[i], i * 8, (uint32_t)i);
  flagos_bstream_t stream = NULL;
  flagos_status_t st = api->stream_create(state, 0, &stream);
  CHECK(!st, "stream_create: %s", msg(st));
  flagos_status_free(st);
  if (stream) {
    for (size_t i = 0; i < N_SIZES; i++) round_trip(api, state, stream, sizes[i], 256, (uint32_t)(i + 50));
    api->stream_destroy(state, stream);
  }
  /* Four threads copying large buffers at once share the device's copy threads. */
  job_t jobs[4];
  pthread_t th[4];
  for (int t = 0; t < 4; t++) {
    jobs[t] = (job_t){api, state, t + 1, 0};
    CHECK(pthread_create(&th[t], NULL, worker, &jobs[t]) == 0, "pthread_create");
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    CHECK(jobs[t].bad == 0, "thread %d: %d round trips came back wrong", t + 1, jobs[t].bad);
  }
}

int main(void) {
  const flagos_backend_t *api = load_plugin();
  if (!api) {
    printf("test_cuda_copy: %d checks, %d failures\n", checks, failures);
    return 1;
  }
  /* four copying threads in all whatever the host's CPUs (the default is half
   * of them: none on a host of three or fewer), so the pool runs */
  setenv("FLAGOS_CUDA_COPY_THREADS", "4", 1);
  void *state = start(api);
  bool gpu = state && api->device_count(state) > 0;
  if (gpu) {
    check_gpu(api, state);
    api->shutdown(state);
    /* One thread in all (FLAGOS_CUDA_COPY_THREADS=1: no pool), read when a
     * device's pool starts, so in a state of its own. */
    setenv("FLAGOS_CUDA_COPY_THREADS", "1", 1);
    state = start(api);
    if (state) {
      for (size_t i = 4; i < N_SIZES; i++) round_trip(api, state, NULL, sizes[i], 24, (uint32_t)(i + 90));
      api->shutdown(state);
    }
    unsetenv("FLAGOS_CUDA_COPY_THREADS");
  } else {
    printf("test_cuda_copy: SKIP the GPU part: no CUDA device\n");
    if (state) {
      flagos_devptr_t d = NULL;
      flagos_status_t st = api->mem_alloc(state, 0, 64, &d);
      CHECK(st != NULL && d == NULL, "an allocation on device 0 of a machine without one is refused");
      flagos_status_free(st);
      api->shutdown(state);
    }
  }
  printf("test_cuda_copy: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
