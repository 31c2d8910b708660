/* POSIX backend for processes: fork and spawn from one long-lived internal thread, pidfds
 * for waiting and signalling, PR_SET_PDEATHSIG so that children die with this process.
 *
 * Why a forker thread: Linux delivers the parent-death signal when the *thread* that forked
 * exits, not the process. A child started from a short-lived thread would die with that
 * thread. Forking from a thread that lives as long as the process makes the death signal
 * mean what users expect. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../platform.h"

extern char **environ;

/* ---- the forker thread ----------------------------------------------------------------- */

typedef struct fork_req {
  int (*run)(struct fork_req *r); /* executed on the forker thread */
  int die_with_parent;
  sigset_t mask; /* the requesting thread's signal mask, restored in the child */
  int (*child_fn)(void *);
  void *ctx;
  mp_plat_spawn_req *spawn;
  pid_t pid;
  int err; /* errno of a failure */
  int done;
  struct fork_req *next;
} fork_req;

static pthread_mutex_t fk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fk_cv = PTHREAD_COND_INITIALIZER;
static fork_req *fk_queue;
static int fk_started;
static pid_t fk_owner; /* the process that started the forker; a fork child has none */

static void *forker_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&fk_mu);
  for (;;) {
    while (fk_queue == NULL)
      pthread_cond_wait(&fk_cv, &fk_mu);
    fork_req *r = fk_queue;
    fk_queue = r->next;
    pthread_mutex_unlock(&fk_mu);
    r->run(r);
    pthread_mutex_lock(&fk_mu);
    r->done = 1;
    pthread_cond_broadcast(&fk_cv);
  }
  return NULL;
}

/* Runs r on the forker thread, starting it on first use, and waits for the result. */
static int forker_call(fork_req *r) {
  pthread_sigmask(SIG_SETMASK, NULL, &r->mask);
  pthread_mutex_lock(&fk_mu);
  if (!fk_started || fk_owner != getpid()) {
    pthread_t t;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The forker takes no signals: they belong to the application's threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t, &attr, forker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      pthread_mutex_unlock(&fk_mu);
      return mp__os_error_code(MP_EOS, rc, "pthread_create(forker thread)");
    }
    fk_started = 1;
    fk_owner = getpid();
  }
  r->next = fk_queue;
  fk_queue = r;
  pthread_cond_broadcast(&fk_cv);
  while (!r->done)
    pthread_cond_wait(&fk_cv, &fk_mu);
  pthread_mutex_unlock(&fk_mu);
  return 0;
}

/* In a fork child the forker's queue and lock are copies of the parent's: start afresh. */
static void forker_atfork_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t fresh_cv = PTHREAD_COND_INITIALIZER;
  fk_mu = fresh;
  fk_cv = fresh_cv;
  fk_queue = NULL;
  fk_started = 0;
}

static void forker_atfork_prepare(void) { pthread_mutex_lock(&fk_mu); }
static void forker_atfork_parent(void) { pthread_mutex_unlock(&fk_mu); }

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) {
  pthread_atfork(forker_atfork_prepare, forker_atfork_parent, forker_atfork_child);
}

/* ---- pidfds ------------------------------------------------------------------------- */

static int pidfd_open_(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static int attach_pidfd(mp_plat_proc *p, pid_t pid) {
  p->pid = pid;
  p->reaped = 0;
  p->exit_code = 0;
  int fd = pidfd_open_(pid);
  if (fd < 0)
    return mp__os_error("pidfd_open");
  p->wait_handle = fd;
  return 0;
}

/* ---- fork ----------------------------------------------------------------------------- */

/* Closes every close-on-exec descriptor except those in keep: a fork child then holds the
 * same handles a spawned child would (its arguments' plus the inheritable ones), so that
 * another child's pipe ends never keep a peer from seeing EOF. getdents64 into a small
 * stack buffer keeps this safe after fork in a threaded parent, and cheap: every page the
 * child touches is a copy-on-write fault. Closing while listing may skip entries, so the
 * listing repeats until a pass closes nothing. */
static void close_cloexec_fds_except(const int *keep, size_t nkeep) {
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    return;
  char buf[1024];
  for (int closed = 1; closed;) {
    closed = 0;
    lseek(dir, 0, SEEK_SET);
    long n;
    while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
      for (long off = 0; off < n;) {
        struct dirent64 *d = (struct dirent64 *)(buf + off);
        off += d->d_reclen;
        if (d->d_name[0] < '0' || d->d_name[0] > '9')
          continue;
        int fd = atoi(d->d_name), kept = fd <= 2 || fd == dir;
        for (size_t k = 0; k < nkeep && !kept; k++)
          kept = keep[k] == fd;
        if (!kept && (fcntl(fd, F_GETFD) & FD_CLOEXEC) && close(fd) == 0)
          closed = 1;
      }
    }
  }
  close(dir);
}

