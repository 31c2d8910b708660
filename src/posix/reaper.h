/* The SIGCHLD-driven waiter (posix/reaper.c): where pidfds do not exist (portable POSIX,
 * kernels before 5.3, sandboxes that refuse pidfd_open), each watched child gets a pipe whose
 * read end becomes readable (end of file) once a reaper thread has reaped the child. */
#ifndef MP_POSIX_REAPER_H
#define MP_POSIX_REAPER_H

#include <sys/types.h>

/* Starts watching pid (a child of this process, not reaped): *fd is the pipe end to poll.
 * 0, or MP_EOS/MP_ENOMEM with the error set. */
int mp__reaper_watch(pid_t pid, int *fd);
/* 1 with *status (a waitpid status) once the reaper has reaped pid, 2 if someone else reaped
 * it (SIGCHLD ignored, a waitpid(-1) elsewhere), and then forgets pid; 0 while it runs; -1 if
 * pid is not watched. */
int mp__reaper_take(pid_t pid, int *status);
/* Sends sig to pid unless it has been reaped (atomically with the reaping): 0 or errno. */
int mp__reaper_kill(pid_t pid, int sig);

#endif /* MP_POSIX_REAPER_H */
