/* A worker of the distributed pool that is another build than the tests (another program):
 * it must refuse their tasks. argv: url, pool name, worker name. */
#include <stdio.h>

#include "multiproc.h"

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  if (argc != 4) {
    fprintf(stderr, "usage: redispool_other URL NAME WORKER\n");
    return 2;
  }
  mp_worker_opts o = {0};
  o.worker = argv[3];
  o.batch = 1;
  if (mp_worker_serve(argv[1], argv[2], &o) < 0) {
    fprintf(stderr, "redispool_other: %s\n", mp_last_error());
    return 1;
  }
  return 0;
}
