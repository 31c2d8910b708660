/* POSIX child engine: one posix_spawn path for this program and for other programs, fork
 * from a long-lived internal thread, waiting on a pidfd (Linux), on the SIGCHLD reaper
 * (posix/reaper.c) or on a fork server's report (posix/forkserver.c), status decoding,
 * signals to one child or its process group.
 *
 * Why a forker thread: Linux delivers the parent-death signal when the *thread* that forked
 * exits, not the process. A child started from a short-lived thread would die with that
 * thread. Forking from a thread that lives as long as the process makes the death signal
 * mean what users expect. Children that need no death signal are spawned directly. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "features.h"
#include "reaper.h"
#include "util.h"
#include "../platform.h"

#if MP_LINUX
#  include <dirent.h>
#  include <sys/auxv.h>
#  include <sys/prctl.h>
#  include <sys/syscall.h>
#endif

extern char **environ;

/* A spawned child finds its bootstrap at MP_BOOT_FD, then (portable builds,
 * die-with-parent) the lifeline, then the passed handles. */

int mp_plat_child_caps(void) {
  return MP_CAP_FORK | MP_CAP_ZOMBIES | MP_CAP_BOOT_HANDED | (MP_LINUX ? 0 : MP_CAP_REAPER_THREAD);
}

int64_t mp_plat_bootstrap_value(mp_plat_handle h) {
  (void)h;
  return MP_BOOT_FD;
}

/* ---- the forker thread ------------------------------------------------------------------ */

typedef struct fork_req {
  int (*run)(struct fork_req *r); /* executed on the forker thread */
  sigset_t mask;                  /* the requesting thread's signal mask, for the child */
  const mp_plat_child_spec *spec;
  int flags;
  const mp_plat_handle *keep;
  size_t nkeep;
  int (*child_fn)(void *);
  void *ctx;
  pid_t pid;
  int err; /* errno of a failure */
  int done;
  struct fork_req *next;
} fork_req;

static pthread_mutex_t fk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fk_cv = PTHREAD_COND_INITIALIZER;
static fork_req *fk_queue;
static pid_t fk_owner; /* the process whose forker runs; a fork child has none */

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

static void forker_atfork_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t fresh_cv = PTHREAD_COND_INITIALIZER;
  fk_mu = fresh;
  fk_cv = fresh_cv;
  fk_queue = NULL;
  fk_owner = 0;
}
static void forker_atfork_prepare(void) { pthread_mutex_lock(&fk_mu); }
static void forker_atfork_parent(void) { pthread_mutex_unlock(&fk_mu); }
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) {
  pthread_atfork(forker_atfork_prepare, forker_atfork_parent, forker_atfork_child);
}

static int forker_start_locked(void) {
  int rc = mp__service_thread(forker_main, "pthread_create(forker thread)");
  if (rc == 0)
    fk_owner = getpid();
  return rc;
}

/* Runs r on the forker thread, starting it on first use, and waits for the result. */
static int forker_call(fork_req *r) {
  pthread_once(&atfork_once, install_atfork);
  pthread_mutex_lock(&fk_mu);
  int rc = fk_owner == getpid() ? 0 : forker_start_locked();
  if (rc == 0) {
    r->next = fk_queue;
    fk_queue = r;
    pthread_cond_broadcast(&fk_cv);
    while (!r->done)
      pthread_cond_wait(&fk_cv, &fk_mu);
  }
  pthread_mutex_unlock(&fk_mu);
  return rc;
}

/* ---- the lifeline: die-with-parent without PR_SET_PDEATHSIG ------------------------------ */
/* The parent holds the write end of one pipe for its whole life; each child that must die
 * with it holds the read end and a thread blocked reading it. The parent's death closes the
 * write end (the kernel does it), the read returns end of file, the child exits. */

static int lifeline[2] = {-1, -1};
#if !MP_LINUX
static pthread_mutex_t lifeline_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t lifeline_owner;

