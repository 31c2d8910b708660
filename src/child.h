/* The core's side of the child engine (child.c): what happens to children after they start,
 * the same for processes and subprocesses. Not part of the public API. */
#ifndef MP_CHILD_H
#define MP_CHILD_H

#include "platform.h"

/* Starts a child as spec says, after reaping what earlier callers left behind. */
int mp__child_spawn(const mp_plat_child_spec *spec, mp_plat_child *c);

/* A child that exists but must not run on (its start failed half-way): kills it, reaps it
 * and releases it. */
void mp__child_discard(mp_plat_child *c);

/* What becomes of an abandoned child at mp_shutdown: nothing (a subprocess, as in Python),
 * joined (a process), or terminated and joined (a daemon process). */
enum { MP__AT_EXIT_NOTHING, MP__AT_EXIT_JOIN, MP__AT_EXIT_TERMINATE };

/* The caller is done with c: a child that has not been reaped is remembered, reaped by a later
 * mp__child_reap_abandoned or dealt with by mp__child_shutdown as at_exit says, so that it never
 * stays a zombie; c is released either way. */
void mp__child_abandon(mp_plat_child *c, int at_exit);

/* Reaps every remembered child that has exited, without blocking. */
void mp__child_reap_abandoned(void);

/* mp_shutdown: terminates and joins the remembered children as their at_exit says, and reaps
 * the others that have exited. */
void mp__child_shutdown(void);

/* In a fork child: the parent's abandoned children are not this process's to reap. */
void mp__child_forget_all(void);

/* How many abandoned children are still remembered (tests). */
size_t mp__child_abandoned_count(void);

#endif /* MP_CHILD_H */
