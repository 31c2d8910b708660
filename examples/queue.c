/* The seed's Queue program: one process writes 'A', 'B', 'C' to a queue, another reads
 * them; the parent joins the writer and terminates the reader, whose loop never ends.
 *
 *   def write(q):
 *       print('Process to write: %s' % os.getpid())
 *       for value in ['A', 'B', 'C']:
 *           print('Put %s to queue...' % value)
 *           q.put(value)
 *           time.sleep(random.random())
 *
 *   def read(q):
 *       print('Process to read: %s' % os.getpid())
 *       while True:
 *           value = q.get(True)
 *           print('Get %s from queue.' % value)
 *
 *   q = Queue()
 *   pw = Process(target=write, args=(q,)); pr = Process(target=read, args=(q,))
 *   pw.start(); pr.start(); pw.join(); pr.terminate()
 *
 * One change: the queue is a JoinableQueue and the parent waits (q.join()) until the reader
 * has printed every value before terminating it; the seed races there, and a reader
 * terminated too early loses its last line. Children flush stdout because a terminated
 * process never flushes its buffers. */
#include <stdio.h>

#include "multiproc.h"

static int write_proc(mp_args *args) {
  mp_queue *q = NULL;
  if (mp_args_get_queue(args, 0, &q) != 0)
    return 1;
  printf("Process to write: %lld\n", (long long)mp_getpid());
  fflush(stdout);
  for (const char *value = "ABC"; *value; value++) {
    printf("Put %c to queue...\n", *value);
    fflush(stdout);
    if (mp_queue_put(q, value, 1, MP_FOREVER) != 0)
      return 1;
    unsigned char r = 0;
    mp_random_bytes(&r, 1);
    mp_sleep_ms((int)(r * 1000u / 256u)); /* time.sleep(random.random()) */
  }
  return 0;
}

static int read_proc(mp_args *args) {
  mp_queue *q = NULL;
  if (mp_args_get_queue(args, 0, &q) != 0)
    return 1;
  printf("Process to read: %lld\n", (long long)mp_getpid());
  fflush(stdout);
  for (;;) {
    void *value = NULL;
    size_t len = 0;
    if (mp_queue_get(q, &value, &len, MP_FOREVER) != 0)
      return 1;
    printf("Get %.*s from queue.\n", (int)len, (const char *)value);
    fflush(stdout);
    mp_free(value);
    mp_queue_task_done(q);
  }
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  mp_queue *q = NULL;
  mp_args *args = NULL;
  mp_process *pw = NULL, *pr = NULL;
  int rc = mp_joinable_queue_create(&q, 0);
  if (rc == 0)
    rc = mp_args_create(&args);
  if (rc == 0)
    rc = mp_args_add_queue(args, q);
  if (rc == 0)
    rc = mp_process_create(&pw, write_proc, args, NULL);
  if (rc == 0)
    rc = mp_process_create(&pr, read_proc, args, NULL);
  if (rc == 0)
    rc = mp_process_start(pw);
  if (rc == 0)
    rc = mp_process_start(pr);
  if (rc == 0)
    rc = mp_process_join(pw, MP_FOREVER);
  if (rc == 0)
    rc = mp_queue_join(q, MP_FOREVER);
  if (rc == 0)
    rc = mp_process_terminate(pr);
  if (rc == 0)
    rc = mp_process_join(pr, MP_FOREVER);
  if (rc != 0)
    fprintf(stderr, "error: %s\n", mp_last_error());
  mp_process_free(pw);
  mp_process_free(pr);
  mp_args_free(args);
  mp_queue_free(q);
  return rc == 0 ? 0 : 1;
}
