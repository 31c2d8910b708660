/* posix-only */
/* The seed's Process example under the forkserver start method (docs/forkserver.md): the
 * child is forked by a server that this program started at mp_init, after running the
 * preload there once. */
#include <multiproc.h>
#include <stdio.h>

static int run_proc(mp_args *args) {
  const char *name = NULL;
  mp_args_get_str(args, 0, &name, NULL);
  printf("Run child process %s (%lld)...\n", name, (long long)mp_getpid());
  return 0;
}

static int preload(void) { return 0; } /* optional: runs once, in the server */

int main(int argc, char **argv) {
  mp_set_forkserver_preload(preload);       /* before the server starts */
  mp_set_start_method(MP_START_FORKSERVER); /* or MULTIPROC_START_METHOD=forkserver */
  mp_init(&argc, &argv);                    /* chosen by now: the server starts here */
  printf("Parent process %lld.\n", (long long)mp_getpid());
  mp_args *args;
  mp_process *p;
  mp_args_create(&args);
  mp_args_add_str(args, "test");
  mp_process_create(&p, run_proc, args, NULL);
  mp_args_free(args);
  printf("Child process will start.\n");
  mp_process_start(p);
  mp_process_join(p, MP_FOREVER);
  printf("Child process end.\n");
  mp_process_free(p);
}
