/* POSIX backend: channels. A duplex pair is socketpair(AF_UNIX, SOCK_STREAM); a one-way
 * pair is pipe(2). Descriptors stay blocking because a child may inherit them (O_NONBLOCK
 * lives in the shared open file description); timed reads poll first instead. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../platform.h"

struct mp_plat_chan {
  int fd;
  int dirs;
  int is_socket; /* sockets get MSG_NOSIGNAL; pipes need SIGPIPE blocked around writes */
};

static int chan_new(mp_plat_chan **c, int fd, int dirs, int is_socket) {
  mp_plat_chan *ch = malloc(sizeof *ch);
  if (ch == NULL) {
    close(fd);
    return mp_set_error(MP_ENOMEM, "out of memory allocating a channel");
  }
  ch->fd = fd;
  ch->dirs = dirs;
  ch->is_socket = is_socket;
  *c = ch;
  return 0;
}

static int make_fds(int fds[2], int duplex) {
  if (duplex) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
      return mp__os_error("socketpair(AF_UNIX, SOCK_STREAM)");
    return 0;
  }
  if (pipe2(fds, O_CLOEXEC) < 0)
    return mp__os_error("pipe2");
  return 0;
}

int mp_plat_chan_pair(mp_plat_chan **a, mp_plat_chan **b, int duplex) {
  int fds[2];
  int rc = make_fds(fds, duplex);
  if (rc < 0)
    return rc;
  int rw = MP_CHAN_READ | MP_CHAN_WRITE;
  rc = chan_new(a, fds[0], duplex ? rw : MP_CHAN_READ, duplex);
  if (rc < 0) {
    close(fds[1]);
    return rc;
  }
  rc = chan_new(b, fds[1], duplex ? rw : MP_CHAN_WRITE, duplex);
  if (rc < 0) {
    mp_plat_chan_close(*a);
    *a = NULL;
  }
  return rc;
}

int mp_plat_chan_wrap(mp_plat_chan **c, mp_plat_handle h, int dirs) {
  struct stat st;
  if (fstat((int)h, &st) < 0) {
    int rc = mp__os_error("fstat on a handed-down channel");
    mp_plat_handle_close(h);
    return rc;
  }
  return chan_new(c, (int)h, dirs, S_ISSOCK(st.st_mode));
}

mp_plat_handle mp_plat_chan_handle(const mp_plat_chan *c) { return (mp_plat_handle)c->fd; }

int mp_plat_chan_dirs(const mp_plat_chan *c) { return c->dirs; }

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is readable (or its peer is gone). 0 ready, MP_ETIMEDOUT, or MP_EOS. */
static int wait_readable(int fd, int timeout_ms) {
  int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int left = timeout_ms < 0 ? -1 : (int)(deadline - now_ms());
    if (timeout_ms >= 0 && left < 0)
      left = 0;
    int n = poll(&p, 1, left);
    if (n > 0)
      return 0;
    if (n == 0)
      return mp_set_error(MP_ETIMEDOUT, "no data within %d ms", timeout_ms);
    if (errno != EINTR)
      return mp__os_error("poll");
  }
}

/* Where a read puts the descriptors that came with the data (read_along), or NULL. */
typedef struct fd_sink {
  mp_plat_handle *h;
  size_t max, n;
  int lost; /* more came than fit, or the kernel cut them off: they were closed */
} fd_sink;

/* Takes the SCM_RIGHTS descriptors of a received message into sink (closing what does not
 * fit), so that none leaks. */
static void take_fds(struct msghdr *m, fd_sink *sink) {
  if (m->msg_flags & MSG_CTRUNC)
    sink->lost = 1;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof fd, sizeof fd);
      if (sink->n < sink->max)
        sink->h[sink->n++] = (mp_plat_handle)fd;
      else {
        close(fd);
        sink->lost = 1;
      }
    }
  }
}

