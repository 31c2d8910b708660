/* POSIX backend of the fork server (its life is core's: src/forkserver.c). One server serves
 * one client, the process that spawned it, over Unix stream sockets:
 *
 *   client                                         server (a fresh run of this program)
 *   socketpair(req); writes on req[0]:
 *     header + descriptors                    ->
 *   on ctl: 1 byte + req[1] (SCM_RIGHTS)      ->   reads the whole request from req[1],
 *                                                  forks: the child gets stdio, bootstrap,
 *          <- on req: int64 pid, or -errno         handles, working directory, signal mask
 *   on req: 'T' or 'K'                        ->   kill(pid, SIGTERM / SIGKILL) unless reaped
 *          <- on req: int32 wait status; closed    once it reaped the child
 *
 * The request is whole in req before req[1] travels, so the server never waits on a client.
 * Descriptors travel FS_PER_MSG at a time, with a message's first byte (Linux takes at most
 * 253 per message). A req whose client end closes (the client died or exec'd) has its child
 * killed unless detached; when ctl closes, the server kills what must die with the client
 * and exits. The server forks from its main thread only, so the death signal of its
 * children (PR_SET_PDEATHSIG) means the server's death. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "features.h"
#include "util.h"
#include "../platform.h"

#define FS_MAGIC 0x5346504du /* "MPFS" */
#define FS_VERSION 1
#define FS_MAX_PASS 256 /* as a spawned child */
#define FS_PER_MSG 64   /* descriptors per message */
/* The descriptors of a request, in order: the bootstrap, the working directory, the stdio
 * the client has open (0, 1, 2), the passed handles. */
enum { FS_FD_BOOT, FS_FD_CWD, FS_FIXED };
#define FS_MAX_FDS (FS_FIXED + 3 + FS_MAX_PASS)

typedef struct fs_header {
  uint32_t magic;
  uint16_t version;
  uint16_t flags; /* MP_CHILD_DIE_WITH_PARENT or 0 */
  uint16_t stdio; /* bit i: stdio i travels; else the child has it closed, as the client */
  uint16_t npass;
  uint32_t nfds;
  sigset_t mask; /* the requesting thread's: the child starts with it */
} fs_header;

static int popcount3(unsigned v) { return (v & 1) + ((v >> 1) & 1) + ((v >> 2) & 1); }

int mp__forkserver_check_request(const void *buf, size_t len, size_t nfds) {
  fs_header h;
  if (len != sizeof h)
    return mp_set_error(MP_EPROTO, "fork server: a request header of %zu bytes", len);
  memcpy(&h, buf, sizeof h);
  if (h.magic != FS_MAGIC || h.version != FS_VERSION)
    return mp_set_error(MP_EPROTO, "fork server: not a request of this version");
  if ((h.flags & ~MP_CHILD_DIE_WITH_PARENT) != 0 || (h.stdio & ~7u) != 0 || h.npass > FS_MAX_PASS)
    return mp_set_error(MP_EPROTO, "fork server: bad flags, stdio or count in a request");
  if (h.nfds != FS_FIXED + (unsigned)popcount3(h.stdio) + h.npass || h.nfds != nfds)
    return mp_set_error(MP_EPROTO, "fork server: a request announced %u descriptors, sent %zu",
                        (unsigned)h.nfds, nfds);
  return 0;
}

/* ---- descriptors over a socket ------------------------------------------------------------ */

