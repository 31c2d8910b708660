/* mp_lock beside Python's threading.Lock: nanoseconds per acquire+release, uncontended
 * (one thread) and contended (two threads hammering the same lock), medians of 5 runs.
 * The raw pthread mutex is printed for reference: the floor any lock here sits on. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchutil.h"
#include "multiproc.h"

#define UNCONTENDED 10000000
#define CONTENDED 1000000 /* per thread */
#define RUNS 5

static mp_lock *lock;
static pthread_mutex_t raw = PTHREAD_MUTEX_INITIALIZER;

static double uncontended_mp(void) {
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < UNCONTENDED; i++) {
    mp_lock_acquire(lock, MP_FOREVER);
    mp_lock_release(lock);
  }
  return (double)(mp_monotonic_ns() - start) / UNCONTENDED;
}

static double uncontended_raw(void) {
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

static double contended_mp(void) {
  mp_thread *a, *b;
  shared_counter = 0;
  uint64_t start = mp_monotonic_ns();
  if (mp_thread_create(&a, hammer, NULL, NULL) != 0 || mp_thread_create(&b, hammer, NULL, NULL))
    exit(1);
  mp_thread_join(a, MP_FOREVER);
  mp_thread_join(b, MP_FOREVER);
  double ns = (double)(mp_monotonic_ns() - start) / (2.0 * CONTENDED);
  mp_thread_free(a);
  mp_thread_free(b);
  if (shared_counter != 2L * CONTENDED)
    exit(2); /* a lock that loses updates has no speed worth printing */
  return ns;
}

static double median_of(double (*fn)(void)) {
  double v[RUNS];
  for (int i = 0; i < RUNS; i++)
    v[i] = fn();
  return bench_median(v, RUNS);
}

int main(void) {
  if (mp_lock_create(&lock) != 0)
    return 1;
  double mp_u = median_of(uncontended_mp), raw_u = median_of(uncontended_raw);
  double mp_c = median_of(contended_mp);
  char *py = bench_capture("python3 " MP_BENCH_DIR "/bench_lock.py");
  double py_u = py ? bench_field(py, "uncontended_ns") : -1;
  double py_c = py ? bench_field(py, "contended_ns") : -1;
  printf("%-34s %12s %12s\n", "ns per acquire+release", "uncontended", "contended(2)");
  printf("%-34s %12.1f %12.1f\n", "multiproc mp_lock", mp_u, mp_c);
  printf("%-34s %12.1f %12s\n", "raw pthread_mutex (floor)", raw_u, "-");
  printf("%-34s %12.1f %12.1f\n", "Python threading.Lock", py_u, py_c);
  if (py_u <= 0 || py_c <= 0) {
    printf("Python peer did not run\n");
    free(py);
    return 1;
  }
  /* A C lock call should cost well under an interpreted one; under contention it must at
   * least not lose to a GIL-serialised Python loop. */
  bench_target("lock_uncontended_vs_python", mp_u / py_u, "<=", 0.5);
  bench_target("lock_contended_vs_python", mp_c / py_c, "<=", 1.0);
  free(py);
  mp_lock_free(lock);
  return 0;
}
