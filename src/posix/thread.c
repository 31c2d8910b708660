/* POSIX backend: threads, their OS names, the CPU count, atomics. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../platform.h"

/* pthread_join has no timeout that is portable, so the thread signals its own end on a
 * condition variable (a timed join waits on it) and pthread_join only reaps. The record is
 * shared by the thread and its owner until both let go. */
struct mp_plat_thread {
  pthread_t tid;
  void (*fn)(void *);
  void *arg;
  mp_plat_mutex lock;
  mp_plat_cond ended_cond;
  int ended;
  int64_t refs;
};

static void thread_unref(mp_plat_thread *t) {
  if (mp_plat_atomic_add(&t->refs, -1) == 0) {
    mp_plat_cond_destroy(&t->ended_cond);
    mp_plat_mutex_destroy(&t->lock);
    free(t);
  }
}

static void *trampoline(void *p) {
  mp_plat_thread *t = p;
  t->fn(t->arg);
  mp_plat_mutex_lock(&t->lock);
  t->ended = 1;
  mp_plat_cond_broadcast(&t->ended_cond);
  mp_plat_mutex_unlock(&t->lock);
  thread_unref(t);
  return NULL;
}

int mp_plat_thread_start(mp_plat_thread **out, void (*fn)(void *), void *arg) {
  mp_plat_thread *t = calloc(1, sizeof *t);
  if (t == NULL)
    return mp_set_error(MP_ENOMEM, "mp_thread_create: out of memory");
  t->fn = fn;
  t->arg = arg;
  t->refs = 2;
  int rc = mp_plat_mutex_init(&t->lock);
  if (rc == 0 && (rc = mp_plat_cond_init(&t->ended_cond)) != 0)
    mp_plat_mutex_destroy(&t->lock);
  if (rc != 0) {
    free(t);
    return rc;
  }
  int err = pthread_create(&t->tid, NULL, trampoline, t);
  if (err != 0) {
    mp_plat_cond_destroy(&t->ended_cond);
    mp_plat_mutex_destroy(&t->lock);
    free(t);
    return mp__os_error_code(err == EAGAIN ? MP_ENOMEM : MP_EOS, err, "pthread_create");
  }
  *out = t;
  return 0;
}

int mp_plat_thread_wait(mp_plat_thread *t, int64_t deadline_ns) {
  int rc = 0;
  mp_plat_mutex_lock(&t->lock);
  while (!t->ended && rc == 0)
    rc = mp_plat_cond_wait(&t->ended_cond, &t->lock, deadline_ns);
  int ended = t->ended;
  mp_plat_mutex_unlock(&t->lock);
  return ended ? 0 : MP_ETIMEDOUT;
}

void mp_plat_thread_reap(mp_plat_thread *t) {
  /* The function has returned; what is left (TLS destructors) is short. */
  pthread_join(t->tid, NULL);
  thread_unref(t);
}

void mp_plat_thread_detach(mp_plat_thread *t) {
  pthread_detach(t->tid);
  thread_unref(t);
}

uint64_t mp_plat_thread_id(void) {
#ifdef __linux__
  return (uint64_t)syscall(SYS_gettid);
#else
  return (uint64_t)(uintptr_t)pthread_self();
#endif
}

int mp_plat_thread_is_main(void) {
#ifdef __linux__
  /* The main thread's tid is the pid; after fork() the forking thread becomes the child's
   * main thread, as in Python. */
  return (pid_t)syscall(SYS_gettid) == getpid();
#else
  return 0;
#endif
}

void mp_plat_thread_set_os_name(const char *name) {
#ifdef __linux__
  char buf[16]; /* the kernel keeps 15 bytes and the NUL */
  strncpy(buf, name, sizeof buf - 1);
  buf[sizeof buf - 1] = '\0';
  pthread_setname_np(pthread_self(), buf);
#else
  (void)name;
#endif
}

int mp_plat_thread_get_os_name(char *buf, size_t size) {
#ifdef __linux__
  int err = pthread_getname_np(pthread_self(), buf, size);
  return err == 0 ? 0 : mp__os_error_code(MP_EOS, err, "pthread_getname_np");
#else
  (void)buf;
  (void)size;
  return mp_set_error(MP_ENOTSUP, "thread names are not readable on this system");
#endif
}

int mp_plat_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (int)n;
}

int64_t mp_plat_atomic_add(int64_t *p, int64_t v) {
  return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}
