/* mprun: run a command for every input, several at a time, on Linux and Windows alike.
 * See docs/mprun.md and `mprun --help`. The process's entry point is posix/entry.c or
 * win32/entry.c, which hand over the arguments in UTF-8. */
#include <stdio.h>

#include "mprun.h"

int mprun_main(int argc, char **argv) {
  /* No mp_process children here, so mp_init needs no argv: given ours, a user's argument
   * that looked like the library's child marker could divert mprun into child mode. */
  mp_init(NULL, NULL);
  options opt = {0};
  int rc = sys_signals_prepare(); /* before any thread exists */
  if (rc == 0)
    rc = cli_parse(&opt, argc, argv);
  if (rc == 1 || rc < 0)
    cli_free(&opt);
  if (rc == 1)
    return 0; /* --help or --version */
  if (rc != 0) {
    fprintf(stderr, "mprun: %s\nTry 'mprun --help' for more information.\n", mp_last_error());
    return MPRUN_EXIT_ERROR;
  }
  int status = sched_run(&opt);
  cli_free(&opt);
  return status;
}
