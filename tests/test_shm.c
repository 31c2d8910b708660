/* Shared memory and Value/Array (mp_shared): zero-filled, visible through an imported
 * copy and across fork, exact counts under the Value's own lock, bad arguments. */
#include <string.h>
#ifndef _WIN32
#  include <sys/wait.h>
#  include <unistd.h>
#endif

#include "testutil.h"
#include "xfer.h"
#include "platform.h"

static void *simulate_child(const mp__xfer_type *type, void *obj) {
  mp__xfer x;
  memset(&x, 0, sizeof x);
  assert_mp_ok(type->export_obj(obj, &x));
  for (size_t i = 0; i < x.nhandles; i++)
    assert_mp_ok(mp_plat_handle_dup(x.handles[i], &x.handles[i]));
  void *imported = NULL;
  assert_mp_ok(type->import_obj(&x, &imported));
  return imported;
}

static void shm_is_zeroed_and_shared_with_an_imported_copy(void **state) {
  (void)state;
  mp_shm *m;
  unsigned char *a;
  size_t size = 0;
  assert_mp_ok(mp_shm_create(&m, 100000));
  assert_mp_ok(mp_shm_map(m, (void **)&a, &size));
  assert_int_equal(size, 100000);
  for (size_t i = 0; i < size; i++)
    assert_int_equal(a[i], 0);
  mp_shm *child = simulate_child(&mp__shm_xfer, m);
  unsigned char *b;
  assert_mp_ok(mp_shm_map(child, (void **)&b, &size));
  assert_int_equal(size, 100000);
  assert_ptr_not_equal(a, b); /* a second mapping of the same memory */
  memcpy(b + 99990, "shared", 7);
  assert_string_equal((char *)a + 99990, "shared");
  mp__shm_xfer.release_imported(child);
  assert_string_equal((char *)a + 99990, "shared");
  mp_shm_free(m);
}

/* Where memfd_create is refused (vm.memfd_noexec=2 with an old flag set, sandboxes, old
 * kernels) shared memory comes from shm_open and is shared all the same. */
static void shm_works_where_memfd_is_refused(void **state) {
  mp_plat_shm_test_no_memfd(1);
  shm_is_zeroed_and_shared_with_an_imported_copy(state);
  mp_plat_shm_test_no_memfd(0);
}

static void shm_bad_arguments(void **state) {
  (void)state;
  mp_shm *m = NULL;
  assert_mp(MP_EINVAL, mp_shm_create(&m, 0));
  assert_mp(MP_EINVAL, mp_shm_create(NULL, 10));
  assert_mp(MP_EINVAL, mp_shm_map(NULL, NULL, NULL));
  assert_null(m);
  assert_mp_ok(mp_shm_create(&m, 1));
  mp__xfer x;
  memset(&x, 0, sizeof x);
  assert_mp_ok(mp__shm_xfer.export_obj(m, &x));
  assert_mp_ok(mp_plat_handle_dup(x.handles[0], &x.handles[0]));
  x.blob_len = 2; /* a size is 8 bytes */
  void *obj = NULL;
  assert_mp(MP_EPROTO, mp__shm_xfer.import_obj(&x, &obj));
  assert_null(obj);
  mp_shm_free(m);
  mp_shm_free(NULL);
}

#define THREADS 4
#define ADDS 10000

static void add_to_value(void *arg) {
  for (int i = 0; i < ADDS; i++)
    mp_shared_add_int(arg, 0, 1, NULL);
}

static void value_counts_exactly_under_its_lock(void **state) {
  (void)state;
  mp_shared *v;
  mp_thread *t[THREADS];
  assert_mp_ok(mp_shared_create(&v, MP_SHARED_INT64, 1));
  assert_int_equal(mp_shared_kind(v), MP_SHARED_INT64);
  assert_int_equal(mp_shared_len(v), 1);
  for (int i = 0; i < THREADS; i++)
    assert_mp_ok(mp_thread_create(&t[i], add_to_value, v, NULL));
  for (int i = 0; i < THREADS; i++) {
    assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
    mp_thread_free(t[i]);
  }
  int64_t got = 0;
  assert_mp_ok(mp_shared_get_int(v, 0, &got));
  assert_int_equal(got, THREADS * ADDS);
  assert_mp_ok(mp_shared_add_int(v, 0, -5, &got));
  assert_int_equal(got, THREADS * ADDS - 5);
  /* get_lock(): a compound update by hand. */
  assert_mp_ok(mp_plock_acquire(mp_shared_lock(v), MP_FOREVER));
  ((int64_t *)mp_shared_data(v))[0] *= 2;
  assert_mp_ok(mp_plock_release(mp_shared_lock(v)));
  assert_mp_ok(mp_shared_get_int(v, 0, &got));
  assert_int_equal(got, 2 * (THREADS * ADDS - 5));
  mp_shared_free(v);
}

