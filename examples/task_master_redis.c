/* The seed's distributed master (task_master.py) with Redis in place of the manager: the
 * task and result queues live in a Redis server that the master and every worker reach by
 * URL, so workers may run on any machine, start before or after the master, and a task a
 * worker took and did not finish goes to another worker if that one dies.
 *
 *   for i in range(10):
 *       n = random.randint(0, 10000); print('Put task %d...' % n); task.put(n)
 *   print('Try get results...')
 *   for i in range(10):
 *       r = result.get(timeout=10); print('Result: %s' % r)
 *   print('master exit.')
 *
 * Usage: task_master_redis [url [name]] (defaults redis://127.0.0.1:6379/0 and "seed"): the
 * queues are NAME-tasks (joinable) and NAME-results. The master starts both afresh, and
 * closes the task queue at the end, which tells the workers to stop. */
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int fail(const char *what) {
  fprintf(stderr, "task_master_redis: %s: %s\n", what, mp_last_error());
  return 1;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const char *url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
  const char *name = argc > 2 ? argv[2] : "seed";
  char tasks[256], results[256];
  snprintf(tasks, sizeof tasks, "%s-tasks", name);
  snprintf(results, sizeof results, "%s-results", name);
  if (mp_redis_queue_delete(url, tasks, 5000) < 0 || mp_redis_queue_delete(url, results, 5000) < 0)
    return fail("mp_redis_queue_delete");
  mp_redis_opts o = {0};
  o.joinable = 1;
  mp_queue *task, *result;
  if (mp_redis_queue_create(&task, url, tasks, &o) < 0)
    return fail("mp_redis_queue_create(tasks)");
  if (mp_redis_queue_create(&result, url, results, NULL) < 0)
    return fail("mp_redis_queue_create(results)");
  srand((unsigned)time(NULL) ^ (unsigned)mp_getpid());
  for (int i = 0; i < 10; i++) {
    int n = rand() % 10001;
    printf("Put task %d...\n", n);
    mp_value *v = mp_value_int(n);
    if (mp_queue_put_value(task, v, MP_FOREVER) < 0)
      return fail("put");
    mp_value_free(v);
  }
  printf("Try get results...\n");
  fflush(stdout);
  int rc = 0;
  for (int i = 0; i < 10; i++) {
    mp_value *r;
    const char *s;
    if (mp_queue_get_value(result, &r, 10000) < 0) {
      rc = fail("result.get(timeout=10)");
      break;
    }
    if (mp_value_get_str(r, &s, NULL) == 0)
      printf("Result: %s\n", s);
    fflush(stdout);
    mp_value_free(r);
  }
  if (mp_queue_close(task) < 0) /* the workers' gets end with MP_EEOF */
    rc = fail("close");
  mp_queue_free(task);
  mp_queue_free(result);
  printf("master exit.\n");
  return rc;
}
