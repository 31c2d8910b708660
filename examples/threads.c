/* The seed's first threading program: a thread named LoopThread counts to 5, one second
 * per step, while the main thread waits for it.
 *
 *   t = threading.Thread(target=loop, name='LoopThread'); t.start(); t.join()
 */
#include <stdio.h>

#include "multiproc.h"

static void sleep_seconds(int s) { mp_sleep_ms(s * 1000); }

static void loop(void *arg) {
  (void)arg;
  printf("thread %s is running...\n", mp_thread_current_name());
  int n = 0;
  while (n < 5) {
    n = n + 1;
    printf("thread %s >>> %d\n", mp_thread_current_name(), n);
    fflush(stdout);
    sleep_seconds(1);
  }
  printf("thread %s ended.\n", mp_thread_current_name());
}

int main(void) {
  printf("thread %s is running...\n", mp_thread_current_name());
  mp_thread *t;
  int rc = mp_thread_create(&t, loop, NULL, "LoopThread");
  if (rc != 0) {
    fprintf(stderr, "mp_thread_create: %s\n", mp_last_error());
    return 1;
  }
  mp_thread_join(t, MP_FOREVER);
  mp_thread_free(t);
  printf("thread %s ended.\n", mp_thread_current_name());
  return 0;
}
