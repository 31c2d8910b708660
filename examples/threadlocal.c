/* The seed's ThreadLocal program: a global local_school whose "student" attribute is
 * different in every thread, read by a function that takes no arguments.
 *
 *   local_school = threading.local()
 *   local_school.student = name
 */
#include <stdio.h>

#include "multiproc.h"

static mp_tls *local_school_student; /* local_school.student */

static void process_student(void) {
  const char *std = mp_tls_get(local_school_student); /* this thread's student */
  printf("Hello, %s (in %s)\n", std, mp_thread_current_name());
}

static void process_thread(void *name) {
  mp_tls_set(local_school_student, name); /* bind this thread's student */
  process_student();
}

int main(void) {
  mp_thread *t1, *t2;
  if (mp_tls_create(&local_school_student, NULL) != 0) {
    fprintf(stderr, "threadlocal: %s\n", mp_last_error());
    return 1;
  }
  /* Started one after the other so that the output keeps the seed's order. */
  if (mp_thread_create(&t1, process_thread, "Alice", "Thread-A") != 0)
    return 1;
  mp_thread_join(t1, MP_FOREVER);
  if (mp_thread_create(&t2, process_thread, "Bob", "Thread-B") != 0)
    return 1;
  mp_thread_join(t2, MP_FOREVER);
  mp_thread_free(t1);
  mp_thread_free(t2);
  mp_tls_free(local_school_student);
  return 0;
}
