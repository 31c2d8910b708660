/* The seed's bank balance: two threads deposit and withdraw the same amount 1,000,000
 * times each. With the lock around change_it the balance ends at 0, always.
 *
 *   lock.acquire()
 *   try: change_it(n)
 *   finally: lock.release()
 */
#include <stdio.h>

#include "multiproc.h"

static long balance = 0; /* your bank account */
static mp_lock *lock;

static void change_it(long n) {
  /* deposit, then withdraw: the result should be 0 */
  balance = balance + n;
  balance = balance - n;
}

static void run_thread(void *arg) {
  long n = (long)(intptr_t)arg;
  for (int i = 0; i < 1000000; i++) {
    mp_lock_acquire(lock, MP_FOREVER); /* take the lock first */
    change_it(n);                      /* now change it safely */
    mp_lock_release(lock);             /* and always give it back */
  }
}

int main(void) {
  mp_thread *t1, *t2;
  if (mp_lock_create(&lock) != 0 || mp_thread_create(&t1, run_thread, (void *)5, NULL) != 0 ||
      mp_thread_create(&t2, run_thread, (void *)8, NULL) != 0) {
    fprintf(stderr, "lock: %s\n", mp_last_error());
    return 1;
  }
  mp_thread_join(t1, MP_FOREVER);
  mp_thread_join(t2, MP_FOREVER);
  mp_thread_free(t1);
  mp_thread_free(t2);
  mp_lock_free(lock);
  printf("%ld\n", balance);
  return balance == 0 ? 0 : 1;
}