/* Made once per process: a fork child inherits its parent's lifeline (whose read end it may be
 * watching) and needs a new one for its own children. */
int mp__lifeline_read_end(void) {
  pthread_mutex_lock(&lifeline_mu);
  if (lifeline_owner != getpid()) {
    if (pipe2(lifeline, O_CLOEXEC) == 0)
      lifeline_owner = getpid();
    else
      lifeline[0] = lifeline[1] = -1;
  }
  int fd = lifeline[0];
  pthread_mutex_unlock(&lifeline_mu);
  return fd >= 0 ? fd : mp__os_error("pipe2(lifeline)");
}

static void *lifeline_watch(void *arg) {
  char c;
  while (read((int)(intptr_t)arg, &c, 1) < 0 && errno == EINTR) {
  }
  _exit(128 + SIGKILL); /* as PR_SET_PDEATHSIG's SIGKILL would */
}

static void lifeline_arm(int fd) {
  pthread_t t;
  if (pthread_create(&t, NULL, lifeline_watch, (void *)(intptr_t)fd) == 0)
    pthread_detach(t);
}
#endif

/* In a child: die with the parent, and catch the race where it already died. */
void mp__die_with_parent(pid_t expected_parent, int lifeline_fd) {
#if MP_LINUX
  (void)lifeline_fd;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
#else
  if (lifeline_fd >= 0)
    lifeline_arm(lifeline_fd);
#endif
  if (getppid() != expected_parent)
    _exit(128 + SIGKILL);
}

/* ---- closing what a child must not hold --------------------------------------------------- */

static int kept(int fd, const mp_plat_handle *keep, size_t nkeep) {
  for (size_t k = 0; k < nkeep; k++)
    if ((int)keep[k] == fd)
      return 1;
  return 0;
}

static void close_unless_kept(int fd, int low, int cloexec_only, const mp_plat_handle *keep,
                              size_t nkeep, int except) {
  if (fd < low || fd == except || kept(fd, keep, nkeep) || fd == lifeline[0])
    return;
  if (!cloexec_only || (fcntl(fd, F_GETFD) & FD_CLOEXEC))
    close(fd);
}

#if MP_LINUX
/* close_range (Linux 5.9) when nothing above low stays; else getdents64 into a small stack
 * buffer: safe after fork in a threaded parent. One pass is enough: /proc lists descriptors
 * by number from a position, so closing those already listed skips none. Cheap on purpose,
 * since every page a fork child touches costs it a fault: the path is built on the stack (the
 * kernel would fault in a read-only data page to read a literal) and names are parsed here,
 * not by strtol's code and locale tables. */
void mp__close_from(int low, int cloexec_only, const mp_plat_handle *keep, size_t nkeep) {
#  ifdef SYS_close_range
  if (!cloexec_only && nkeep == 0 && syscall(SYS_close_range, low, ~0u, 0) == 0)
    return;
#  endif
  char path[] = {'/', 'p', 'r', 'o', 'c', '/', 's', 'e', 'l', 'f', '/', 'f', 'd', '\0'};
  int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    return;
  char buf[1024];
  long n;
  while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(buf + off);
      off += d->d_reclen;
      int fd = 0;
      const char *c = d->d_name;
      for (; *c >= '0' && *c <= '9' && fd < (1 << 24); c++)
        fd = fd * 10 + (*c - '0');
      if (c != d->d_name && *c == '\0')
        close_unless_kept(fd, low, cloexec_only, keep, nkeep, dir);
    }
  }
  close(dir);
}
#else
/* Portable: poll() reports POLLNVAL for descriptors that are not open, 256 at a time, up to
 * the descriptor limit; poll, fcntl and close are safe after fork. */
