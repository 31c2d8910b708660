/* A SIGCHLD-driven waiter for children that have no pidfd. A SIGCHLD handler (chained to the
 * application's own) writes a byte to a self-pipe; one reaper thread sleeps in poll on it and
 * then tries waitpid(pid, WNOHANG) for each watched child only, so children that the
 * application started itself are never reaped behind its back. A reaped child's notification
 * pipe is closed on the writing side, which wakes whoever polls its read end. No busy waiting. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../platform.h"
#include "reaper.h"
#include "util.h"

typedef struct watched {
  pid_t pid;
  int notify_w; /* closed once reaped */
  int done, status, lost;
  struct watched *next;
} watched;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static watched *list;
static int wake_pipe[2] = {-1, -1};
static volatile sig_atomic_t wake_fd = -1; /* what the handler writes to */
static pid_t owner;                        /* the process whose thread runs */
static struct sigaction previous;
static int handler_installed;

static void on_sigchld(int sig, siginfo_t *info, void *uc) {
  int saved = errno;
  if (wake_fd >= 0)
    (void)!write(wake_fd, "c", 1);
  errno = saved;
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction)
      previous.sa_sigaction(sig, info, uc);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
  }
}

/* Reaps what has exited among the watched; called with mu held. */
static void reap_watched(void) {
  for (watched *w = list; w; w = w->next) {
    if (w->done)
      continue;
    int st = 0;
    pid_t r;
    while ((r = waitpid(w->pid, &st, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r == 0)
      continue;
    /* r < 0 (ECHILD): someone else reaped it (SIGCHLD ignored, waitpid(-1) elsewhere). */
    w->done = 1;
    w->lost = r != w->pid;
    w->status = r == w->pid ? st : 0;
    close(w->notify_w);
    w->notify_w = -1;
  }
}

static void *reaper_main(void *unused) {
  (void)unused;
  struct pollfd p = {wake_pipe[0], POLLIN, 0};
  for (;;) {
    if (poll(&p, 1, -1) < 0 && errno != EINTR)
      continue;
    char buf[64];
    while (read(wake_pipe[0], buf, sizeof buf) > 0) {
    }
    pthread_mutex_lock(&mu);
    reap_watched();
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

/* In a fork child the parent's children and thread are not ours: start afresh. */
static void atfork_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  mu = fresh;
  wake_fd = -1;
  for (int i = 0; i < 2; i++)
    if (wake_pipe[i] >= 0)
      close(wake_pipe[i]);
  wake_pipe[0] = wake_pipe[1] = -1;
  while (list) {
    watched *w = list;
    list = w->next;
    if (w->notify_w >= 0)
      close(w->notify_w);
    free(w);
  }
  owner = 0;
}
static void atfork_prepare(void) { pthread_mutex_lock(&mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&mu); }
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

/* Starts the pipe, handler and thread; called with mu held. */
static int start_locked(void) {
  if (owner == getpid())
    return 0;
  if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    return mp__os_error("pipe2(reaper)");
  wake_fd = wake_pipe[1];
  if (!handler_installed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigchld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, &previous) != 0)
      return mp__os_error("sigaction(SIGCHLD)");
    handler_installed = 1;
  }
  int rc = mp__service_thread(reaper_main, "pthread_create(reaper thread)");
  if (rc != 0)
    return rc;
  owner = getpid();
  return 0;
}

int mp__reaper_watch(pid_t pid, int *fd) {
  pthread_once(&atfork_once, install_atfork);
  watched *w = calloc(1, sizeof *w);
  if (w == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory watching a child");
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    free(w);
    return mp__os_error("pipe2(child exit notification)");
  }
  pthread_mutex_lock(&mu);
  int rc = start_locked();
  if (rc == 0) {
    w->pid = pid;
    w->notify_w = p[1];
    w->next = list;
    list = w;
    reap_watched(); /* it may have exited before it was watched: its SIGCHLD came and went */
  }
  pthread_mutex_unlock(&mu);
  if (rc != 0) {
    close(p[0]);
    close(p[1]);
    free(w);
    return rc;
  }
  *fd = p[0];
  return 0;
}

int mp__reaper_take(pid_t pid, int *status) {
  int found = -1;
  pthread_mutex_lock(&mu);
  for (watched **pw = &list; *pw; pw = &(*pw)->next) {
    watched *w = *pw;
    if (w->pid != pid)
      continue;
    if (!w->done)
      reap_watched(); /* a waiter that woke first need not wait for the thread */
    found = w->done + w->lost;
    if (w->done) {
      *status = w->status;
      *pw = w->next;
      free(w);
    }
    break;
  }
  pthread_mutex_unlock(&mu);
  return found;
}

int mp__reaper_kill(pid_t pid, int sig) {
  int e = ESRCH;
  pthread_mutex_lock(&mu);
  for (watched *w = list; w; w = w->next)
    if (w->pid == pid && !w->done)
      e = kill(pid, sig) == 0 ? 0 : errno;
  pthread_mutex_unlock(&mu);
  return e;
}
