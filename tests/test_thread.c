/* Threads: names (as threading.current_thread().name), timed join without polling,
 * detach, ids, the CPU count, bad arguments. */
#include <stdio.h>
#include <string.h>
#ifdef _WIN32
#  include <windows.h>
#else
#  include <pthread.h>
#endif

#include "testutil.h"
#include "platform.h"

static void record_name(void *arg) {
  snprintf(arg, MP_THREAD_NAME_MAX + 1, "%s", mp_thread_current_name());
}

static void main_thread_is_named_mainthread(void **state) {
  (void)state;
  assert_string_equal(mp_thread_current_name(), "MainThread");
}

static void a_named_thread_sees_its_name(void **state) {
  (void)state;
  char seen[MP_THREAD_NAME_MAX + 1] = "";
  mp_thread *t;
  assert_mp_ok(mp_thread_create(&t, record_name, seen, "LoopThread"));
  assert_string_equal(mp_thread_name(t), "LoopThread");
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_string_equal(seen, "LoopThread");
}

static void default_names_count_up(void **state) {
  (void)state;
  char a[MP_THREAD_NAME_MAX + 1] = "", b[MP_THREAD_NAME_MAX + 1] = "";
  mp_thread *ta, *tb;
  assert_mp_ok(mp_thread_create(&ta, record_name, a, NULL));
  assert_mp_ok(mp_thread_create(&tb, record_name, b, NULL));
  assert_mp_ok(mp_thread_join(ta, MP_FOREVER));
  assert_mp_ok(mp_thread_join(tb, MP_FOREVER));
  long na = -1, nb = -1;
  assert_int_equal(sscanf(a, "Thread-%ld", &na), 1);
  assert_int_equal(sscanf(b, "Thread-%ld", &nb), 1);
  assert_true(na >= 1);
  assert_int_equal(nb, na + 1);
  assert_string_equal(mp_thread_name(ta), a);
  mp_thread_free(ta);
  mp_thread_free(tb);
}

struct os_name {
  int rc;
  char name[64];
};

static void read_os_name(void *arg) {
  struct os_name *o = arg;
  o->rc = mp_plat_thread_get_os_name(o->name, sizeof o->name);
}

static void the_os_sees_the_name(void **state) {
  (void)state;
  struct os_name o = {-100, ""};
  mp_thread *t;
  assert_mp_ok(mp_thread_create(&t, read_os_name, &o, "Worker-7"));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_mp_ok(o.rc);
  assert_string_equal(o.name, "Worker-7");
}

/* A thread the library did not start: threading calls these "Dummy-N". */
#ifdef _WIN32
static DWORD WINAPI foreign_main(void *arg) {
  record_name(arg);
  return 0;
}
static void run_foreign(char *out) {
  HANDLE h = CreateThread(NULL, 0, foreign_main, out, 0, NULL);
  assert_non_null(h);
  WaitForSingleObject(h, INFINITE);
  CloseHandle(h);
}
#else
static void *foreign_main(void *arg) {
  record_name(arg);
  return NULL;
}
static void run_foreign(char *out) {
  pthread_t tid;
  assert_int_equal(pthread_create(&tid, NULL, foreign_main, out), 0);
  pthread_join(tid, NULL);
}
#endif

static void foreign_threads_are_dummies(void **state) {
  (void)state;
  char name[MP_THREAD_NAME_MAX + 1] = "";
  run_foreign(name);
  assert_memory_equal(name, "Dummy-", 6);
}

static void wait_for_event(void *arg) { mp_event_wait(arg, MP_FOREVER); }

static void timed_join_times_out_then_joins(void **state) {
  (void)state;
  mp_event *go;
  mp_thread *t;
  assert_mp_ok(mp_event_create(&go));
  assert_mp_ok(mp_thread_create(&t, wait_for_event, go, "sleeper"));
  assert_int_equal(mp_thread_is_alive(t), 1);
  assert_mp(MP_ETIMEDOUT, mp_thread_join(t, 0));
  uint64_t start = mp_monotonic_ns();
  assert_mp(MP_ETIMEDOUT, mp_thread_join(t, 60));
  uint64_t waited = mp_monotonic_ns() - start;
  assert_true(waited >= 60000000u);
  assert_true(waited < 5000000000u);
  assert_non_null(strstr(mp_last_error(), "sleeper"));
  assert_mp_ok(mp_event_set(go));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  assert_mp_ok(mp_thread_join(t, 0)); /* joining again is harmless, as in Python */
  assert_int_equal(mp_thread_is_alive(t), 0);
  mp_thread_free(t);
  mp_event_free(go);
}

struct self_join {
  mp_thread *t;
  mp_event *ready;
  int rc;
};

static void join_myself(void *arg) {
  struct self_join *s = arg;
  mp_event_wait(s->ready, MP_FOREVER);
  s->rc = mp_thread_join(s->t, 0);
}