void mp__close_from(int low, int cloexec_only, const mp_plat_handle *keep, size_t nkeep) {
  struct rlimit rl;
  int limit =
      getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (1u << 20)
          ? (int)rl.rlim_cur
          : 1 << 20;
  struct pollfd p[256];
  for (int base = low; base < limit; base += 256) {
    int n = limit - base < 256 ? limit - base : 256;
    for (int i = 0; i < n; i++)
      p[i] = (struct pollfd){base + i, 0, 0};
    if (poll(p, (nfds_t)n, 0) < 0)
      continue;
    for (int i = 0; i < n; i++)
      if (!(p[i].revents & POLLNVAL))
        close_unless_kept(base + i, low, cloexec_only, keep, nkeep, -1);
  }
}
#endif

/* ---- tracking a started child ----------------------------------------------------------- */

/* mp_plat_child.backend: how the child's end is known. WAIT_SERVED: a fork server's child,
 * whose wait handle the server makes readable with the exit status (posix/forkserver.c). */
enum { WAIT_REAPER = 0, WAIT_PIDFD = 1, WAIT_SERVED = 2 };

static int no_pidfd_for_tests;
void mp_plat_child_test_no_pidfd(int on) { no_pidfd_for_tests = on; }

/* A handle to wait on: a pidfd where the kernel gives one, else the reaper's pipe. The child
 * exists already, so a failure here must not lose it: the caller kills and reaps it. */
static int track(mp_plat_child *c, pid_t pid, int flags) {
  c->pid = pid;
  c->flags = flags;
  c->reaped = 0;
  c->status = 0;
  c->job = MP_PLAT_INVALID;
  c->wait = MP_PLAT_INVALID;
#if MP_LINUX
  if (!no_pidfd_for_tests) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
      c->wait = fd;
      c->backend = WAIT_PIDFD;
      return 0;
    }
  }
#endif
  int fd;
  int rc = mp__reaper_watch(pid, &fd);
  if (rc == 0)
    c->wait = fd, c->backend = WAIT_REAPER;
  return rc;
}

void mp__track_served(mp_plat_child *c, pid_t pid, int status_fd, int flags) {
  memset(c, 0, sizeof *c);
  c->pid = pid;
  c->flags = flags;
  c->job = MP_PLAT_INVALID;
  c->wait = status_fd;
  c->backend = WAIT_SERVED;
}

/* A child we could not track: kill it and reap it here, so it neither runs on nor stays. */
static void kill_untracked(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
}

/* ---- fork --------------------------------------------------------------------------------- */

static int run_fork(fork_req *r) {
  pid_t parent = getpid();
  int life = -1;
#if !MP_LINUX
  if (r->flags & MP_CHILD_DIE_WITH_PARENT)
    life = mp__lifeline_read_end();
#endif
  /* Or buffered output would be written twice, by parent and child. */
  mp_plat_flush_stdio();
  pid_t pid = fork();
  if (pid < 0) {
    r->err = errno;
    return -1;
  }
  if (pid == 0) {
    /* r lives on the requesting thread's stack, which this child's glibc hands to the next
     * thread it creates (the lifeline watcher): keep what the child needs on this stack. */
    int (*child_fn)(void *) = r->child_fn;
    void *ctx = r->ctx;
    sigset_t mask = r->mask;
    mp__close_from(3, 1, r->keep, r->nkeep);
    if (r->flags & MP_CHILD_DIE_WITH_PARENT)
      mp__die_with_parent(parent, life);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    mp_plat_exit(child_fn(ctx));
  }
  r->pid = pid;
  return 0;
}

int mp_plat_child_fork(mp_plat_child *c, int flags, const mp_plat_handle *keep, size_t nkeep,
                       int (*child_fn)(void *), void *ctx) {
  fork_req r;
  memset(&r, 0, sizeof r);
  r.run = run_fork;
  r.flags = flags;
  r.keep = keep;
  r.nkeep = nkeep;
  r.child_fn = child_fn;
  r.ctx = ctx;
  pthread_sigmask(SIG_SETMASK, NULL, &r.mask);
  int rc = forker_call(&r);
  if (rc)
    return rc;
  if (r.pid <= 0)
    return mp__os_error_code(MP_EOS, r.err, "fork");
  if ((rc = track(c, r.pid, flags)) != 0)
    kill_untracked(r.pid);
  return rc;
}

