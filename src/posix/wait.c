/* POSIX backend: waiting on several channels and process handles with one poll(2). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#include "../platform.h"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int poll_until(struct pollfd *fds, size_t n, int timeout_ms) {
  int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  for (;;) {
    int left = -1;
    if (timeout_ms >= 0) {
      int64_t l = deadline - now_ms();
      left = l < 0 ? 0 : (int)l;
    }
    int rc = poll(fds, (nfds_t)n, left);
    if (rc >= 0 || errno != EINTR)
      return rc < 0 ? mp__os_error("poll") : rc;
  }
}

int mp_plat_wait_many(mp_plat_waitsrc *srcs, size_t n, int timeout_ms) {
  struct pollfd *fds = calloc(n ? n : 1, sizeof *fds);
  if (fds == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory waiting on %llu objects", (unsigned long long)n);
  for (size_t i = 0; i < n; i++) {
    fds[i].fd = srcs[i].chan ? (int)mp_plat_chan_handle(srcs[i].chan) : (int)srcs[i].proc;
    fds[i].events = POLLIN;
    srcs[i].ready = 0;
  }
  int rc = poll_until(fds, n, timeout_ms);
  if (rc == 0)
    rc = mp_set_error(MP_ETIMEDOUT, "no object became ready within %d ms", timeout_ms);
  for (size_t i = 0; rc > 0 && i < n; i++) {
    if (fds[i].revents & POLLNVAL) {
      rc = mp_set_error(MP_EINVAL, "object %d has an invalid handle (%d)", (int)i, fds[i].fd);
      break;
    }
    /* POLLHUP/POLLERR: the peer is gone, which a receive reports, so it counts as ready. */
    srcs[i].ready = (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
  }
  free(fds);
  return rc;
}