static void a_thread_cannot_join_itself(void **state) {
  (void)state;
  struct self_join s = {NULL, NULL, 0};
  assert_mp_ok(mp_event_create(&s.ready));
  assert_mp_ok(mp_thread_create(&s.t, join_myself, &s, NULL));
  assert_mp_ok(mp_event_set(s.ready));
  /* The thread's own join fails at once, even while this join waits for it. */
  assert_mp_ok(mp_thread_join(s.t, MP_FOREVER));
  assert_int_equal(s.rc, MP_EDEADLK);
  mp_thread_free(s.t);
  mp_event_free(s.ready);
}

struct joiner {
  mp_thread *target;
  int rc;
};

static void join_other(void *arg) {
  struct joiner *j = arg;
  j->rc = mp_thread_join(j->target, MP_FOREVER);
}

/* Two joins at once both see the end; is_alive answers while a join waits. */
static void concurrent_joins_and_is_alive(void **state) {
  (void)state;
  mp_event *go;
  mp_thread *sleeper, *other;
  assert_mp_ok(mp_event_create(&go));
  assert_mp_ok(mp_thread_create(&sleeper, wait_for_event, go, NULL));
  struct joiner j = {sleeper, 1};
  assert_mp_ok(mp_thread_create(&other, join_other, &j, NULL));
  assert_int_equal(mp_thread_is_alive(sleeper), 1);
  assert_mp(MP_ETIMEDOUT, mp_thread_join(sleeper, 20));
  assert_mp_ok(mp_event_set(go));
  assert_mp_ok(mp_thread_join(sleeper, MP_FOREVER));
  assert_mp_ok(mp_thread_join(other, MP_FOREVER));
  assert_int_equal(j.rc, 0);
  assert_int_equal(mp_thread_is_alive(sleeper), 0);
  assert_mp_ok(mp_thread_join(sleeper, 0));
  mp_thread_free(other);
  mp_thread_free(sleeper);
  mp_event_free(go);
}

static void signal_done(void *arg) { mp_event_set(arg); }

static void a_detached_thread_runs_to_the_end(void **state) {
  (void)state;
  mp_event *done;
  mp_thread *t;
  assert_mp_ok(mp_event_create(&done));
  assert_mp_ok(mp_thread_create(&t, signal_done, done, NULL));
  assert_mp_ok(mp_thread_detach(t));
  assert_mp_ok(mp_event_wait(done, 10000));
  mp_event_free(done);
}

static void store_id(void *arg) { *(uint64_t *)arg = mp_thread_id(); }

static void thread_ids_differ(void **state) {
  (void)state;
  uint64_t other = 0;
  mp_thread *t;
  assert_mp_ok(mp_thread_create(&t, store_id, &other, NULL));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_true(other != 0);
  assert_true(mp_thread_id() != 0);
  assert_true(other != mp_thread_id());
  assert_true(mp_thread_id() == mp_thread_id());
}

static void cpu_count_is_positive(void **state) {
  (void)state;
  int n = mp_cpu_count();
  assert_true(n >= 1);
  assert_true(n <= 65536);
}

static void nothing(void *arg) { (void)arg; }

static void bad_arguments_are_rejected(void **state) {
  (void)state;
  mp_thread *t = NULL;
  char long_name[MP_THREAD_NAME_MAX + 2];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  assert_mp(MP_EINVAL, mp_thread_create(NULL, nothing, NULL, NULL));
  assert_mp(MP_EINVAL, mp_thread_create(&t, NULL, NULL, NULL));
  assert_mp(MP_EINVAL, mp_thread_create(&t, nothing, NULL, long_name));
  assert_non_null(strstr(mp_last_error(), "name"));
  assert_null(t);
  assert_mp(MP_EINVAL, mp_thread_join(NULL, 0));
  assert_mp(MP_EINVAL, mp_thread_detach(NULL));
  assert_mp(MP_EINVAL, mp_thread_is_alive(NULL));
  mp_thread_free(NULL);
  assert_mp_ok(mp_thread_create(&t, nothing, NULL, NULL));
  assert_mp(MP_EINVAL, mp_thread_join(t, -2));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(main_thread_is_named_mainthread),
      cmocka_unit_test(a_named_thread_sees_its_name),
      cmocka_unit_test(default_names_count_up),
      cmocka_unit_test(the_os_sees_the_name),
      cmocka_unit_test(foreign_threads_are_dummies),
      cmocka_unit_test(timed_join_times_out_then_joins),
      cmocka_unit_test(a_thread_cannot_join_itself),
      cmocka_unit_test(concurrent_joins_and_is_alive),
      cmocka_unit_test(a_detached_thread_runs_to_the_end),
      cmocka_unit_test(thread_ids_differ),
      cmocka_unit_test(cpu_count_is_positive),
      cmocka_unit_test(bad_arguments_are_rejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
