/* mp_lock beside Python's threading.Lock: nanoseconds per acquire+release, uncontended (one
 * thread) and contended (two threads hammering the same lock). The raw pthread mutex is
 * the floor any lock here sits on. Then the process-shared mp_plock and mp_psem beside
 * Python's multiprocessing.Lock and Semaphore: uncontended in one process, and the lock
 * contended by two forked processes that count under it. Contended runs check that no
 * update was lost. */
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

/* ---- process-shared ---------------------------------------------------------------- */

#define P_UNCONTENDED 5000000
#define P_CONTENDED 500000 /* per process */
#define PY_P_UNCONTENDED "1000000"
#define PY_P_CONTENDED "100000"

static mp_plock *plock;
static mp_psem *psem;

static double uncontended_plock(void *ctx) {
  (void)ctx;
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < P_UNCONTENDED; i++) {
    mp_plock_acquire(plock, MP_FOREVER);
    mp_plock_release(plock);
  }
  return (double)(mp_monotonic_ns() - start) / P_UNCONTENDED;
}

static double uncontended_psem(void *ctx) {
  (void)ctx;
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

static double contended_plock(void *ctx) {
  (void)ctx;
  mp_shared *v = NULL;
  mp_args *a = NULL;
  mp_process *p[2] = {0};
  mp_process_opts o = {NULL, 0, 0, MP_START_FORK, 0};
  if (mp_shared_create(&v, MP_SHARED_INT64, 1) || mp_args_create(&a) ||
      mp_args_add_plock(a, plock) || mp_args_add_shared(a, v))
    return bench_fail("setting up the shared counter: %s", mp_last_error());
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < 2; i++)
    if (mp_process_create(&p[i], count_under_plock, a, &o) || mp_process_start(p[i]))
      return bench_fail("starting a counting process: %s", mp_last_error());
  for (int i = 0; i < 2; i++)
    if (mp_process_join(p[i], bench_remaining_ms()) != 0)
      return bench_fail("a counting process did not finish in time");
  double ns = (double)(mp_monotonic_ns() - start) / (2.0 * P_CONTENDED);
  int64_t total = 0;
  mp_shared_get_int(v, 0, &total);
  for (int i = 0; i < 2; i++)
    mp_process_free(p[i]);
  mp_args_free(a);
  mp_shared_free(v);
  if (total != 2 * P_CONTENDED) /* a lock that loses updates has no speed */
    return bench_fail("lost updates: %lld of %d", (long long)total, 2 * P_CONTENDED);
  return ns;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  bench_init("lock", argc, argv);
  if (mp_lock_create(&lock) != 0 || mp_plock_create(&plock) != 0 ||
      mp_psem_create(&psem, 1, 1) != 0)
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
  bench_case *pu = bench_case_new("lock", "process-shared acquire+release, uncontended", "ns", 0);
  bench_peer(pu, "multiproc mp_plock", uncontended_plock, NULL);
  bench_python_peer(pu, "Python multiprocessing.Lock", "bench_lock.py",
                    "mp_lock_uncontended " PY_P_UNCONTENDED);
  bench_peer(pu, "multiproc mp_psem", uncontended_psem, NULL);
  bench_python_peer(pu, "Python multiprocessing.Semaphore", "bench_lock.py",
                    "mp_sem_uncontended " PY_P_UNCONTENDED);
  bench_case_run(pu);
  bench_case *pc = bench_case_new("lock", "process-shared lock, 2 processes contending", "ns", 0);
  bench_peer(pc, "multiproc mp_plock", contended_plock, NULL);
  bench_python_peer(pc, "Python multiprocessing.Lock", "bench_lock.py",
                    "mp_lock_contended " PY_P_CONTENDED);
  bench_case_run(pc);
  /* multiprocessing's Lock and Semaphore are a sem_trywait behind one C method call, so the
   * process-shared ones need only not lose. */
  bench_target("plock_uncontended_vs_python", pu, "multiproc mp_plock",
               "Python multiprocessing.Lock", "<=", 1.0);
  bench_target("plock_contended_vs_python", pc, "multiproc mp_plock",
               "Python multiprocessing.Lock", "<=", 1.0);
  bench_target("psem_uncontended_vs_python", pu, "multiproc mp_psem",
               "Python multiprocessing.Semaphore", "<=", 1.0);
  mp_lock_free(lock);
  mp_plock_free(plock);
  mp_psem_free(psem);
  return bench_finish();
}
