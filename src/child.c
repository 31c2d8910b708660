/* The one registry of children that nobody waits for any more, and the policy around a
 * child's end, for processes and subprocesses alike. The backend starts, waits and signals
 * (src/posix/child.c, src/win32/child.c); this file decides when. */
#include <stdlib.h>
#include <string.h>

#include "child.h"

typedef struct abandoned_child {
  mp_plat_child c;
  int at_exit;
} abandoned_child;

static abandoned_child *abandoned; /* guarded by mp_plat_global_lock */
static size_t n_abandoned, cap_abandoned;

int mp__child_spawn(const mp_plat_child_spec *spec, mp_plat_child *c) {
  mp__child_reap_abandoned(); /* like Python's _cleanup(): reap what free() left */
  return mp_plat_child_spawn(spec, c);
}

void mp__child_discard(mp_plat_child *c) {
  if (c->wait == MP_PLAT_INVALID && !c->reaped && c->pid == 0)
    return; /* never started */
  mp_plat_child_signal(c, MP_SIG_KILL, 0);
  mp_plat_child_wait(c, MP_FOREVER);
  mp_plat_child_release(c);
}

void mp__child_abandon(mp_plat_child *c, int at_exit) {
  if (c->wait != MP_PLAT_INVALID && !c->reaped)
    (void)mp_plat_child_wait(c, 0);
  /* Without zombies (Windows) only a child to join at exit needs its handle kept. */
  if (c->wait == MP_PLAT_INVALID || c->reaped ||
      (!(mp_plat_child_caps() & MP_CAP_ZOMBIES) && at_exit == MP__AT_EXIT_NOTHING)) {
    mp_plat_child_release(c);
    return;
  }
  mp_plat_global_lock();
  if (n_abandoned == cap_abandoned) {
    size_t cap = cap_abandoned ? cap_abandoned * 2 : 16;
    abandoned_child *na = realloc(abandoned, cap * sizeof *na);
    if (na != NULL)
      abandoned = na, cap_abandoned = cap;
  }
  int kept = n_abandoned < cap_abandoned;
  if (kept)
    abandoned[n_abandoned++] = (abandoned_child){*c, at_exit};
  mp_plat_global_unlock();
  if (!kept) /* out of memory: a zombie until exit is better than a blocked caller */
    mp_plat_child_release(c);
}

void mp__child_reap_abandoned(void) {
  mp_plat_global_lock();
  size_t w = 0;
  for (size_t r = 0; r < n_abandoned; r++) {
    if (mp_plat_child_wait(&abandoned[r].c, 0) == MP_ETIMEDOUT) {
      abandoned[w++] = abandoned[r]; /* still running: keep it */
      continue;
    }
    mp_plat_child_release(&abandoned[r].c);
  }
  n_abandoned = w;
  if (n_abandoned == 0) {
    free(abandoned);
    abandoned = NULL;
    cap_abandoned = 0;
  }
  mp_plat_global_unlock();
}

/* Takes one child to join out of the registry (the wait happens outside the lock). */
static int take_joinable(abandoned_child *out) {
  mp_plat_global_lock();
  size_t i = 0;
  while (i < n_abandoned && abandoned[i].at_exit == MP__AT_EXIT_NOTHING)
    i++;
  int found = i < n_abandoned;
  if (found)
    *out = abandoned[i], abandoned[i] = abandoned[--n_abandoned];
  mp_plat_global_unlock();
  return found;
}

void mp__child_shutdown(void) {
  abandoned_child a;
  while (take_joinable(&a)) {
    if (a.at_exit == MP__AT_EXIT_TERMINATE)
      mp_plat_child_signal(&a.c, MP_SIG_TERM, 0);
    mp_plat_child_wait(&a.c, MP_FOREVER);
    mp_plat_child_release(&a.c);
  }
  mp__child_reap_abandoned();
}

void mp__child_forget_all(void) {
  free(abandoned); /* their handles are gone with the fork child's close-on-exec sweep */
  abandoned = NULL;
  n_abandoned = cap_abandoned = 0;
}

size_t mp__child_abandoned_count(void) {
  mp_plat_global_lock();
  size_t n = n_abandoned;
  mp_plat_global_unlock();
  return n;
}
