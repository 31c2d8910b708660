/* The seed's distributed worker (task_worker.py) with Redis in place of the manager:
 *
 *   for i in range(10):
 *       try:
 *           n = task.get(timeout=1)
 *           print('run task %d * %d...' % (n, n))
 *           r = '%d * %d = %d' % (n, n, n*n)
 *           time.sleep(1)
 *           result.put(r)
 *       except queue.Empty:
 *           print('task queue is empty.')
 *   print('worker exit.')
 *
 * Usage: task_worker_redis [url [name [delay_ms]]] (defaults redis://127.0.0.1:6379/0,
 * "seed", 1000). The task queue is joinable: a task is marked done only after its result
 * is put, so a worker killed mid-task leaves it to another worker (at-least-once). It stops
 * at the first empty get, and when the master has closed the task queue. */
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
  fprintf(stderr, "task_worker_redis: %s: %s\n", what, mp_last_error());
  return 1;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const char *url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
  const char *name = argc > 2 ? argv[2] : "seed";
  int delay_ms = argc > 3 ? atoi(argv[3]) : 1000;
  const char *at = strrchr(url, '@'); /* never print a password */
  printf("Connect to server %s...\n", at ? at + 1 : url + strlen("redis://"));
  char tasks[256], results[256];
  snprintf(tasks, sizeof tasks, "%s-tasks", name);
  snprintf(results, sizeof results, "%s-results", name);
  mp_redis_opts o = {0};
  o.joinable = 1;
  mp_queue *task, *result;
  if (mp_redis_queue_create(&task, url, tasks, &o) < 0)
    return fail("mp_redis_queue_create(tasks)");
  if (mp_redis_queue_create(&result, url, results, NULL) < 0)
    return fail("mp_redis_queue_create(results)");
  mp_event *pause;
  if (mp_event_create(&pause) < 0)
    return fail("mp_event_create");
  int rc = 0;
  for (int i = 0; i < 10; i++) {
    mp_value *v;
    int64_t n;
    int got = mp_queue_get_value(task, &v, 1000);
    if (got == MP_EEMPTY) {
      printf("task queue is empty.\n");
      break;
    }
    if (got == MP_EEOF) {
      printf("the master has closed the task queue.\n");
      break;
    }
    if (got < 0 || mp_value_get_int(v, &n) < 0) {
      rc = fail("task.get(timeout=1)");
      break;
    }
    mp_value_free(v);
    printf("run task %lld * %lld...\n", (long long)n, (long long)n);
    fflush(stdout);
    char r[96];
    snprintf(r, sizeof r, "%lld * %lld = %lld", (long long)n, (long long)n, (long long)(n * n));
    mp_event_wait(pause, delay_ms); /* time.sleep(1): the event is never set */
    mp_value *s = mp_value_str(r);
    if (mp_queue_put_value(result, s, MP_FOREVER) < 0 || mp_queue_task_done(task) < 0) {
      rc = fail("result.put");
      break;
    }
    mp_value_free(s);
  }
  mp_event_free(pause);
  mp_queue_free(task);
  mp_queue_free(result);
  printf("worker exit.\n");
  return rc;
}
