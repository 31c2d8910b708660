/* Stop requests on POSIX: SIGINT, SIGTERM and SIGHUP are blocked in every thread and taken
 * by one sigwait thread, which may lock and signal like any other thread (a handler could
 * not). posix_spawn in multiproc clears the mask and resets dispositions, so jobs get the
 * default behaviour. SIGPIPE is ignored: a closed stdout shows up as EPIPE from write. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "../sys.h"
#include "multiproc.h"

static sigset_t stop_set(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

int sys_signals_prepare(void) {
  sigset_t set = stop_set();
  int e = pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (e != 0)
    return mp_set_error(MP_EOS, "pthread_sigmask: %s", strerror(e));
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

typedef struct watcher {
  sys_stop_fn fn;
  void *arg;
} watcher;

static watcher the_watcher;

static void *watch_main(void *unused) {
  (void)unused;
  sigset_t set = stop_set();
  for (;;) {
    int sig;
    if (sigwait(&set, &sig) == 0)
      the_watcher.fn(sig, the_watcher.arg);
  }
  return NULL;
}

int sys_signals_watch(sys_stop_fn fn, void *arg) {
  pthread_t t;
  the_watcher.fn = fn;
  the_watcher.arg = arg;
  int e = pthread_create(&t, NULL, watch_main, NULL);
  if (e != 0)
    return mp_set_error(MP_EOS, "pthread_create (signal watcher): %s", strerror(e));
  pthread_detach(t);
  return 0;
}

void sys_die_by_signal(int sig) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  signal(sig, SIG_DFL);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  /* Aimed at this thread, so the watcher's sigwait cannot take it instead. */
  pthread_kill(pthread_self(), sig);
  /* Only reached if the signal did not end us (it was ignored by our parent's setup). */
  _exit(128 + sig);
}