static int send_with_fds(int sock, const void *data, size_t len, const int *fds, size_t n) {
  union {
    char buf[CMSG_SPACE(sizeof(int) * FS_PER_MSG)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {(void *)data, len};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (n > 0) {
    memset(&u, 0, sizeof u);
    m.msg_control = u.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  ssize_t r;
  while ((r = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return r == (ssize_t)len ? 0 : r < 0 ? errno : EIO;
}

/* Receives up to len bytes now (never waits) and appends the descriptors that came with
 * them to fds[*n..max), close-on-exec; more than max, or a truncated list, is EPROTO (the
 * extra ones are closed). Returns the bytes read (0: end of file), or -errno. */
static ssize_t recv_with_fds(int sock, void *data, size_t len, int *fds, size_t *n, size_t max) {
  union {
    char buf[CMSG_SPACE(sizeof(int) * FS_PER_MSG)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {data, len};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  int flags = MSG_DONTWAIT;
#ifdef MSG_CMSG_CLOEXEC
  flags |= MSG_CMSG_CLOEXEC;
#endif
  ssize_t r;
  while ((r = recvmsg(sock, &m, flags)) < 0 && errno == EINTR) {
  }
  if (r < 0)
    return -errno;
  int bad = (m.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
#ifndef MSG_CMSG_CLOEXEC
      fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
      if (*n < max)
        fds[(*n)++] = fd;
      else
        bad = 1, close(fd);
    }
  }
  return bad ? -EPROTO : r;
}

static void close_all(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    close(fds[i]);
}

/* Reads exactly len bytes (a reply or a status), waiting as needed: 0, or 1 at end of file
 * (or a reset: the server is gone). */
static int read_exact(int fd, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = read(fd, (char *)buf + got, len - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return 1;
    got += (size_t)r;
  }
  return 0;
}

/* ---- the client ------------------------------------------------------------------------- */

/* The request's descriptors into fds (the working directory is opened: *cwd, to close).
 * This process's stdio travels as an exec would pass it on: open and inheritable. Every
 * descriptor the library makes is close-on-exec, so one that this start made on a closed
 * stdio number never passes for the client's stdio. */
static int gather(const mp_plat_child_spec *s, fs_header *h, int *fds, size_t *n, int *cwd) {
  int io[3], nio = 0;
  for (int i = 0; i < 3; i++) {
    int given = s->stdio[i] != MP_PLAT_INVALID, fd = given ? (int)s->stdio[i] : i;
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0 && (given || !(fl & FD_CLOEXEC))) {
      h->stdio |= (uint16_t)(1u << i);
      io[nio++] = fd;
    }
  }
#ifdef O_PATH
  int how = O_PATH | O_DIRECTORY | O_CLOEXEC; /* no read permission needed */
#else
  int how = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
#endif
  *cwd = open(s->cwd ? s->cwd : ".", how);
  if (*cwd < 0)
    return mp__os_error_code(mp__errno_code(errno), errno,
                             "the working directory for the fork server's child");
  *n = 0;
  fds[(*n)++] = (int)s->bootstrap;
  fds[(*n)++] = *cwd;
  for (int i = 0; i < nio; i++)
    fds[(*n)++] = io[i];
  for (size_t i = 0; i < s->npass; i++)
    fds[(*n)++] = (int)s->pass[i];
  h->nfds = (uint32_t)*n;
  return 0;
}

/* Writes the whole request on req: the header with the first descriptors, then one byte
 * per further group. 0 or an errno. */
static int write_request(int req, const fs_header *h, const int *fds, size_t n) {
  size_t first = n < FS_PER_MSG ? n : FS_PER_MSG;
  int e = send_with_fds(req, h, sizeof *h, fds, first);
  for (size_t i = first; e == 0 && i < n; i += FS_PER_MSG)
    e = send_with_fds(req, "f", 1, fds + i, n - i < FS_PER_MSG ? n - i : FS_PER_MSG);
  return e;
}

/* The server's answer to a request whose end is mine: the child's pid, or an error. A
 * server that went away without answering (killed just before or while it read the
 * request) leaves no child that could run: one it forked dies with it, unless detached. */
static int await_pid(int mine, int flags, int timeout_ms, pid_t *pid) {
  int rc = mp__wait_readable(mine, timeout_ms);
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(MP_ETIMEDOUT, "the fork server did not answer within %d ms", timeout_ms);
  if (rc != 0)
    return rc;
  int64_t v = 0;
  if (read_exact(mine, &v, sizeof v) != 0)
    return mp_set_error((flags & MP_CHILD_DIE_WITH_PARENT) ? MP_EBROKEN : MP_ECHILD,
                        "the fork server exited before it answered");
  if (v < 0 && v > -4096)
    return mp__os_error_code(mp__errno_code((int)-v), (long)-v, "fork (in the fork server)");
  if (v <= 0 || v > 0x7fffffff)
    return mp_set_error(MP_EPROTO, "the fork server answered %lld, not a pid", (long long)v);
  *pid = (pid_t)v;
  return 0;
}

int mp_plat_forkserver_fork(mp_plat_handle ctl, const mp_plat_child_spec *s, int timeout_ms,
                            mp_plat_child *c) {
  if (s->npass > FS_MAX_PASS)
    return mp_set_error(MP_EINVAL, "a child can receive at most %d handles, not %zu", FS_MAX_PASS,
                        s->npass);
  fs_header h;
  memset(&h, 0, sizeof h);
  h.magic = FS_MAGIC;
  h.version = FS_VERSION;
  h.flags = (uint16_t)(s->flags & MP_CHILD_DIE_WITH_PARENT);
  h.npass = (uint16_t)s->npass;
  pthread_sigmask(SIG_SETMASK, NULL, &h.mask);
  int fds[FS_MAX_FDS], cwd = -1, req[2];
  size_t n = 0;
  int rc = gather(s, &h, fds, &n, &cwd);
  if (rc)
    return rc;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, req) != 0) {
    rc = mp__os_error("socketpair(fork server request)");
    close(cwd);
    return rc;
  }
  int e = write_request(req[0], &h, fds, n);
  /* One byte and its descriptor in one message: requests of several threads never mix. */
  int ectl = e ? 0 : send_with_fds((int)ctl, "r", 1, &req[1], 1);
  close(req[1]);
  close(cwd);
  pid_t pid = 0;
  if (e)
    rc = mp__os_error_code(MP_EOS, e, "writing a request to the fork server");
  else if (ectl == EPIPE || ectl == ECONNRESET)
    rc = mp_set_error(MP_EBROKEN, "the fork server is gone");
  else if (ectl)
    rc = mp__os_error_code(MP_EOS, ectl, "sending a request to the fork server");
  else
    rc = await_pid(req[0], h.flags, timeout_ms, &pid);
  if (rc) {
    close(req[0]); /* a child forked after all finds its client gone and is killed */
    return rc;
  }
  mp__track(c, pid, h.flags, req[0]);
  for (size_t i = 0; i < s->npass; i++)
    if (s->passed)
      s->passed[i] = MP_BOOT_FD + 1 + (mp_plat_handle)i; /* where served_child puts them */
  return 0;
}

int mp__served_status(int fd, int *status) {
  int32_t st = 0;
  if (read_exact(fd, &st, sizeof st) != 0)
    return 1;
  *status = st;
  return 0;
}

int mp__served_signal(int fd, int sig) {
  char b = sig == SIGKILL ? 'K' : 'T';
  ssize_t r;
  while ((r = send(fd, &b, 1, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return r == 1 || errno == EPIPE || errno == ECONNRESET ? 0 : errno;
}

/* ---- the server -------------------------------------------------------------------------- */

typedef struct served {
  pid_t pid;
  int fd;  /* the request socket: reports and signal requests; -1 once the client let go */
  int die; /* dies with its client */
} served;

static struct {
  served *v;
  size_t n, cap;
  struct pollfd *p;
  int sig[2]; /* SIGCHLD's self-pipe */
  pid_t self;
  int64_t client;
  void (*child_fn)(int64_t client, int64_t boot);
} srv;

pid_t mp__served_by;

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  (void)!write(srv.sig[1], "c", 1);
  errno = saved;
}

/* In the child: stdio at 0..2, the bootstrap at MP_BOOT_FD, the passed handles after it,
 * then (portable builds, die-with-parent) the server's lifeline; nothing else stays open.
 * Sources are first copied above every source and target, so that no dup2 overwrites one
 * still to be copied. */
static void place_fds(const fs_header *h, const int *fds, int life, int *life_at) {
  int src[FS_MAX_FDS + 1], dst[FS_MAX_FDS + 1], n = 0, k = FS_FIXED;
  for (int i = 0; i < 3; i++)
    if (h->stdio & (1u << i))
      src[n] = fds[k++], dst[n++] = i;
  src[n] = fds[FS_FD_BOOT], dst[n++] = MP_BOOT_FD;
  for (int i = 0; i < h->npass; i++)
    src[n] = fds[k++], dst[n++] = MP_BOOT_FD + 1 + i;
  int top = MP_BOOT_FD + 1 + h->npass;
  *life_at = -1;
  if (life >= 0)
    src[n] = life, dst[n++] = *life_at = top++;
  int base = top;
  for (int i = 0; i < n; i++)
    if (src[i] >= base)
      base = src[i] + 1;
  int bad = 0;
  for (int i = 0; i < n && !bad; i++)
    bad = (src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, base)) < 0;
  for (int i = 0; i < n && !bad; i++)
    bad = dup2(src[i], dst[i]) < 0; /* inheritable in place until the target seals it */
  if (bad) {
    perror("multiproc: fork server child: placing its handles");
    _exit(127);
  }
  for (int i = 0; i < 3; i++)
    if (!(h->stdio & (1u << i)))
      close(i);
  if (life >= top) /* the server's own copy, unless a target took its number */
    close(life);
  mp__close_from(top, 0, NULL, 0);
  if (*life_at >= 0)
    fcntl(*life_at, F_SETFD, FD_CLOEXEC);
}

/* The forked child: takes its place and runs the bootstrap (core). Never returns. */
static void served_child(const fs_header *h, const int *fds, int life) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGCHLD, &dfl, NULL);
  if (fchdir(fds[FS_FD_CWD]) != 0) {
    perror("multiproc: fork server child: fchdir");
    _exit(127);
  }
  int life_at = -1;
  place_fds(h, fds, life, &life_at);
  if (h->flags & MP_CHILD_DIE_WITH_PARENT)
    mp__die_with_parent(srv.self, life_at);
  pthread_sigmask(SIG_SETMASK, &h->mask, NULL);
  mp__served_by = srv.self;
  srv.child_fn(srv.client, MP_BOOT_FD);
  _exit(127);
}

/* Reads a whole request from req (it is all there: see the top). 0 or MP_EPROTO. */
static int read_request(int req, fs_header *h, int *fds, size_t *n) {
  char buf[sizeof *h];
  size_t got = 0;
  *n = 0;
  while (got < sizeof buf) {
    ssize_t r = recv_with_fds(req, buf + got, sizeof buf - got, fds, n, FS_MAX_FDS);
    if (r <= 0)
      return mp_set_error(MP_EPROTO, "fork server: an incomplete request");
    got += (size_t)r;
  }
  memcpy(h, buf, sizeof buf);
  size_t want = h->nfds <= FS_MAX_FDS ? h->nfds : FS_MAX_FDS;
  for (int groups = 0; *n < want && groups < FS_MAX_FDS / FS_PER_MSG + 1; groups++) {
    char b;
    if (recv_with_fds(req, &b, 1, fds, n, FS_MAX_FDS) != 1)
      return mp_set_error(MP_EPROTO, "fork server: an incomplete request");
  }
  return mp__forkserver_check_request(buf, sizeof buf, *n);
}

static int reply(int fd, const void *v, size_t len) {
  ssize_t r;
  while ((r = send(fd, v, len, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return r == (ssize_t)len ? 0 : -1;
}

static int add_served(pid_t pid, int fd, int die) {
  if (srv.n == srv.cap) {
    size_t cap = srv.cap ? srv.cap * 2 : 16;
    served *v = realloc(srv.v, cap * sizeof *v);
    struct pollfd *p = realloc(srv.p, (cap + 2) * sizeof *p);
    if (v)
      srv.v = v;
    if (p)
      srv.p = p;
    if (v == NULL || p == NULL)
      return -1;
    srv.cap = cap;
  }
  srv.v[srv.n++] = (served){pid, fd, die};
  return 0;
}

static void serve_request(int req, int life) {
  fs_header h;
  int fds[FS_MAX_FDS];
  size_t n = 0;
  int64_t answer;
  if (read_request(req, &h, fds, &n) != 0) {
    answer = -EPROTO;
    reply(req, &answer, sizeof answer);
    close_all(fds, n);
    close(req);
    return;
  }
  pid_t pid = fork();
  if (pid == 0)
    served_child(&h, fds, (h.flags & MP_CHILD_DIE_WITH_PARENT) ? life : -1);
  int e = errno;
  close_all(fds, n);
  answer = pid > 0 ? (int64_t)pid : -(int64_t)e;
  if (pid < 0 || add_served(pid, req, h.flags & MP_CHILD_DIE_WITH_PARENT) != 0) {
    if (pid > 0) { /* no room to track it: it must not run untracked */
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      answer = -ENOMEM;
    }
    reply(req, &answer, sizeof answer);
    close(req);
    return;
  }
  if (reply(req, &answer, sizeof answer) != 0) { /* the client gave up waiting */
    kill(pid, SIGKILL);
    close(req);
    srv.v[srv.n - 1].fd = -1;
  }
}

/* Reports and forgets every served child that has exited. */
static void reap(void) {
  size_t w = 0;
  for (size_t i = 0; i < srv.n; i++) {
    served *s = &srv.v[i];
    int st = 0;
    pid_t r;
    while ((r = waitpid(s->pid, &st, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r == 0) {
      srv.v[w++] = *s;
      continue;
    }
    if (s->fd >= 0) { /* r < 0: reaped elsewhere (the preload ignored SIGCHLD): no status */
      int32_t st32 = st;
      if (r == s->pid)
        reply(s->fd, &st32, sizeof st32);
      close(s->fd);
    }
  }
  srv.n = w;
}

/* A signal request, or the client letting go of its child (it died or exec'd). */
static void from_client(served *s) {
  char buf[16];
  ssize_t r;
  while ((r = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT)) < 0 && errno == EINTR) {
  }
  if (r < 0 && errno == EAGAIN)
    return;
  for (ssize_t i = 0; i < r; i++)
    if (buf[i] == 'T' || buf[i] == 'K')
      kill(s->pid, buf[i] == 'K' ? SIGKILL : SIGTERM); /* not reaped yet: still its pid */
  if (r <= 0) {
    if (s->die)
      kill(s->pid, SIGKILL);
    close(s->fd);
    s->fd = -1;
  }
}

/* The client is gone: what must die with it dies, the rest is left to init. */
static void finish(void) {
  for (size_t i = 0; i < srv.n; i++)
    if (srv.v[i].die)
      kill(srv.v[i].pid, SIGKILL);
  _exit(0);
}

static int setup(void) {
  if (pipe2(srv.sig, O_CLOEXEC | O_NONBLOCK) != 0)
    return mp__os_error("fork server: pipe2");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&sa.sa_mask);
  if ((srv.p = malloc(2 * sizeof *srv.p)) == NULL)
    return mp_set_error(MP_ENOMEM, "fork server: out of memory");
  return sigaction(SIGCHLD, &sa, NULL) == 0 ? 0 : mp__os_error("fork server: sigaction(SIGCHLD)");
}

int mp_plat_forkserver_serve(mp_plat_handle ctl, int64_t client,
                             void (*child_fn)(int64_t client, int64_t boot)) {
  srv.self = getpid();
  srv.client = client;
  srv.child_fn = child_fn;
  int life = -1;
#if !MP_LINUX
  if ((life = mp__lifeline_read_end()) < 0) /* its children's, watched by each of them */
    return life;
#endif
  int rc = setup();
  if (rc)
    return rc;
  for (;;) {
    srv.p[0] = (struct pollfd){(int)ctl, POLLIN, 0};
    srv.p[1] = (struct pollfd){srv.sig[0], POLLIN, 0};
    for (size_t i = 0; i < srv.n; i++)
      srv.p[2 + i] = (struct pollfd){srv.v[i].fd, POLLIN, 0}; /* -1: ignored by poll */
    size_t watched = srv.n;
    if (poll(srv.p, (nfds_t)(2 + watched), -1) < 0)
      continue; /* EINTR: SIGCHLD */
    for (size_t i = 0; i < watched; i++)
      if (srv.p[2 + i].revents && srv.v[i].fd >= 0)
        from_client(&srv.v[i]);
    char drain[64];
    int exited = 0;
    while (read(srv.sig[0], drain, sizeof drain) > 0)
      exited = 1;
    if (exited)
      reap();
    if (srv.p[0].revents) {
      char b;
      int fds[4];
      size_t n = 0;
      ssize_t r = recv_with_fds((int)ctl, &b, 1, fds, &n, 4);
      if (r == 0 || (r < 0 && r != -EAGAIN && r != -EPROTO))
        finish();
      if (r == 1 && n == 1)
        serve_request(fds[0], life);
      else
        close_all(fds, n);
    }
  }
}
