/* Stop requests on Windows: a console control handler. Windows runs it on a new thread of
 * ours, so it may lock and signal like any other thread. Jobs are started in process groups
 * of their own (CREATE_NEW_PROCESS_GROUP), which ignore Ctrl-C: mprun alone receives it and
 * ends their trees through their job objects. */
#include <windows.h>

#include <stdlib.h>

#include "../sys.h"
#include "multiproc.h"

#define MPRUN_STATUS_CONTROL_C_EXIT 0xC000013AU

static sys_stop_fn stop_fn;
static void *stop_arg;

static BOOL WINAPI on_console_event(DWORD event) {
  int sig;
  switch (event) {
  case CTRL_C_EVENT:
  case CTRL_BREAK_EVENT: sig = SYS_SIGINT; break;
  case CTRL_CLOSE_EVENT: sig = SYS_SIGHUP; break;
  default: sig = SYS_SIGTERM; break; /* logoff, shutdown */
  }
  /* For close/logoff/shutdown Windows ends the process when the handler returns: the stop
   * function has ended every job's tree by then (TerminateJobObject is synchronous). */
  stop_fn(sig, stop_arg);
  return TRUE;
}

int sys_signals_prepare(void) { return 0; }

int sys_signals_watch(sys_stop_fn fn, void *arg) {
  stop_fn = fn;
  stop_arg = arg;
  if (!SetConsoleCtrlHandler(on_console_event, TRUE))
    return mp_set_error(MP_EOS, "SetConsoleCtrlHandler failed (error %lu)",
                        (unsigned long)GetLastError());
  return 0;
}

void sys_die_by_signal(int sig) {
  (void)sig;
  /* What a console program killed by Ctrl-C reports; exit() also runs the atexit handlers
   * that give the console its code page back. */
  exit((int)MPRUN_STATUS_CONTROL_C_EXIT);
}