/* In a child: die with the parent, and catch the race where it already died. */
static void die_with_parent(pid_t expected_parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != expected_parent)
    _exit(128 + SIGKILL);
}

static int run_fork(fork_req *r) {
  pid_t parent = getpid();
  fflush(NULL); /* or buffered output would be written twice, by parent and child */
  pid_t pid = fork();
  if (pid < 0) {
    r->err = errno;
    return -1;
  }
  if (pid == 0) {
    if (r->die_with_parent)
      die_with_parent(parent);
    pthread_sigmask(SIG_SETMASK, &r->mask, NULL);
    mp_plat_exit(r->child_fn(r->ctx));
  }
  r->pid = pid;
  return 0;
}

int mp_plat_fork(mp_plat_proc *p, int die, int (*child_fn)(void *), void *ctx) {
  pthread_once(&atfork_once, install_atfork);
  fork_req r;
  memset(&r, 0, sizeof r);
  r.run = run_fork;
  r.die_with_parent = die;
  r.child_fn = child_fn;
  r.ctx = ctx;
  int rc = forker_call(&r);
  if (rc)
    return rc;
  if (r.pid <= 0)
    return mp__os_error_code(MP_EOS, r.err, "fork");
  return attach_pidfd(p, r.pid);
}

/* Used by process.c in a fork child to drop descriptors its arguments do not name. */
void mp_plat_fork_child_close_fds(const mp_plat_handle *keep, size_t n) {
  int fds[64];
  size_t m = 0;
  for (size_t i = 0; i < n && m < 64; i++)
    fds[m++] = (int)keep[i];
  close_cloexec_fds_except(fds, m);
}

/* ---- spawn ---------------------------------------------------------------------------- */

/* Lays out the child's descriptors: the bootstrap at 3 and the argument handles after it,
 * everything else above 2 closed. Sources are first copied above every source and target
 * so that no dup2 overwrites a descriptor still to be copied. */
static int build_file_actions(posix_spawn_file_actions_t *fa, const mp_plat_spawn_req *req) {
  size_t n = req->nhandles + 1;
  int maxfd = (int)req->bootstrap;
  for (size_t i = 0; i < req->nhandles; i++)
    if ((int)req->handles[i] > maxfd)
      maxfd = (int)req->handles[i];
  int base = (maxfd > (int)(2 + n) ? maxfd : (int)(2 + n)) + 1;
  int rc = posix_spawn_file_actions_init(fa);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    int src = i == 0 ? (int)req->bootstrap : (int)req->handles[i - 1];
    rc = posix_spawn_file_actions_adddup2(fa, src, base + (int)i);
  }
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = posix_spawn_file_actions_adddup2(fa, base + (int)i, 3 + (int)i);
  if (rc == 0)
    rc = posix_spawn_file_actions_addclosefrom_np(fa, 3 + (int)n);
  return rc;
}

