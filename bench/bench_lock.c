/* mp_lock beside Python's threading.Lock: nanoseconds per acquire+release, uncontended (one
 * thread) and contended (two threads hammering the same lock). The raw pthread mutex is
 * the floor any lock here sits on. A contended run checks that no update was lost. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchutil.h"

#define UNCONTENDED 10000000
#define CONTENDED 1000000 /* per thread */
#define PY_UNCONTENDED "1000000"
#define PY_CONTENDED "200000"

static mp_lock *lock;
static pthread_mutex_t raw = PTHREAD_MUTEX_INITIALIZER;

static double uncontended_mp(void *ctx) {
  (void)ctx;
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < UNCONTENDED; i++) {
    mp_lock_acquire(lock, MP_FOREVER);
    mp_lock_release(lock);
  }
  return (double)(mp_monotonic_ns() - start) / UNCONTENDED;
}

static double uncontended_raw(void *ctx) {
  (void)ctx;
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < UNCONTENDED; i++) {
    pthread_mutex_lock(&raw);
    pthread_mutex_unlock(&raw);
  }
  return (double)(mp_monotonic_ns() - start) / UNCONTENDED;
}

static volatile long shared_counter; /* touched inside the lock, as real code would */

static void hammer(void *arg) {
  (void)arg;
  for (int i = 0; i < CONTENDED; i++) {
    mp_lock_acquire(lock, MP_FOREVER);
    shared_counter = shared_counter + 1;
    mp_lock_release(lock);
  }
}

static double contended_mp(void *ctx) {
  (void)ctx;
  mp_thread *t[2] = {0};
  shared_counter = 0;
  uint64_t start = mp_monotonic_ns();
  if (mp_thread_create(&t[0], hammer, NULL, NULL) || mp_thread_create(&t[1], hammer, NULL, NULL))
    return bench_fail("mp_thread_create: %s", mp_last_error());
  for (int i = 0; i < 2; i++)
    if (mp_thread_join(t[i], bench_remaining_ms()) != 0)
      return bench_fail("a hammering thread did not finish in time");
  double ns = (double)(mp_monotonic_ns() - start) / (2.0 * CONTENDED);
  mp_thread_free(t[0]);
  mp_thread_free(t[1]);
  if (shared_counter != 2L * CONTENDED) /* a lock that loses updates has no speed */
    return bench_fail("lost updates: %ld of %ld", shared_counter, 2L * CONTENDED);
  return ns;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  bench_init("lock", argc, argv);
  if (mp_lock_create(&lock) != 0)
    return 2;
  bench_case *u = bench_case_new("lock", "acquire+release, uncontended", "ns", 0);
  bench_peer(u, "multiproc mp_lock", uncontended_mp, NULL);
  bench_peer(u, "raw pthread_mutex (floor)", uncontended_raw, NULL);
  bench_python_peer(u, "Python threading.Lock", "bench_lock.py", "uncontended " PY_UNCONTENDED);
  bench_case_run(u);
  bench_case *c = bench_case_new("lock", "acquire+release, 2 threads contending", "ns", 0);
  bench_peer(c, "multiproc mp_lock", contended_mp, NULL);
  bench_python_peer(c, "Python threading.Lock", "bench_lock.py", "contended " PY_CONTENDED);
  bench_case_run(c);
  /* A C lock call should cost well under an interpreted one; under contention it must at
   * least not lose to a GIL-serialised Python loop. */
  bench_target("lock_uncontended_vs_python", u, "multiproc mp_lock", "Python threading.Lock",
               "<=", 0.5);
  bench_target("lock_contended_vs_python", c, "multiproc mp_lock", "Python threading.Lock",
               "<=", 1.0);
  mp_lock_free(lock);
  return bench_finish();
}
