/* Thread-local slots: each thread sees its own value; destructors run exactly once per
 * thread that set a value, also for threads the library did not start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#  include <windows.h>
#else
#  include <pthread.h>
#endif

#include "testutil.h"
#include "platform.h"

#define THREADS 4

static int64_t destroyed;      /* how many times the destructor ran */
static int64_t destroyed_mask; /* which values it saw: bit i for value i */

static void count_dtor(void *value) {
  int id = *(int *)value;
  mp_plat_atomic_add(&destroyed, 1);
  mp_plat_atomic_add(&destroyed_mask, (int64_t)1 << id);
  free(value);
}

struct job {
  mp_tls *slot;
  mp_barrier *all_set;
  int id;
  int seen; /* what the thread read back after every thread had set its value */
  int was_null;
};

static void set_then_read(void *arg) {
  struct job *j = arg;
  j->was_null = mp_tls_get(j->slot) == NULL;
  int *mine = malloc(sizeof *mine);
  *mine = j->id;
  mp_tls_set(j->slot, mine);
  mp_barrier_wait(j->all_set, MP_FOREVER); /* every thread has written its value now */
  j->seen = *(int *)mp_tls_get(j->slot);
}

static void values_are_per_thread_and_destroyed_once_each(void **state) {
  (void)state;
  mp_tls *slot;
  mp_barrier *all_set;
  struct job jobs[THREADS];
  mp_thread *t[THREADS];
  destroyed = destroyed_mask = 0;
  assert_mp_ok(mp_tls_create(&slot, count_dtor));
  assert_mp_ok(mp_barrier_create(&all_set, THREADS));
  int main_value = 42;
  assert_mp_ok(mp_tls_set(slot, &main_value));
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (struct job){slot, all_set, i, -1, 0};
    assert_mp_ok(mp_thread_create(&t[i], set_then_read, &jobs[i], NULL));
  }
  for (int i = 0; i < THREADS; i++) {
    assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
    mp_thread_free(t[i]);
    assert_int_equal(jobs[i].seen, i);
    assert_true(jobs[i].was_null);
  }
  /* A joined thread has run its exit destructors. */
  assert_int_equal(destroyed, THREADS);
  assert_int_equal(destroyed_mask, (1 << THREADS) - 1);
  assert_ptr_equal(mp_tls_get(slot), &main_value);
  assert_mp_ok(mp_tls_set(slot, NULL)); /* main's value is not heap memory */
  mp_barrier_free(all_set);
  mp_tls_free(slot);
}

static void leave_unset(void *arg) { (void)arg; }

static void set_to_null(void *arg) {
  int *v = malloc(sizeof *v);
  *v = 0;
  mp_tls_set(arg, v);
  mp_tls_set(arg, NULL); /* overwritten: the program took the value back */
  free(v);
}

static void no_destructor_without_a_value(void **state) {
  (void)state;
  mp_tls *slot;
  mp_thread *a, *b;
  destroyed = destroyed_mask = 0;
  assert_mp_ok(mp_tls_create(&slot, count_dtor));
  assert_mp_ok(mp_thread_create(&a, leave_unset, slot, NULL));
  assert_mp_ok(mp_thread_create(&b, set_to_null, slot, NULL));
  assert_mp_ok(mp_thread_join(a, MP_FOREVER));
  assert_mp_ok(mp_thread_join(b, MP_FOREVER));
  mp_thread_free(a);
  mp_thread_free(b);
  assert_int_equal(destroyed, 0);
  mp_tls_free(slot);
}

static mp_tls *foreign_slot;

#ifdef _WIN32
static DWORD WINAPI foreign_main(void *arg) {
  mp_tls_set(foreign_slot, arg);
  return 0;
}
static void run_foreign(void *value) {
  HANDLE h = CreateThread(NULL, 0, foreign_main, value, 0, NULL);
  assert_non_null(h);
  WaitForSingleObject(h, INFINITE);
  CloseHandle(h);
}
#else
static void *foreign_main(void *arg) {
  mp_tls_set(foreign_slot, arg);
  return NULL;
}
static void run_foreign(void *value) {
  pthread_t tid;
  assert_int_equal(pthread_create(&tid, NULL, foreign_main, value), 0);
  pthread_join(tid, NULL);
}
#endif

static void destructors_run_for_foreign_threads_too(void **state) {
  (void)state;
  destroyed = destroyed_mask = 0;
  assert_mp_ok(mp_tls_create(&foreign_slot, count_dtor));
  int *v = malloc(sizeof *v);
  *v = 5;
  run_foreign(v);
  assert_int_equal(destroyed, 1);
  assert_int_equal(destroyed_mask, 1 << 5);
  mp_tls_free(foreign_slot);
}

/* The seed's ThreadLocal program: local_school.student in two named threads. */
static mp_tls *student;

static void process_student(char *out) {
  snprintf(out, 64, "Hello, %s (in %s)", (const char *)mp_tls_get(student),
           mp_thread_current_name());
}

struct school {
  const char *name;
  char line[64];
};

static void process_thread(void *arg) {
  struct school *s = arg;
  mp_tls_set(student, (void *)s->name);
  process_student(s->line);
}

static void the_local_school_pattern(void **state) {
  (void)state;
  struct school a = {"Alice", ""}, b = {"Bob", ""};
  mp_thread *ta, *tb;
  assert_mp_ok(mp_tls_create(&student, NULL));
  assert_mp_ok(mp_thread_create(&ta, process_thread, &a, "Thread-A"));
  assert_mp_ok(mp_thread_create(&tb, process_thread, &b, "Thread-B"));
  assert_mp_ok(mp_thread_join(ta, MP_FOREVER));
  assert_mp_ok(mp_thread_join(tb, MP_FOREVER));
  mp_thread_free(ta);
  mp_thread_free(tb);
  assert_string_equal(a.line, "Hello, Alice (in Thread-A)");
  assert_string_equal(b.line, "Hello, Bob (in Thread-B)");
  assert_null(mp_tls_get(student));
  mp_tls_free(student);
}

static void bad_arguments_are_rejected(void **state) {
  (void)state;
  assert_mp(MP_EINVAL, mp_tls_create(NULL, NULL));
  assert_mp(MP_EINVAL, mp_tls_set(NULL, NULL));
  assert_null(mp_tls_get(NULL));
  mp_tls_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(values_are_per_thread_and_destroyed_once_each),
      cmocka_unit_test(no_destructor_without_a_value),
      cmocka_unit_test(destructors_run_for_foreign_threads_too),
      cmocka_unit_test(the_local_school_pattern),
      cmocka_unit_test(bad_arguments_are_rejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
