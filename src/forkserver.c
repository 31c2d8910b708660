/* The fork server as its client sees it: started on first use, replaced when it died or
 * stopped answering, stopped by mp_shutdown; and the preload it runs once. What the server
 * does and the wire to it are the backend's (posix/forkserver.c); it is spawned by process.c's
 * bootstrap, as a spawned child is.
 *
 * Why a fresh run of this program rather than a fork of it taken early: a fork copies the
 * locks, heap and stdio of the moment, as the threads that existed then left them, and a
 * server is (re)started when it is first needed, by then under any number of threads (the
 * program's, and the library's forker and watcher threads). A new image has none of them,
 * whenever it starts: its state is main's up to mp_init, plus the preload's. */
#include <stdio.h>
#include <string.h>

#include "child.h"
#include "forkserver.h"
#include "proc.h"

static struct {
  int64_t owner;    /* the process this state belongs to: a fork child starts afresh */
  mp_plat_mutex mu; /* held while the server is started, asked, replaced or stopped */
  int running;
  mp_plat_child proc;
  mp_plat_handle ctl;
  mp_preload_fn preload;
} fs;

/* Locks this process's state. What a fork child inherits is its parent's: the handles are
 * closed in it, and the mutex may be held by a thread it does not have. */
static void lock_state(void) {
  int64_t me = mp_plat_getpid();
  mp_plat_global_lock();
  if (fs.owner != me) {
    mp_plat_mutex_init(&fs.mu);
    fs.owner = me;
    fs.running = 0;
    fs.ctl = MP_PLAT_INVALID;
    memset(&fs.proc, 0, sizeof fs.proc);
    fs.proc.wait = fs.proc.job = MP_PLAT_INVALID;
  }
  mp_plat_global_unlock();
  mp_plat_mutex_lock(&fs.mu);
}

static void unlock_state(void) { mp_plat_mutex_unlock(&fs.mu); }

/* The server goes: its control handle closes, it is killed and reaped. */
static void drop_locked(void) {
  if (!fs.running)
    return;
  mp_plat_handle_close(fs.ctl);
  fs.ctl = MP_PLAT_INVALID;
  mp__child_discard(&fs.proc);
  fs.running = 0;
}

/* Rewrites the thread's error as MP_ECHILD "<what>: <the error so far><tail>". */
static int restate(const char *what, const char *tail) {
  char was[512];
  snprintf(was, sizeof was, "%s", mp_last_error());
  return mp_set_error(MP_ECHILD, "%s: %s%s", what, was, tail);
}

static int start_locked(int timeout_ms) {
  if (mp__process_spawn_server(fs.preload, timeout_ms, &fs.proc, &fs.ctl) != 0)
    return restate("cannot start the fork server", "");
  fs.running = 1;
  return 0;
}

int mp__forkserver_launch(mp_plat_child *c, const mp_plat_child_spec *spec, int timeout_ms,
                          int *lost) {
  *lost = 0;
  lock_state();
  int rc = fs.running ? 0 : start_locked(timeout_ms);
  if (rc != 0) {
    unlock_state();
    return rc;
  }
  rc = mp_plat_forkserver_fork(fs.ctl, spec, timeout_ms, c);
  if (rc == MP_EBROKEN || rc == MP_ECHILD || rc == MP_ETIMEDOUT || rc == MP_EPROTO) {
    /* The server's state, not the request's: it goes, the next start starts a new one. */
    *lost = rc == MP_EBROKEN;
    drop_locked();
    rc = restate("the fork server", rc == MP_ETIMEDOUT
                                        ? "; it was stopped, the next start starts a new one"
                                        : "; the next start starts a new one");
  }
  unlock_state();
  return rc;
}

int mp__forkserver_start(int timeout_ms) {
  lock_state();
  int rc = fs.running ? 0 : start_locked(timeout_ms);
  unlock_state();
  return rc;
}

int mp__forkserver_explain(int rc) {
  if (rc != MP_ECHILD && rc != MP_EBROKEN && rc != MP_EEOF && rc != MP_EPROTO)
    return rc;
  lock_state();
  /* A child killed by its server's death is seen to die a moment before the server is
   * seen to (the kernel signals orphans first): a short wait, on this failure path only. */
  if (fs.running && mp_plat_child_wait(&fs.proc, 200) == 0) {
    drop_locked();
    rc = restate("the fork server died while the child started",
                 "; the next start starts a new one");
  }
  unlock_state();
  return rc;
}

void mp__forkserver_stop(void) {
  lock_state();
  drop_locked();
  unlock_state();
}

int mp_set_forkserver_preload(mp_preload_fn fn) {
  int rc = mp__start_method_check(MP_START_FORKSERVER, "mp_set_forkserver_preload");
  if (rc)
    return rc;
  lock_state();
  if (fs.running)
    rc = mp_set_error(MP_ESTATE, "mp_set_forkserver_preload: the fork server runs already; name "
                                 "the preload before the first forkserver start (or after "
                                 "mp_shutdown, which stops the server)");
  else
    fs.preload = fn;
  unlock_state();
  return rc;
}
