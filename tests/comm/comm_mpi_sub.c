/* Communicators over part of an mpirun job, made the NCCL way: one rank gets a
 * unique id and the program broadcasts it with MPI. Even and odd world ranks
 * form two communicators; FlagCX puts each on an MPI group communicator. A
 * group then runs calls on the world communicator and the sub-communicator
 * together. Run with mpirun -np 4. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "flagos/flagcx.h"

static int check(flagcx_result_t r, flagcx_comm_t c, const char *what, int rank) {
  if (r == FLAGCX_SUCCESS) return 0;
  fprintf(stderr, "rank %d: %s: %s: %s\n", rank, what, flagcx_get_error_string(r), flagcx_last_error(c));
  return 1;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int wr, ws, bad = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &wr);
  MPI_Comm_size(MPI_COMM_WORLD, &ws);
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, wr % 2, wr, &half);
  int hr, hs;
  MPI_Comm_rank(half, &hr);
  MPI_Comm_size(half, &hs);
  flagcx_unique_id_t id;
  memset(&id, 0, sizeof id);
  if (hr == 0) bad |= check(flagcx_get_unique_id(&id), NULL, "get_unique_id", wr);
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, half);
  flagcx_comm_t sub, world;
  bad |= check(flagcx_comm_init_rank(&sub, hs, id, hr, NULL), NULL, "init_rank (half)", wr);
  bad |= check(flagcx_comm_init_env(&world, NULL), NULL, "init_env (world)", wr);
  if (bad) MPI_Abort(MPI_COMM_WORLD, 1);
  if (hr == 0) printf("world rank %d: sub-communicator: %s\n", wr, flagcx_comm_describe(sub));
  if (!strstr(flagcx_comm_describe(sub), "transport mpi")) {
    fprintf(stderr, "rank %d: the sub-communicator should use MPI: %s\n", wr, flagcx_comm_describe(sub));
    bad = 1;
  }
  int64_t a[3] = {wr, 10 * wr, -wr}, b[3] = {0};
  int32_t c[2] = {wr, wr * wr}, d[2] = {0};
  flagcx_group_start();
  flagcx_all_reduce(a, b, 3, FLAGCX_INT64, FLAGCX_SUM, sub, NULL);
  flagcx_all_reduce(c, d, 2, FLAGCX_INT32, FLAGCX_MAX, world, NULL);
  bad |= check(flagcx_group_end(), NULL, "group of two communicators", wr);
  int64_t want = 0;
  for (int r = wr % 2; r < ws; r += 2) want += r;
  if (b[0] != want || b[1] != 10 * want || b[2] != -want) {
    fprintf(stderr, "rank %d: sub all_reduce gave %lld %lld %lld, expected %lld\n", wr, (long long)b[0],
            (long long)b[1], (long long)b[2], (long long)want);
    bad = 1;
  }
  if (d[0] != ws - 1 || d[1] != (ws - 1) * (ws - 1)) {
    fprintf(stderr, "rank %d: world all_reduce(max) gave %d %d\n", wr, d[0], d[1]);
    bad = 1;
  }
  bad |= check(flagcx_comm_finalize(sub), sub, "finalize", wr);
  flagcx_comm_destroy(sub);
  flagcx_comm_destroy(world);
  printf("world rank %d: %s\n", wr, bad ? "FAILED" : "passed");
  MPI_Comm_free(&half);
  MPI_Finalize();
  return bad;
}
