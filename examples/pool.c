/* The seed's Pool program: four workers, five tasks, then close and join.
 *
 *   def long_time_task(name):
 *       print('Run task %s (%s)...' % (name, os.getpid()))
 *       start = time.time()
 *       time.sleep(random.random() * 3)
 *       end = time.time()
 *       print('Task %s runs %0.2f seconds.' % (name, (end - start)))
 *
 *   p = Pool(4)
 *   for i in range(5):
 *       p.apply_async(long_time_task, args=(i,))
 *   print('Waiting for all subprocesses done...')
 *   p.close()
 *   p.join()
 *   print('All subprocesses done.')
 *
 * The sleep is random() * 0.3 s instead of * 3 s so that the example runs quickly as a test;
 * the output has the same shape. */
#include <multiproc.h>
#include <stdio.h>


static int long_time_task(const mp_value *in, mp_value **out) {
  (void)out;
  int64_t name = 0;
  mp_value_get_int(in, &name);
  printf("Run task %lld (%lld)...\n", (long long)name, (long long)mp_getpid());
  fflush(stdout);
  unsigned char r[2];
  mp_random_bytes(r, sizeof r);
  double random = (r[0] << 8 | r[1]) / 65536.0; /* random.random() */
  uint64_t start = mp_monotonic_ns();
  mp_sleep_ms((int)(random * 300));
  uint64_t end = mp_monotonic_ns();
  printf("Task %lld runs %0.2f seconds.\n", (long long)name, (double)(end - start) / 1e9);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  printf("Parent process %lld.\n", (long long)mp_getpid());
  fflush(stdout);
  mp_pool *p;
  if (mp_pool_create(&p, 4, NULL) < 0) {
    fprintf(stderr, "Pool: %s\n", mp_last_error());
    return 1;
  }
  mp_result *results[5];
  for (int i = 0; i < 5; i++) {
    mp_value *arg = mp_value_int(i);
    if (mp_pool_apply_async(p, long_time_task, arg, &results[i]) < 0) {
      fprintf(stderr, "apply_async: %s\n", mp_last_error());
      return 1;
    }
    mp_value_free(arg);
  }
  printf("Waiting for all subprocesses done...\n");
  fflush(stdout);
  mp_pool_close(p);
  mp_pool_join(p, MP_FOREVER);
  int failed = 0;
  for (int i = 0; i < 5; i++) {
    if (mp_result_get(results[i], NULL, 0) < 0) {
      fprintf(stderr, "task %d: %s\n", i, mp_last_error());
      failed = 1;
    }
    mp_result_free(results[i]);
  }
  mp_pool_free(p);
  printf("All subprocesses done.\n");
  return failed;
}
