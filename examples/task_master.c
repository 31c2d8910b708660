/* The seed's distributed master (task_master.py):
 *
 *   task_queue = queue.Queue(); result_queue = queue.Queue()
 *   class QueueManager(BaseManager): pass
 *   QueueManager.register('get_task_queue', callable=lambda: task_queue)
 *   QueueManager.register('get_result_queue', callable=lambda: result_queue)
 *   manager = QueueManager(address=('', 5000), authkey=b'abc')
 *   manager.start()
 *   task = manager.get_task_queue(); result = manager.get_result_queue()
 *   for i in range(10):
 *       n = random.randint(0, 10000); print('Put task %d...' % n); task.put(n)
 *   print('Try get results...')
 *   for i in range(10):
 *       r = result.get(timeout=10); print('Result: %s' % r)
 *   manager.shutdown(); print('master exit.')
 *
 * Usage: task_master [host:port [authkey]] (defaults 127.0.0.1:5000 and abc). Use
 * 0.0.0.0:5000 to accept workers from other machines. The master puts its tasks through
 * the manager's own queue (mp_manager_local_queue), never around it. Python workers
 * (task_worker.py) and C workers (task_worker) both work with it. */
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int fail(const char *what) {
  fprintf(stderr, "task_master: %s: %s\n", what, mp_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *address = argc > 1 ? argv[1] : "127.0.0.1:5000";
  const char *authkey = argc > 2 ? argv[2] : "abc";
  mp_manager *manager;
  mp_queue *task, *result;
  if (mp_manager_create(&manager, address, authkey, NULL) < 0)
    return fail("mp_manager_create");
  if (mp_manager_register_queue(manager, "get_task_queue", 0) < 0 ||
      mp_manager_register_queue(manager, "get_result_queue", 0) < 0)
    return fail("mp_manager_register_queue");
  if (mp_manager_start(manager) < 0)
    return fail("mp_manager_start");
  printf("Manager serving on %s\n", mp_manager_address(manager));
  fflush(stdout);
  if (mp_manager_local_queue(manager, "get_task_queue", &task) < 0 ||
      mp_manager_local_queue(manager, "get_result_queue", &result) < 0)
    return fail("mp_manager_local_queue");
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
  mp_queue_free(task);
  mp_queue_free(result);
  mp_manager_shutdown(manager);
  mp_manager_free(manager);
  printf("master exit.\n");
  return rc;
}