/* ---- spawn -------------------------------------------------------------------------------- */

/* The child's layout: stdio at 0..2 (when given), the bootstrap at 3, the lifeline next
 * (portable builds), then the passed handles. Sources are first copied above every source and
 * target, so that no dup2 overwrites a descriptor still to be copied and every target is a
 * fresh, inheritable copy even where source and target numbers agree. */
typedef struct layout {
  int src[3 + 2 + 256];
  int dst[3 + 2 + 256];
  int n, top; /* top: the first descriptor above every target */
} layout;

static int plan_layout(const mp_plat_child_spec *s, int life, layout *l) {
  l->n = 0;
  for (int i = 0; i < 3; i++)
    if (s->stdio[i] != MP_PLAT_INVALID)
      l->src[l->n] = (int)s->stdio[i], l->dst[l->n++] = i;
  int next = MP_BOOT_FD;
  if (s->bootstrap != MP_PLAT_INVALID)
    l->src[l->n] = (int)s->bootstrap, l->dst[l->n++] = next++;
  if (life >= 0)
    l->src[l->n] = life, l->dst[l->n++] = next++;
  if (s->npass > 256)
    return mp_set_error(MP_EINVAL, "a child can receive at most 256 handles, not %zu", s->npass);
  for (size_t i = 0; i < s->npass; i++) {
    if (s->passed)
      s->passed[i] = next;
    l->src[l->n] = (int)s->pass[i], l->dst[l->n++] = next++;
  }
  l->top = next;
  return 0;
}

static int add_layout(posix_spawn_file_actions_t *fa, const layout *l) {
  int base = l->top;
  for (int i = 0; i < l->n; i++)
    if (l->src[i] >= base)
      base = l->src[i] + 1;
  int e = 0;
  for (int i = 0; e == 0 && i < l->n; i++)
    e = posix_spawn_file_actions_adddup2(fa, l->src[i], base + i);
  for (int i = 0; e == 0 && i < l->n; i++)
    e = posix_spawn_file_actions_adddup2(fa, base + i, l->dst[i]);
#if MP_LINUX
  /* Nothing else reaches the program, even descriptors someone opened without O_CLOEXEC. */
  if (e == 0)
    e = posix_spawn_file_actions_addclosefrom_np(fa, l->top);
#else
  for (int i = 0; e == 0 && i < l->n; i++)
    e = posix_spawn_file_actions_addclose(fa, base + i);
  /* Descriptors opened without O_CLOEXEC by other code: closed by name (up to 65536). */
  struct rlimit rl;
  int limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
  struct pollfd p[256];
  for (int b = l->top; e == 0 && b < limit; b += 256) {
    int n = limit - b < 256 ? limit - b : 256;
    for (int i = 0; i < n; i++)
      p[i] = (struct pollfd){b + i, 0, 0};
    if (poll(p, (nfds_t)n, 0) < 0)
      break;
    for (int i = 0; e == 0 && i < n; i++)
      if (!(p[i].revents & POLLNVAL) && !(fcntl(b + i, F_GETFD) & FD_CLOEXEC))
        e = posix_spawn_file_actions_addclose(fa, b + i);
  }
#endif
  return e;
}