static void array_of_doubles_and_an_imported_copy(void **state) {
  (void)state;
  mp_shared *a;
  assert_mp_ok(mp_shared_create(&a, MP_SHARED_DOUBLE, 10));
  for (size_t i = 0; i < 10; i++)
    assert_mp_ok(mp_shared_set_double(a, i, (double)i * 0.5));
  mp_shared *child = simulate_child(&mp__shared_xfer, a);
  assert_int_equal(mp_shared_len(child), 10);
  assert_int_equal(mp_shared_kind(child), MP_SHARED_DOUBLE);
  double d = 0, r = 0;
  assert_mp_ok(mp_shared_get_double(child, 9, &d));
  assert_true(d == 4.5);
  assert_mp_ok(mp_shared_add_double(child, 9, 1.25, &r));
  assert_true(r == 5.75);
  assert_mp_ok(mp_shared_get_double(a, 9, &d));
  assert_true(d == 5.75);
  /* The child's lock is the same lock. */
  assert_mp_ok(mp_plock_acquire(mp_shared_lock(child), 0));
  assert_mp(MP_EDEADLK, mp_plock_acquire(mp_shared_lock(a), 0));
  assert_mp_ok(mp_plock_release(mp_shared_lock(child)));
  mp__shared_xfer.release_imported(child);
  mp_shared_free(a);
}

static void shared_bad_arguments(void **state) {
  (void)state;
  mp_shared *s = NULL;
  int64_t i64;
  double d;
  assert_mp(MP_EINVAL, mp_shared_create(&s, MP_SHARED_INT64, 0));
  assert_mp(MP_EINVAL, mp_shared_create(&s, (mp_shared_type)9, 1));
  assert_mp(MP_EINVAL, mp_shared_create(NULL, MP_SHARED_INT64, 1));
  assert_null(s);
  assert_mp_ok(mp_shared_create(&s, MP_SHARED_INT64, 3));
  assert_mp(MP_EINVAL, mp_shared_get_int(s, 3, &i64));
  assert_non_null(strstr(mp_last_error(), "out of range"));
  assert_mp(MP_EINVAL, mp_shared_set_int(s, 99, 1));
  assert_mp(MP_EINVAL, mp_shared_get_double(s, 0, &d));
  assert_mp(MP_EINVAL, mp_shared_get_int(s, 0, NULL));
  assert_mp(MP_EINVAL, mp_shared_add_int(NULL, 0, 1, NULL));
  assert_mp_ok(mp_shared_set_int(s, 2, 7)); /* still usable */
  assert_mp_ok(mp_shared_get_int(s, 2, &i64));
  assert_int_equal(i64, 7);
  assert_mp_ok(mp_plock_acquire(mp_shared_lock(s), 0)); /* no lock left held by errors */
  assert_mp_ok(mp_plock_release(mp_shared_lock(s)));
  mp_shared_free(s);
  mp_shared_free(NULL);
}

#ifndef _WIN32
static void value_and_shm_are_shared_across_fork(void **state) {
  (void)state;
  mp_shared *v;
  mp_shm *m;
  char *text;
  assert_mp_ok(mp_shared_create(&v, MP_SHARED_INT64, 1));
  assert_mp_ok(mp_shm_create(&m, 64));
  assert_mp_ok(mp_shm_map(m, (void **)&text, NULL));
  pid_t pids[THREADS];
  for (int p = 0; p < THREADS; p++) {
    pids[p] = fork();
    assert_true(pids[p] >= 0);
    if (pids[p] == 0) {
      add_to_value(v);
      if (p == 0)
        strcpy(text, "written by a child");
      _exit(0);
    }
  }
  for (int p = 0; p < THREADS; p++) {
    int status = 0;
    assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  int64_t got = 0;
  assert_mp_ok(mp_shared_get_int(v, 0, &got));
  assert_int_equal(got, THREADS * ADDS);
  assert_string_equal(text, "written by a child");
  mp_shm_free(m);
  mp_shared_free(v);
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shm_is_zeroed_and_shared_with_an_imported_copy),
      cmocka_unit_test(shm_works_where_memfd_is_refused),
      cmocka_unit_test(shm_bad_arguments),
      cmocka_unit_test(value_counts_exactly_under_its_lock),
      cmocka_unit_test(array_of_doubles_and_an_imported_copy),
      cmocka_unit_test(shared_bad_arguments),
#ifndef _WIN32
      cmocka_unit_test(value_and_shm_are_shared_across_fork),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
