/* A replay's timeline on the device (FLAGOS_OPENCL_TIMELINE=1, with
 * FLAGOS_TRACE): each launch of a replay gets an event on the default queue,
 * which then records timestamps; after the replay the host waits for it and
 * prints where the device's time went: the launches' span, the time inside
 * kernels, the gaps between one kernel's end and the next one's start (the
 * device idle: waiting for the host to queue, or the platform's cost of a
 * launch), and the same by kernel (the 30 that take most, a generated
 * kernel's node number left out of its name). A diagnostic: the wait and the events cost
 * time, so the run's own figures are not those of a plain replay.
 *
 * Library calls made again at each replay (CLBlast) and command buffers are
 * not in it. A graph replayed by two threads at once shares one timeline:
 * trace one replay at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

bool ocl_timeline_wanted(void) {
  const char *v = getenv("FLAGOS_OPENCL_TIMELINE");
  return v && strcmp(v, "1") == 0 && getenv("FLAGOS_TRACE");
}

cl_event *ocl_timeline_slot(ocl_timeline_t *t, cl_kernel k) {
  if (t->n == t->cap) {
    int nc = t->cap ? 2 * t->cap : 256;
    cl_event *ev = realloc(t->ev, sizeof(*ev) * (size_t)nc);
    if (ev) t->ev = ev;
    cl_kernel *kk = ev ? realloc(t->k, sizeof(*kk) * (size_t)nc) : NULL;
    if (!kk) return NULL;
    t->k = kk;
    t->cap = nc;
  }
  t->k[t->n] = k;
  t->ev[t->n] = NULL;
  return &t->ev[t->n++];
}

typedef struct tl_name {
  char name[64];
  int n;
  double busy, gap;
} tl_name_t;

static int by_busy(const void *a, const void *b) {
  double x = ((const tl_name_t *)a)->busy + ((const tl_name_t *)a)->gap;
  double y = ((const tl_name_t *)b)->busy + ((const tl_name_t *)b)->gap;
  return (x < y) - (x > y);
}

void ocl_timeline_report(ocl_state_t *s, ocl_timeline_t *t) {
  int n = 0;
  while (n < t->n && t->ev[n]) n++; /* a failed launch ends what can be read */
  cl_ulong *t0 = n ? malloc(sizeof(*t0) * 2 * (size_t)n) : NULL;
  tl_name_t *names = n ? calloc((size_t)n, sizeof(*names)) : NULL;
  bool ok = t0 && names && s->cl.clWaitForEvents((cl_uint)n, t->ev) == CL_SUCCESS;
  for (int i = 0; ok && i < n; i++)
    ok = s->cl.clGetEventProfilingInfo(t->ev[i], CL_PROFILING_COMMAND_START, sizeof(cl_ulong), &t0[2 * i], NULL) ==
             CL_SUCCESS &&
         s->cl.clGetEventProfilingInfo(t->ev[i], CL_PROFILING_COMMAND_END, sizeof(cl_ulong), &t0[2 * i + 1], NULL) ==
             CL_SUCCESS;
  if (!n) {
    fprintf(stderr, "flagos trace: opencl timeline: no launch of the replay timed (command buffers are not: "
                    "FLAGOS_OPENCL_COMMAND_BUFFER=0 replays launch by launch)\n");
  } else if (!ok) {
    fprintf(stderr, "flagos trace: opencl timeline: no timestamps for %d launches (a queue without profiling?)\n", n);
  } else {
    double busy = 0, gaps = 0, worst = 0;
    int n_names = 0;
    for (int i = 0; i < n; i++) {
      double b = (double)(t0[2 * i + 1] - t0[2 * i]) / 1e3;
      double g = i && t0[2 * i] > t0[2 * i - 1] ? (double)(t0[2 * i] - t0[2 * i - 1]) / 1e3 : 0;
      busy += b;
      gaps += g;
      if (g > worst) worst = g;
      char nm[64] = "?";
      if (s->cl.clGetKernelInfo(t->k[i], CL_KERNEL_FUNCTION_NAME, sizeof nm, nm, NULL) != CL_SUCCESS)
        snprintf(nm, sizeof nm, "?");
      nm[sizeof nm - 1] = 0;
      /* a generated kernel's name starts with its node's (n12_Gemm_bias): grouped by what follows */
      const char *key = nm;
      if (key[0] == 'n' && key[1] >= '0' && key[1] <= '9') {
        const char *u = key + 1;
        while (*u >= '0' && *u <= '9') u++;
        if (*u == '_') key = u + 1;
      }
      int j = 0;
      while (j < n_names && strcmp(names[j].name, key) != 0) j++;
      if (j == n_names) snprintf(names[n_names++].name, sizeof names[0].name, "%s", key);
      names[j].n++;
      names[j].busy += b;
      names[j].gap += g;
    }
    double span = (double)(t0[2 * n - 1] - t0[0]) / 1e3;
    fprintf(stderr,
            "flagos trace: opencl timeline: %d launches over %.1f us on the device: %.1f us in kernels, %.1f us "
            "between them (%.2f us a gap, the longest %.1f)\n",
            n, span, busy, gaps, n > 1 ? gaps / (n - 1) : 0, worst);
    qsort(names, (size_t)n_names, sizeof(*names), by_busy);
    for (int j = 0; j < n_names && j < 30; j++)
      fprintf(stderr, "flagos trace: opencl timeline:   %-40s %4d launches, %8.1f us in them (%.2f each), %7.1f us of gaps before them\n",
              names[j].name, names[j].n, names[j].busy, names[j].busy / names[j].n, names[j].gap);
  }
  /* every event made, those after a failed launch too (a replay that failed left them) */
  for (int i = 0; i < t->n; i++)
    if (t->ev[i]) s->cl.clReleaseEvent(t->ev[i]);
  free(t0);
  free(names);
  t->n = 0;
}

void ocl_timeline_discard(ocl_state_t *s, ocl_timeline_t *t) {
  for (int i = 0; i < t->n; i++)
    if (t->ev[i]) s->cl.clReleaseEvent(t->ev[i]);
  t->n = 0;
}

void ocl_timeline_free(ocl_timeline_t *t) {
  free(t->ev);
  free(t->k);
  memset(t, 0, sizeof(*t));
}
