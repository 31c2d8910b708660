/* The seed's distributed worker (task_worker.py):
 *
 *   QueueManager.register('get_task_queue'); QueueManager.register('get_result_queue')
 *   m = QueueManager(address=(server_addr, 5000), authkey=b'abc'); m.connect()
 *   task = m.get_task_queue(); result = m.get_result_queue()
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
 * Usage: task_worker [host:port [authkey [delay_ms]]] (defaults 127.0.0.1:5000, abc, 1000).
 * It serves a C master (task_master) or the seed's unmodified Python master alike. Unlike
 * the seed it stops at the first empty get, so that several workers finish promptly, and
 * when the master shuts down while it waits for a task. */
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what) {
  fprintf(stderr, "task_worker: %s: %s\n", what, mp_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *address = argc > 1 ? argv[1] : "127.0.0.1:5000";
  const char *authkey = argc > 2 ? argv[2] : "abc";
  int delay_ms = argc > 3 ? atoi(argv[3]) : 1000;
  printf("Connect to server %s...\n", address);
  mp_manager_client *m;
  mp_queue *task, *result;
  if (mp_manager_connect(&m, address, authkey) < 0)
    return fail("connect");
  int rc = mp_manager_queue(m, "get_task_queue", &task);
  if (rc == 0 && (rc = mp_manager_queue(m, "get_result_queue", &result)) < 0)
    mp_queue_free(task);
  if (rc == MP_EEOF || rc == MP_EBROKEN) { /* it was there a moment ago: it finished */
    printf("the master has shut down.\nworker exit.\n");
    mp_manager_disconnect(m);
    return 0;
  }
  if (rc < 0)
    return fail("get_task_queue/get_result_queue");
  mp_event *pause;
  if (mp_event_create(&pause) < 0)
    return fail("mp_event_create");
  for (int i = 0; i < 10; i++) {
    mp_value *v;
    int64_t n;
    int got = mp_queue_get_value(task, &v, 1000);
    if (got == MP_EEMPTY) {
      printf("task queue is empty.\n");
      break;
    }
    if (got == MP_EEOF || got == MP_EBROKEN) { /* the master took its results and left */
      printf("the master has shut down.\n");
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
    if (mp_queue_put_value(result, s, MP_FOREVER) < 0) {
      rc = fail("result.put");
      break;
    }
    mp_value_free(s);
  }
  mp_event_free(pause);
  mp_queue_free(task);
  mp_queue_free(result);
  mp_manager_disconnect(m);
  printf("worker exit.\n");
  return rc;
}