static int setup_attr(const mp_plat_child_spec *s, const sigset_t *mask, posix_spawnattr_t *at) {
  sigset_t def;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (s->flags & MP_CHILD_DETACHED)
    flags |= POSIX_SPAWN_SETSID;
  else if (s->flags & MP_CHILD_NEW_GROUP)
    flags |= POSIX_SPAWN_SETPGROUP;
  /* The program starts with default dispositions (SIGPIPE not ignored) and the mask of the
   * thread that started it, as if that thread had run it. */
  sigfillset(&def);
  sigdelset(&def, SIGKILL);
  sigdelset(&def, SIGSTOP);
  int e = posix_spawnattr_setflags(at, flags);
  if (e == 0)
    e = posix_spawnattr_setsigmask(at, mask);
  if (e == 0)
    e = posix_spawnattr_setsigdefault(at, &def);
  if (e == 0)
    e = posix_spawnattr_setpgroup(at, 0);
  return e;
}

static int spawn_now(const mp_plat_child_spec *s, const sigset_t *mask, pid_t *pid) {
  char exe[4096];
  const char *prog = s->program;
  const char *sh_argv[4] = {"/bin/sh", "-c", s->shell_cmd, NULL};
  const char *const *argv = s->shell_cmd ? sh_argv : s->argv;
  if (s->shell_cmd)
    prog = "/bin/sh";
  if (prog == NULL) {
    if (mp_plat_self_exe(exe, sizeof exe) != 0)
      return errno ? errno : ENOENT;
    prog = exe;
  }
  int life = -1;
#if !MP_LINUX
  if ((s->flags & MP_CHILD_DIE_WITH_PARENT) && s->bootstrap != MP_PLAT_INVALID &&
      (life = mp__lifeline_read_end()) < 0)
    return EMFILE;
#endif
  layout l;
  l.n = 0;
  l.top = MP_BOOT_FD;
  if (plan_layout(s, life, &l) != 0)
    return EINVAL;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  int e = add_layout(&fa, &l);
  if (e == 0 && s->cwd)
    e = posix_spawn_file_actions_addchdir_np(&fa, s->cwd);
  if (e == 0)
    e = setup_attr(s, mask, &at);
  if (e == 0)
    e = posix_spawn(pid, prog, &fa, &at, (char *const *)argv, s->envp ? s->envp : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return e;
}

static int run_spawn(fork_req *r) {
  r->err = spawn_now(r->spec, &r->mask, &r->pid);
  return r->err ? -1 : 0;
}

static int spawn_error(int e, const mp_plat_child_spec *s) {
  char what[600];
  const char *prog = s->shell_cmd ? "/bin/sh" : s->program ? s->program : "this program";
  if (s->cwd && access(s->cwd, X_OK) != 0) {
    snprintf(what, sizeof what, "cannot start '%s': working directory '%s'", prog, s->cwd);
    return mp__os_error_code(mp__errno_code(errno), errno, what);
  }
  snprintf(what, sizeof what, "cannot start '%s'", prog);
  return mp__os_error_code(s->program || s->shell_cmd ? mp__errno_code(e) : MP_ECHILD, e, what);
}

int mp_plat_child_spawn(const mp_plat_child_spec *s, mp_plat_child *c) {
  fork_req r;
  memset(&r, 0, sizeof r);
  r.run = run_spawn;
  r.spec = s;
  pthread_sigmask(SIG_SETMASK, NULL, &r.mask);
  memset(c, 0, sizeof *c);
  c->wait = c->job = MP_PLAT_INVALID;
  if (s->npass > 256)
    return mp_set_error(MP_EINVAL, "a child can receive at most 256 handles, not %zu", s->npass);
  /* Only a child that must die with us needs the long-lived forker thread. */
  if (s->flags & MP_CHILD_DIE_WITH_PARENT) {
    int rc = forker_call(&r);
    if (rc)
      return rc;
  } else {
    run_spawn(&r);
  }
  if (r.err != 0)
    return spawn_error(r.err, s);
  int rc = track(c, r.pid, s->flags);
  if (rc != 0)
    kill_untracked(r.pid);
  return rc;
}

/* ---- waiting and signalling --------------------------------------------------------------- */

static int decode_status(int st) {
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  if (WIFSIGNALED(st))
    return -WTERMSIG(st);
  return -1;
}

int mp__wait_readable(int fd, int timeout_ms) {
  struct pollfd pfd = {fd, POLLIN, 0};
  uint64_t deadline =
      mp_plat_monotonic_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
  for (;;) {
    int left = timeout_ms;
    if (timeout_ms > 0) {
      uint64_t now = mp_plat_monotonic_ns();
      left = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
    }
    int n = poll(&pfd, 1, left);
    if (n > 0)
      return 0;
    if (n == 0)
      return MP_ETIMEDOUT;
    if (errno != EINTR)
      return mp__os_error("poll(child)");
  }
}

/* Collects the status once the wait handle said the child exited. */
static int collect(mp_plat_child *c) {
  int st = 0;
  if (c->backend == WAIT_SERVED) {
    /* A server that went away killed its children as it went (they die with it). */
    c->status = mp__served_status((int)c->wait, &st) == 0 ? decode_status(st) : -MP_SIG_KILL;
    c->reaped = 1;
    return 0;
  }
  int got = c->backend == WAIT_PIDFD ? -1 : mp__reaper_take((pid_t)c->pid, &st);
  if (got == 0)
    return MP_ETIMEDOUT; /* woken early: the reaper has not reaped yet */
  if (got == 2) {
    c->reaped = 1;
    return mp_set_error(MP_ECHILD, "waitpid: the child was reaped elsewhere");
  }
  if (got < 0) {
    pid_t r;
    while ((r = waitpid((pid_t)c->pid, &st, 0)) < 0 && errno == EINTR) {
    }
    if (r < 0) {
      int e = errno;
      c->reaped = 1; /* someone else (SIGCHLD ignored, waitpid(-1)) took the child */
      return mp__os_error_code(MP_ECHILD, e, "waitpid: the child was reaped elsewhere");
    }
  }
  c->status = decode_status(st);
  c->reaped = 1; /* the wait handle stays open (and readable) for mp_wait until release */
  return 0;
}

int mp_plat_child_wait(mp_plat_child *c, int timeout_ms) {
  if (c->reaped)
    return 0;
  if (c->wait == MP_PLAT_INVALID)
    return mp_set_error(MP_ESTATE, "the child %lld is not tracked", (long long)c->pid);
  /* The reaper is asked first: an exited child is collected now, not when its thread runs. */
  int rc = c->backend == WAIT_REAPER ? collect(c) : MP_ETIMEDOUT;
  while (rc == MP_ETIMEDOUT) {
    if ((rc = mp__wait_readable((int)c->wait, timeout_ms)) != 0)
      return rc;
    rc = collect(c); /* the handle is ready: the child has exited */
  }
  return rc;
}

int mp_plat_child_signal(mp_plat_child *c, int sig, int tree) {
  int s = sig == MP_SIG_KILL ? SIGKILL : SIGTERM;
  /* The group outlives its leader while grandchildren are in it, so a tree signal still
   * applies after the child itself was reaped. */
  if (tree && (c->flags & (MP_CHILD_NEW_GROUP | MP_CHILD_DETACHED))) {
    if (killpg((pid_t)c->pid, s) != 0 && errno != ESRCH && errno != EPERM)
      return mp__os_error("killpg");
    return 0;
  }
  if (c->reaped || c->wait == MP_PLAT_INVALID)
    return 0; /* the pid may belong to someone else by now */
  int e = 0;
#if MP_LINUX
  if (c->backend == WAIT_PIDFD)
    e = syscall(SYS_pidfd_send_signal, (int)c->wait, s, NULL, 0) == 0 ? 0 : errno;
  else
#endif
    e = c->backend == WAIT_SERVED ? mp__served_signal((int)c->wait, s)
                                  : mp__reaper_kill((pid_t)c->pid, s);
  if (e != 0 && e != ESRCH)
    return mp__os_error_code(MP_EOS, e, "signalling the child");
  return 0;
}

void mp_plat_child_release(mp_plat_child *c) {
  if (c->wait != MP_PLAT_INVALID)
    close((int)c->wait);
  c->wait = MP_PLAT_INVALID;
}

/* ---- in the spawned child ------------------------------------------------------------------ */

int mp_plat_child_mode_allowed(void) {
#if MP_LINUX
  int secure = getauxval(AT_SECURE) != 0;
#else
  int secure = getuid() != geteuid() || getgid() != getegid();
#endif
  if (secure)
    return mp_set_error(MP_EPERM, "refusing to run as a multiproc child in a setuid/setgid "
                                  "program (AT_SECURE)");
  return 0;
}

static pid_t served_by; /* in a fork server's child: the server */

void mp__bootstrap_accept_parent(pid_t server) { served_by = server; }

/* The bootstrap descriptor must be a socket whose peer is the parent named by the marker
 * and is the process that started this one; in a fork server's child the server started
 * it, but the client made the socket pair, so the peer is still the client. */
int mp_plat_bootstrap_handle(int64_t parent_pid, int64_t value, mp_plat_handle *out) {
  int fd = (int)value;
  pid_t ppid = getppid();
  if ((pid_t)parent_pid != ppid && (served_by == 0 || ppid != served_by))
    return mp_set_error(MP_EPERM,
                        "bootstrap: parent %lld named by the marker is not this "
                        "process's parent (%lld)",
                        (long long)parent_pid, (long long)ppid);
  if (fcntl(fd, F_GETFD) < 0)
    return mp__os_error("bootstrap: descriptor");
#if MP_LINUX
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return mp__os_error("bootstrap: descriptor (SO_PEERCRED)");
  if ((int64_t)cred.pid != parent_pid || cred.uid != getuid())
    return mp_set_error(MP_EPERM, "bootstrap: the peer (pid %lld) is not the parent %lld",
                        (long long)cred.pid, (long long)parent_pid);
#else
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return mp__os_error("bootstrap: descriptor is not a socket");
#endif
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  *out = fd;
  return 0;
}

void mp_plat_child_seal(const mp_plat_handle *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    fcntl((int)h[i], F_SETFD, fcntl((int)h[i], F_GETFD) | FD_CLOEXEC);
}

void mp_plat_child_setup(int64_t parent_pid, int die) {
  if (!die)
    return;
  int life = -1;
#if !MP_LINUX
  life = MP_BOOT_FD + 1; /* the layout of plan_layout */
  fcntl(life, F_SETFD, FD_CLOEXEC);
#endif
  mp__die_with_parent((pid_t)parent_pid, life);
}

/* ---- identity of this program -------------------------------------------------------------- */

static char argv0_path[4096];

void mp_plat_note_argv0(const char *argv0) {
  if (argv0 == NULL || argv0_path[0] || strchr(argv0, '/') == NULL)
    return;
  if (realpath(argv0, argv0_path) == NULL)
    argv0_path[0] = '\0';
}

int mp_plat_self_exe(char *buf, size_t size) {
#if MP_LINUX
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  if (n < 0)
    return mp__os_error("readlink(/proc/self/exe)");
  buf[n] = '\0';
  return 0;
#else
  if (argv0_path[0] == '\0' || strlen(argv0_path) >= size)
    return mp_set_error(MP_ENOTSUP, "this program's own path is unknown: call mp_init(&argc, "
                                    "&argv) with argv[0] holding a path");
  strcpy(buf, argv0_path);
  return 0;
#endif
}

int mp_plat_started_as_child(void) {
#if MP_LINUX
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[8192];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  size_t first = strlen(buf) + 1; /* the marker counts only as argv[1] */
  return (ssize_t)first < n && strncmp(buf + first, MP_CHILD_MARKER, strlen(MP_CHILD_MARKER)) == 0;
#else
  return 0; /* no portable way to read the command line before mp_init */
#endif
}

void mp_plat_exit(int code) {
  mp_plat_flush_stdio();
  _exit(code);
}