static ssize_t read_once(mp_plat_chan *c, void *buf, size_t len, int dontwait, fd_sink *sink) {
  if (!c->is_socket)
    return read(c->fd, buf, len);
  int flags = dontwait ? MSG_DONTWAIT : 0;
  if (sink == NULL)
    return recv(c->fd, buf, len, flags); /* descriptors sent anyway are closed by the kernel */
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(MP_PLAT_MAX_PASS * sizeof(int))];
  } control;
  struct iovec iov = {buf, len};
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control.bytes;
  m.msg_controllen = sizeof control.bytes;
#ifdef MSG_CMSG_CLOEXEC
  flags |= MSG_CMSG_CLOEXEC; /* not POSIX.1-2017; where absent, set below (racy with fork) */
#endif
  ssize_t n = recvmsg(c->fd, &m, flags);
  if (n >= 0) {
    size_t first = sink->n;
    take_fds(&m, sink);
    for (size_t i = first; i < sink->n; i++)
      fcntl((int)sink->h[i], F_SETFD, FD_CLOEXEC);
  }
  return n;
}

static int chan_read(mp_plat_chan *c, void *buf, size_t len, int timeout_ms, size_t *nread,
                     fd_sink *sink, int poll_first) {
  /* A socket can try a non-blocking read first and skip poll when data is already there,
   * unless the caller expects to wait (then the failed read would be wasted). */
  int polled = !(timeout_ms < 0 || (c->is_socket && !poll_first));
  if (polled) {
    int rc = wait_readable(c->fd, timeout_ms);
    if (rc < 0)
      return rc;
  }
  for (;;) {
    ssize_t n = read_once(c, buf, len, timeout_ms >= 0 && !polled, sink);
    if (n > 0) {
      *nread = (size_t)n;
      return 0;
    }
    if (n == 0)
      return mp_set_error(MP_EEOF, "the peer closed the connection");
    if (errno == EINTR)
      continue;
    if (errno == ECONNRESET)
      return mp_set_error(MP_EEOF, "the peer reset the connection (it exited or closed "
                                   "with data unread)");
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && !polled) {
      int rc = wait_readable(c->fd, timeout_ms);
      if (rc < 0)
        return rc;
      polled = 1;
      continue;
    }
    return mp__os_error(c->is_socket ? "recv" : "read");
  }
}

/* Writes to a pipe with SIGPIPE blocked in this thread only, then discards a SIGPIPE the
 * write raised, so the process's signal dispositions are never touched. */
static ssize_t pipe_writev(int fd, const struct iovec *iov, int n) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  sigset_t pending;
  sigpending(&pending);
  int was_pending = sigismember(&pending, SIGPIPE);
  ssize_t w = writev(fd, iov, n);
  int err = errno;
  if (w < 0 && err == EPIPE && !was_pending) {
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = err;
  return w;
}

int mp_plat_chan_read(mp_plat_chan *c, void *buf, size_t len, int timeout_ms, size_t *nread) {
  return chan_read(c, buf, len, timeout_ms, nread, NULL, 0);
}

int mp_plat_chan_read_awaited(mp_plat_chan *c, void *buf, size_t len, int timeout_ms,
                              size_t *nread) {
  return chan_read(c, buf, len, timeout_ms, nread, NULL, 1);
}

int mp_plat_chan_read_along(mp_plat_chan *c, void *buf, size_t len, int timeout_ms, size_t *nread,
                            mp_plat_handle *h, size_t max, size_t *nh) {
  fd_sink sink = {h, max, 0, 0};
  int rc = chan_read(c, buf, len, timeout_ms, nread, &sink, 0);
  *nh = sink.n;
  if (sink.lost || rc < 0) {
    for (size_t i = 0; i < sink.n; i++)
      close((int)h[i]);
    *nh = 0;
    if (rc == 0)
      rc = mp_set_error(MP_EPROTO, "descriptors sent along the data were lost (more than %d)",
                        MP_PLAT_MAX_PASS);
  }
  return rc;
}

