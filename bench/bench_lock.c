/* mp_lock beside Python's threading.Lock: nanoseconds per acquire+release, uncontended
 * (one thread) and contended (two threads hammering the same lock), medians of 5 runs.
 * The raw pthread mutex is printed for reference: the floor any lock here sits on.
 * Then the process-shared mp_plock and mp_psem beside Python's multiprocessing.Lock and
 * Semaphore: uncontended in one process, and the lock contended by two forked processes
 * that count under it (the count is checked). */
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

/* ---- process-shared ---------------------------------------------------------------- */

#define P_UNCONTENDED 5000000
#define P_CONTENDED 500000 /* per process */

static mp_plock *plock;
static mp_psem *psem;

static double uncontended_plock(void) {
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < P_UNCONTENDED; i++) {
    mp_plock_acquire(plock, MP_FOREVER);
    mp_plock_release(plock);
  }
  return (double)(mp_monotonic_ns() - start) / P_UNCONTENDED;
}

static double uncontended_psem(void) {
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < P_UNCONTENDED; i++) {
    mp_psem_acquire(psem, MP_FOREVER);
    mp_psem_release(psem);
  }
  return (double)(mp_monotonic_ns() - start) / P_UNCONTENDED;
}

/* args: the lock and a shared int64 that it guards. */
static int count_under_plock(mp_args *a) {
  mp_plock *l = NULL;
  mp_shared *v = NULL;
  if (mp_args_get_plock(a, 0, &l) || mp_args_get_shared(a, 1, &v))
    return 1;
  volatile int64_t *n = mp_shared_data(v);
  for (int i = 0; i < P_CONTENDED; i++) {
    mp_plock_acquire(l, MP_FOREVER);
    *n = *n + 1;
    mp_plock_release(l);
  }
  return 0;
}

static double contended_plock(void) {
  mp_shared *v = NULL;
  mp_args *a = NULL;
  mp_process *p[2];
  mp_process_opts o = {NULL, 0, 0, MP_START_FORK, 0};
  if (mp_shared_create(&v, MP_SHARED_INT64, 1) || mp_args_create(&a) ||
      mp_args_add_plock(a, plock) || mp_args_add_shared(a, v))
    exit(1);
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < 2; i++)
    if (mp_process_create(&p[i], count_under_plock, a, &o) || mp_process_start(p[i]))
      exit(1);
  for (int i = 0; i < 2; i++)
    mp_process_join(p[i], MP_FOREVER);
  double ns = (double)(mp_monotonic_ns() - start) / (2.0 * P_CONTENDED);
  int64_t total = 0;
  mp_shared_get_int(v, 0, &total);
  if (total != 2 * P_CONTENDED)
    exit(2); /* a lock that loses updates has no speed worth printing */
  for (int i = 0; i < 2; i++)
    mp_process_free(p[i]);
  mp_args_free(a);
  mp_shared_free(v);
  return ns;
}

static double median_of(double (*fn)(void)) {
  double v[RUNS];
  for (int i = 0; i < RUNS; i++)
    v[i] = fn();
  return bench_median(v, RUNS);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  if (mp_lock_create(&lock) != 0 || mp_plock_create(&plock) != 0 ||
      mp_psem_create(&psem, 1, 1) != 0)
    return 1;
  double mp_u = median_of(uncontended_mp), raw_u = median_of(uncontended_raw);
  double mp_c = median_of(contended_mp);
  double pl_u = median_of(uncontended_plock), ps_u = median_of(uncontended_psem);
  double pl_c = median_of(contended_plock);
  char *py = bench_capture("python3 " MP_BENCH_DIR "/bench_lock.py");
  double py_u = py ? bench_field(py, "uncontended_ns") : -1;
  double py_c = py ? bench_field(py, "contended_ns") : -1;
  double py_pl_u = py ? bench_field(py, "mp_lock_uncontended_ns") : -1;
  double py_pl_c = py ? bench_field(py, "mp_lock_contended_ns") : -1;
  double py_ps_u = py ? bench_field(py, "mp_sem_uncontended_ns") : -1;
  printf("%-34s %12s %12s\n", "ns per acquire+release", "uncontended", "contended(2)");
  printf("%-34s %12.1f %12.1f\n", "multiproc mp_lock", mp_u, mp_c);
  printf("%-34s %12.1f %12s\n", "raw pthread_mutex (floor)", raw_u, "-");
  printf("%-34s %12.1f %12.1f\n", "Python threading.Lock", py_u, py_c);
  printf("%-34s %12.1f %12.1f\n", "multiproc mp_plock (2 processes)", pl_u, pl_c);
  printf("%-34s %12.1f %12.1f\n", "Python multiprocessing.Lock", py_pl_u, py_pl_c);
  printf("%-34s %12.1f %12s\n", "multiproc mp_psem", ps_u, "-");
  printf("%-34s %12.1f %12s\n", "Python multiprocessing.Semaphore", py_ps_u, "-");
  if (py_u <= 0 || py_c <= 0 || py_pl_u <= 0 || py_pl_c <= 0 || py_ps_u <= 0) {
    printf("Python peer did not run\n");
    free(py);
    return 1;
  }
  /* A C lock call should cost well under an interpreted one; under contention it must at
   * least not lose to a GIL-serialised Python loop. multiprocessing's Lock and Semaphore are
   * a sem_trywait behind one C method call, so the process-shared ones need only not lose. */
  bench_target("lock_uncontended_vs_python", mp_u / py_u, "<=", 0.5);
  bench_target("lock_contended_vs_python", mp_c / py_c, "<=", 1.0);
  bench_target("plock_uncontended_vs_python", pl_u / py_pl_u, "<=", 1.0);
  bench_target("plock_contended_vs_python", pl_c / py_pl_c, "<=", 1.0);
  bench_target("psem_uncontended_vs_python", ps_u / py_ps_u, "<=", 1.0);
  free(py);
  mp_lock_free(lock);
  mp_plock_free(plock);
  mp_psem_free(psem);
  return 0;
}
