/* The seed's Process program:
 *
 *   from multiprocessing import Process
 *   import os
 *
 *   def run_proc(name):
 *       print('Run child process %s (%s)...' % (name, os.getpid()))
 *
 *   if __name__=='__main__':
 *       print('Parent process %s.' % os.getpid())
 *       p = Process(target=run_proc, args=('test',))
 *       print('Child process will start.')
 *       p.start()
 *       p.join()
 *       print('Child process end.')
 *
 * The same program in C runs on Linux (fork by default; MULTIPROC_START_METHOD=spawn
 * re-executes it) and on Windows (spawn). mp_init must be the first line of main: in a
 * spawned child it runs run_proc and exits, so the rest of main runs only in the parent. */
#include <multiproc.h>
#include <stdio.h>

static int run_proc(mp_args *args) {
  const char *name = NULL;
  mp_args_get_str(args, 0, &name, NULL);
  printf("Run child process %s (%lld)...\n", name, (long long)mp_getpid());
  return 0;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  printf("Parent process %lld.\n", (long long)mp_getpid());
  mp_args *args = NULL;
  mp_process *p = NULL;
  int rc = mp_args_create(&args);
  if (rc == 0)
    rc = mp_args_add_str(args, "test");
  if (rc == 0)
    rc = mp_process_create(&p, run_proc, args, NULL);
  mp_args_free(args);
  if (rc != 0) {
    fprintf(stderr, "error: %s\n", mp_last_error());
    return 1;
  }
  printf("Child process will start.\n");
  if ((rc = mp_process_start(p)) != 0 || (rc = mp_process_join(p, MP_FOREVER)) != 0) {
    fprintf(stderr, "error: %s\n", mp_last_error());
    mp_process_free(p);
    return 1;
  }
  printf("Child process end.\n");
  mp_process_free(p);
  return 0;
}