/* Sends with fds attached (the first call of a write only: they ride on its first byte). */
static ssize_t write_once(mp_plat_chan *c, struct iovec *iov, int n, const int *fds, size_t nfds) {
  if (!c->is_socket)
    return pipe_writev(c->fd, iov, n);
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(MP_PLAT_MAX_PASS * sizeof(int))];
  } control;
  struct msghdr m = {0};
  m.msg_iov = iov;
  m.msg_iovlen = (size_t)n;
  if (nfds > 0) {
    memset(&control, 0, sizeof control);
    m.msg_control = control.bytes;
    m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
  }
  return sendmsg(c->fd, &m, MSG_NOSIGNAL);
}

#define MP_MAX_IOV 8

static int chan_write(mp_plat_chan *c, const mp_plat_buf *bufs, size_t nbufs, const int *fds,
                      size_t nfds) {
  struct iovec iov[MP_MAX_IOV];
  int n = 0;
  if (nbufs > MP_MAX_IOV)
    return mp_set_error(MP_EINVAL, "too many pieces in one write (%llu)",
                        (unsigned long long)nbufs);
  for (size_t i = 0; i < nbufs; i++) {
    if (bufs[i].len == 0)
      continue;
    iov[n].iov_base = (void *)bufs[i].base;
    iov[n].iov_len = bufs[i].len;
    n++;
  }
  struct iovec *cur = iov;
  while (n > 0) {
    ssize_t w = write_once(c, cur, n, fds, nfds);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EPIPE || errno == ECONNRESET)
        return mp_set_error(MP_EBROKEN, "the peer closed the connection before the message "
                                        "was written");
      return mp__os_error(c->is_socket ? "sendmsg" : "writev");
    }
    nfds = 0; /* sent with the first byte */
    /* Advance past what was written: a short write leaves the rest for the next call. */
    size_t done = (size_t)w;
    while (n > 0 && done >= cur->iov_len) {
      done -= cur->iov_len;
      cur++;
      n--;
    }
    if (n > 0) {
      cur->iov_base = (char *)cur->iov_base + done;
      cur->iov_len -= done;
    }
  }
  return 0;
}

int mp_plat_chan_write(mp_plat_chan *c, const mp_plat_buf *bufs, size_t nbufs) {
  return chan_write(c, bufs, nbufs, NULL, 0);
}

int mp_plat_chan_write_along(mp_plat_chan *c, const mp_plat_buf *bufs, size_t nbufs,
                             const mp_plat_handle *h, size_t nh) {
  int fds[MP_PLAT_MAX_PASS];
  if (nh > MP_PLAT_MAX_PASS)
    return mp_set_error(MP_EINVAL, "at most %d handles go along one write", MP_PLAT_MAX_PASS);
  if (nh > 0 && !c->is_socket)
    return mp_set_error(MP_EINVAL, "handles can only go along a duplex channel (a socket)");
  size_t total = 0;
  for (size_t i = 0; i < nbufs; i++)
    total += bufs[i].len;
  if (nh > 0 && total == 0)
    return mp_set_error(MP_EINVAL, "handles need at least one byte to go along");
  for (size_t i = 0; i < nh; i++)
    fds[i] = (int)h[i];
  return chan_write(c, bufs, nbufs, fds, nh);
}

int mp_plat_handle_passing(void) { return MP_PLAT_PASS_ALONG; }

int mp_plat_handle_into(mp_plat_handle proc, mp_plat_handle h, mp_plat_handle *theirs) {
  (void)proc, (void)h, (void)theirs;
  return mp_set_error(MP_ENOTSUP, "POSIX passes handles along the data (SCM_RIGHTS)");
}

void mp_plat_chan_close(mp_plat_chan *c) {
  if (c == NULL)
    return;
  mp_plat_handle_close((mp_plat_handle)c->fd);
  free(c);
}
