/* The seed's os.fork() program. On POSIX it calls fork() itself, exactly as the Python
 * program calls os.fork(); the portable equivalent below it (the one that also runs on
 * Windows, which has no fork) starts the child with mp_process.
 *
 *   import os
 *   print('Process (%s) start...' % os.getpid())
 *   pid = os.fork()
 *   if pid == 0:
 *       print('I am child process (%s) and my parent is %s.' % (os.getpid(), os.getppid()))
 *   else:
 *       print('I (%s) just created a child process (%s).' % (os.getpid(), pid))
 */
#include <multiproc.h>
#include <stdio.h>

#ifndef _WIN32
#  include <sys/wait.h>
#  include <unistd.h>
#endif

static int child(mp_args *args) {
  (void)args;
  printf("I am child process (%lld) and my parent is %lld.\n", (long long)mp_getpid(),
         (long long)mp_getppid());
  return 0;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  printf("Process (%lld) start...\n", (long long)mp_getpid());
  fflush(stdout);
#ifndef _WIN32
  pid_t pid = fork(); /* returns twice: 0 in the child, the child's pid in the parent */
  if (pid == 0) {
    child(NULL);
    return 0;
  }
  printf("I (%lld) just created a child process (%lld).\n", (long long)mp_getpid(), (long long)pid);
  fflush(stdout);
  waitpid(pid, NULL, 0);
#else
  mp_process *p = NULL;
  int rc = mp_process_create(&p, child, NULL, NULL);
  if (rc == 0)
    rc = mp_process_start(p);
  if (rc != 0) {
    fprintf(stderr, "cannot start the child: %s\n", mp_last_error());
    return 1;
  }
  printf("I (%lld) just created a child process (%lld).\n", (long long)mp_getpid(),
         (long long)mp_process_pid(p));
  fflush(stdout);
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);
#endif
  return 0;
}
