/* Win32 backend: waiting on several pipes and processes. Each pipe gets an overlapped
 * zero-byte read, which completes when data arrives (or the peer goes) without consuming
 * anything, as in Python's multiprocessing.connection.wait and libuv; its event and the
 * process handles go to WaitForMultipleObjects. Beyond MAXIMUM_WAIT_OBJECTS (64), helper
 * threads each wait on a group of 63 handles plus a shared stop event and signal a shared
 * done event; the caller waits on that one event. Nothing polls. */
#include <windows.h>

#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "chan.h"

#define GROUP (MAXIMUM_WAIT_OBJECTS - 1)

/* Issues the zero-byte read. Returns 1 if the pipe is ready at once, 0 if the read is
 * pending (its event goes in the wait list), or an error. */
static int arm(mp_plat_chan *c) {
  static char dummy;
  memset(&c->wait_ov, 0, sizeof c->wait_ov);
  c->wait_ov.hEvent = c->wait_event;
  if (ReadFile(c->h, &dummy, 0, NULL, &c->wait_ov))
    return 1;
  DWORD err = GetLastError();
  if (err == ERROR_IO_PENDING)
    return 0;
  if (err == ERROR_MORE_DATA || mp__win_peer_gone(err))
    return 1;
  return mp__os_error_code(MP_EOS, (long)err, "ReadFile (zero bytes, for waiting)");
}

/* Ends a pending zero-byte read; returns 1 if it had completed (data or peer gone). */
static int disarm(mp_plat_chan *c) {
  DWORD n;
  if (!HasOverlappedIoCompleted(&c->wait_ov))
    CancelIoEx(c->h, &c->wait_ov);
  if (GetOverlappedResult(c->h, &c->wait_ov, &n, TRUE))
    return 1;
  DWORD err = GetLastError();
  return err != ERROR_OPERATION_ABORTED;
}

typedef struct group_wait {
  HANDLE handles[MAXIMUM_WAIT_OBJECTS]; /* [0] is the stop event */
  DWORD n;
  HANDLE done;
} group_wait;

static DWORD WINAPI group_main(LPVOID arg) {
  group_wait *g = arg;
  DWORD r = WaitForMultipleObjects(g->n, g->handles, FALSE, INFINITE);
  /* Readiness (or a failure the caller must see) wakes the caller; stop does not. */
  if (r != WAIT_OBJECT_0)
    SetEvent(g->done);
  return 0;
}

/* Waits for any of n > 63 handles with helper threads. 0 = something ready (or the
 * timeout: the caller checks every handle afterwards), or an error. */
static int wait_groups(HANDLE *h, size_t n, DWORD timeout) {
  size_t ngroups = (n + GROUP - 1) / GROUP;
  group_wait *g = calloc(ngroups, sizeof *g);
  HANDLE *threads = calloc(ngroups, sizeof *threads);
  HANDLE stop = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE done = CreateEventW(NULL, TRUE, FALSE, NULL);
  int rc = g && threads ? 0
                        : mp_set_error(MP_ENOMEM, "out of memory waiting on %llu handles",
                                       (unsigned long long)n);
  if (rc == 0 && (!stop || !done))
    rc = mp__os_error("CreateEventW");
  size_t started = 0;
  for (; rc == 0 && started < ngroups; started++) {
    group_wait *gw = &g[started];
    size_t first = started * GROUP, count = n - first < GROUP ? n - first : GROUP;
    gw->handles[0] = stop;
    memcpy(gw->handles + 1, h + first, count * sizeof *h);
    gw->n = (DWORD)count + 1;
    gw->done = done;
    threads[started] = CreateThread(NULL, 64 * 1024, group_main, gw, 0, NULL);
    if (threads[started] == NULL) {
      rc = mp__os_error("CreateThread (mp_wait helper)");
      break;
    }
  }
  if (rc == 0 && WaitForSingleObject(done, timeout) == WAIT_FAILED)
    rc = mp__os_error("WaitForSingleObject");
  if (stop)
    SetEvent(stop);
  for (size_t i = 0; i < started; i++) {
    WaitForSingleObject(threads[i], INFINITE);
    CloseHandle(threads[i]);
  }
  if (stop)
    CloseHandle(stop);
  if (done)
    CloseHandle(done);
  free(g);
  free(threads);
  return rc;
}

static int wait_handles(HANDLE *h, size_t n, int timeout_ms) {
  DWORD timeout = timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms;
  if (n > MAXIMUM_WAIT_OBJECTS)
    return wait_groups(h, n, timeout);
  if (n == 0)
    return 0;
  if (WaitForMultipleObjects((DWORD)n, h, FALSE, timeout) == WAIT_FAILED)
    return mp__os_error("WaitForMultipleObjects");
  return 0;
}

/* Arms every pipe (a pipe listed twice is armed once: armed[i] = 2 marks the repeat).
 * Returns 0 with *nh handles to wait on and *ready_now set if some source is ready. */
static int arm_all(mp_plat_waitsrc *srcs, size_t n, char *armed, HANDLE *h, size_t *nh,
                   int *ready_now) {
  for (size_t i = 0; i < n; i++) {
    mp_plat_chan *c = srcs[i].chan;
    srcs[i].ready = 0;
    if (c == NULL) {
      h[(*nh)++] = (HANDLE)srcs[i].proc;
      continue;
    }
    if (c->wait_armed) {
      armed[i] = 2;
      continue;
    }
    int rc = arm(c);
    if (rc < 0)
      return rc;
    if (rc == 1) {
      srcs[i].ready = 1;
      *ready_now = 1;
    } else {
      armed[i] = 1;
      c->wait_armed = 1;
      h[(*nh)++] = c->wait_event;
    }
  }
  return 0;
}

/* Ends every pending read and fills in the ready flags; returns how many are ready. */
static int collect(mp_plat_waitsrc *srcs, size_t n, const char *armed, int check_procs) {
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    if (armed[i] == 1) {
      srcs[i].chan->wait_ready = disarm(srcs[i].chan);
      srcs[i].chan->wait_armed = 0;
      srcs[i].ready = srcs[i].chan->wait_ready;
    } else if (srcs[i].chan == NULL && check_procs) {
      srcs[i].ready = WaitForSingleObject((HANDLE)srcs[i].proc, 0) == WAIT_OBJECT_0;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (armed[i] == 2)
      srcs[i].ready = srcs[i].chan->wait_ready;
    count += srcs[i].ready;
  }
  return count;
}

int mp_plat_wait_many(mp_plat_waitsrc *srcs, size_t n, int timeout_ms) {
  HANDLE *h = malloc((n ? n : 1) * sizeof *h);
  char *armed = calloc(n ? n : 1, 1);
  if (h == NULL || armed == NULL) {
    free(h);
    free(armed);
    return mp_set_error(MP_ENOMEM, "out of memory waiting on %llu objects", (unsigned long long)n);
  }
  size_t nh = 0;
  int ready_now = 0;
  int rc = arm_all(srcs, n, armed, h, &nh, &ready_now);
  /* Something is ready already: only collect what else is, without blocking. */
  if (rc == 0)
    rc = wait_handles(h, nh, ready_now ? 0 : timeout_ms);
  int count = collect(srcs, n, armed, rc == 0);
  free(h);
  free(armed);
  if (rc < 0)
    return rc;
  if (count == 0)
    return mp_set_error(MP_ETIMEDOUT, "no object became ready within %d ms", timeout_ms);
  return count;
}