static int run_spawn(fork_req *r) {
  mp_plat_spawn_req *req = r->spawn;
  char exe[4096];
  if (mp_plat_self_exe(exe, sizeof exe) != 0) {
    r->err = errno ? errno : ENOENT;
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t def;
  int rc = build_file_actions(&fa, req);
  posix_spawnattr_init(&attr);
  /* The child starts with the caller's mask and default handlers, like a fresh program. */
  sigfillset(&def);
  sigdelset(&def, SIGKILL);
  sigdelset(&def, SIGSTOP);
  posix_spawnattr_setsigmask(&attr, &r->mask);
  posix_spawnattr_setsigdefault(&attr, &def);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char marker[96];
  snprintf(marker, sizeof marker, MP_CHILD_MARKER "%lld:3:%d", (long long)getpid(), req->flags);
  char *argv[] = {(char *)(req->argv0 ? req->argv0 : exe), marker, NULL};
  pid_t pid = 0;
  if (rc == 0)
    rc = posix_spawn(&pid, exe, &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    r->err = rc;
    return -1;
  }
  r->pid = pid;
  return 0;
}

int mp_plat_spawn_self(mp_plat_proc *p, mp_plat_spawn_req *req) {
  pthread_once(&atfork_once, install_atfork);
  fork_req r;
  memset(&r, 0, sizeof r);
  r.run = run_spawn;
  r.spawn = req;
  int rc = forker_call(&r);
  if (rc)
    return rc;
  if (r.pid <= 0) {
    char exe[4096] = "/proc/self/exe";
    mp_plat_self_exe(exe, sizeof exe);
    char what[4200];
    snprintf(what, sizeof what, "posix_spawn(%s)", exe);
    return mp__os_error_code(MP_ECHILD, r.err, what);
  }
  for (size_t i = 0; i < req->nhandles; i++)
    req->child_handles[i] = 4 + (mp_plat_handle)i; /* the layout of build_file_actions */
  return attach_pidfd(p, r.pid);
}

int mp_plat_bootstrap_handle(int64_t parent_pid, int64_t value, mp_plat_handle *out) {
  if (fcntl((int)value, F_GETFD) < 0)
    return mp__os_error("bootstrap descriptor");
  fcntl((int)value, F_SETFD, FD_CLOEXEC);
  (void)parent_pid;
  *out = (mp_plat_handle)value;
  return 0;
}

void mp_plat_child_setup(int64_t parent_pid, int die) {
  if (die)
    die_with_parent((pid_t)parent_pid);
}

/* ---- waiting and signalling ------------------------------------------------------------ */

static int decode_status(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return -WTERMSIG(status);
  return -1;
}

int mp_plat_proc_wait(mp_plat_proc *p, int timeout_ms) {
  if (p->reaped)
    return 0;
  struct pollfd pfd = {.fd = (int)p->wait_handle, .events = POLLIN};
  uint64_t deadline =
      mp_plat_monotonic_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
  for (;;) {
    int wait_ms = timeout_ms;
    if (timeout_ms > 0) {
      uint64_t now = mp_plat_monotonic_ns();
      wait_ms = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
    }
    int n = poll(&pfd, 1, wait_ms);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return mp__os_error("poll(pidfd)");
    if (n == 0)
      return MP_ETIMEDOUT;
    break;
  }
  int status = 0;
  pid_t got;
  while ((got = waitpid((pid_t)p->pid, &status, 0)) < 0 && errno == EINTR) {
  }
  if (got < 0)
    return mp__os_error("waitpid");
  p->exit_code = decode_status(status);
  p->reaped = 1; /* the pidfd stays open (and readable) for mp_wait until release */
  return 0;
}

int mp_plat_proc_signal(mp_plat_proc *p, int sig) {
  if (p->reaped || p->wait_handle == MP_PLAT_INVALID)
    return 0; /* the pid may belong to someone else by now */
  int s = sig == MP_SIG_KILL ? SIGKILL : SIGTERM;
  if (syscall(SYS_pidfd_send_signal, (int)p->wait_handle, s, NULL, 0) < 0 && errno != ESRCH)
    return mp__os_error("pidfd_send_signal");
  return 0;
}

void mp_plat_proc_release(mp_plat_proc *p) {
  if (p->wait_handle != MP_PLAT_INVALID)
    close((int)p->wait_handle);
  p->wait_handle = MP_PLAT_INVALID;
}

/* ---- identity of this program ---------------------------------------------------------- */

int mp_plat_self_exe(char *buf, size_t size) {
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  if (n < 0)
    return mp__os_error("readlink(/proc/self/exe)");
  buf[n] = '\0';
  return 0;
}

int mp_plat_started_as_child(void) {
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[8192];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
    if (strncmp(buf + i, "--multiproc-child=", 18) == 0)
      return 1;
  return 0;
}

void mp_plat_exit(int code) {
  fflush(NULL);
  _exit(code);
}
