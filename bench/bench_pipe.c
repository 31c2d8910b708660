/* Pipe round trips: a 64-byte message to a child that echoes it, through multiproc's Pipe,
 * a raw socketpair with the same framing (a 4-byte big-endian length and the body in one
 * write) and Python's multiprocessing.Pipe. Every reply is checked against what was sent.
 * The echo child starts before the clock does. A Windows build measures the multiproc Pipe
 * alone (information: no targets there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#ifdef _WIN32
#  include <windows.h>
#  define PINGS 500 /* a round trip costs ~1 ms under Wine */
#else
#  include <errno.h>
#  include <sys/socket.h>
#  include <sys/wait.h>
#  include <unistd.h>
#  define PINGS 20000
#endif
#define MSG 64
#define STR(x) #x
#define XSTR(x) STR(x)

static int echo(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 1;
  for (;;) {
    void *buf = NULL;
    size_t len = 0;
    if (mp_conn_recv(c, &buf, &len, MP_FOREVER) != 0)
      return 0; /* the parent closed its end: done */
    int rc = mp_conn_send(c, buf, len);
    mp_free(buf);
    if (rc)
      return 1;
  }
}

static void fill(unsigned char *msg, int i) {
  memset(msg, i & 0xff, MSG);
  memcpy(msg, &i, sizeof i);
}

/* Microseconds per round trip over an mp_pipe to an echoing child. */
static double mp_rtt_us(void *ctx) {
  (void)ctx;
  mp_conn *a = NULL, *b = NULL;
  mp_args *args = NULL;
  mp_process *p = NULL;
  if (mp_pipe(&a, &b, 1) || mp_args_create(&args) || mp_args_add_conn(args, b) ||
      bench_start_child(&p, echo, args)) {
    double r = bench_fail("set-up failed: %s", mp_last_error());
    mp_conn_free(a), mp_conn_free(b), mp_args_free(args), mp_process_free(p);
    return r;
  }
  mp_conn_free(b);
  mp_args_free(args);
  int timeout = bench_remaining_ms();
  unsigned char msg[MSG];
  double t0 = bench_now_us(), us = -1;
  int i;
  for (i = 0; i < PINGS; i++) {
    fill(msg, i);
    void *buf = NULL;
    size_t len = 0;
    int rc = mp_conn_send(a, msg, MSG);
    if (rc == 0)
      rc = mp_conn_recv(a, &buf, &len, timeout);
    int same = rc == 0 && len == MSG && memcmp(buf, msg, MSG) == 0;
    mp_free(buf);
    if (!same) {
      bench_fail("round trip %d: %s", i, rc ? mp_last_error() : "the echo differs");
      break;
    }
  }
  if (i == PINGS)
    us = (bench_now_us() - t0) / PINGS;
  mp_conn_free(a); /* the child reads EOF and exits */
  if (mp_process_join(p, bench_remaining_ms()) != 0) {
    mp_process_kill(p);
    us = us < 0 ? us : bench_fail("the echo child did not exit");
  }
  mp_process_free(p);
  return us;
}

#ifndef _WIN32
static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n); /* bounded by SO_RCVTIMEO */
    if (r <= 0) {
      if (r < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int raw_recv(int fd, unsigned char *body) {
  unsigned char h[4];
  if (read_full(fd, h, 4))
    return -1;
  uint32_t n = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
  return n == MSG && read_full(fd, body, MSG) == 0 ? 0 : -1;
}

static int raw_send(int fd, const unsigned char *body) {
  unsigned char f[4 + MSG] = {0, 0, 0, MSG};
  memcpy(f + 4, body, MSG);
  return write(fd, f, sizeof f) == (ssize_t)sizeof f ? 0 : -1;
}

static double raw_rtt_us(void *ctx) {
  (void)ctx;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return bench_fail("socketpair failed");
  bench_bound_reads(sv[0]); /* a timeout on the socket: no extra system call per read */
  pid_t pid = bench_fork();
  if (pid == 0) {
    close(sv[0]);
    unsigned char body[MSG];
    while (raw_recv(sv[1], body) == 0 && raw_send(sv[1], body) == 0) {
    }
    _exit(0);
  }
  close(sv[1]);
  unsigned char msg[MSG], got[MSG];
  double t0 = bench_now_us(), us = -1;
  int i;
  for (i = 0; i < PINGS; i++) {
    fill(msg, i);
    if (raw_send(sv[0], msg) || raw_recv(sv[0], got) || memcmp(got, msg, MSG) != 0) {
      bench_fail("round trip %d failed or differs", i);
      break;
    }
  }
  if (i == PINGS)
    us = (bench_now_us() - t0) / PINGS;
  close(sv[0]);
  bench_waitpid(pid);
  return us;
}
#endif

#ifdef _WIN32
/* The floor on Windows: two anonymous pipes to a child (this executable, "--echo <in>
 * <out>") that inherits exactly those two handles, the same framing by hand. */
static int io_full(HANDLE h, void *buf, DWORD n, int writing) {
  for (DWORD done = 0, k = 0; done < n; done += k)
    if (!(writing ? WriteFile(h, (char *)buf + done, n - done, &k, NULL)
                  : ReadFile(h, (char *)buf + done, n - done, &k, NULL)) ||
        k == 0)
      return -1;
  return 0;
}

static int raw_echo_child(HANDLE in, HANDLE out) {
  unsigned char f[4 + MSG];
  while (io_full(in, f, sizeof f, 0) == 0 && io_full(out, f, sizeof f, 1) == 0) {
  }
  return 0;
}

static double raw_rtt_us(void *ctx) {
  (void)ctx;
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
  HANDLE to_r, to_w, from_r, from_w;
  if (!CreatePipe(&to_r, &to_w, &sa, 0) || !CreatePipe(&from_r, &from_w, &sa, 0))
    return bench_fail("CreatePipe failed: error %lu", GetLastError());
  SetHandleInformation(to_w, HANDLE_FLAG_INHERIT, 0);
  SetHandleInformation(from_r, HANDLE_FLAG_INHERIT, 0);
  wchar_t self[4096], cmd[4300];
  GetModuleFileNameW(NULL, self, 4096);
  _snwprintf(cmd, 4300, L"\"%ls\" --echo %llu %llu", self, (unsigned long long)(uintptr_t)to_r,
             (unsigned long long)(uintptr_t)from_w);
  /* Only these two handles reach the child. */
  HANDLE list[2] = {to_r, from_w};
  SIZE_T size = 0;
  InitializeProcThreadAttributeList(NULL, 1, 0, &size);
  LPPROC_THREAD_ATTRIBUTE_LIST attrs = malloc(size);
  STARTUPINFOEXW si;
  memset(&si, 0, sizeof si);
  si.StartupInfo.cb = sizeof si;
  si.lpAttributeList = attrs;
  PROCESS_INFORMATION pi;
  BOOL ok = attrs && InitializeProcThreadAttributeList(attrs, 1, 0, &size) &&
            UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, list,
                                      sizeof list, NULL, NULL) &&
            CreateProcessW(self, cmd, NULL, NULL, TRUE, EXTENDED_STARTUPINFO_PRESENT, NULL, NULL,
                           &si.StartupInfo, &pi);
  if (attrs)
    DeleteProcThreadAttributeList(attrs);
  free(attrs);
  CloseHandle(to_r);
  CloseHandle(from_w);
  if (!ok) {
    CloseHandle(to_w), CloseHandle(from_r);
    return bench_fail("CreateProcessW failed: error %lu", GetLastError());
  }
  unsigned char f[4 + MSG] = {0, 0, 0, MSG}, got[4 + MSG];
  double t0 = bench_now_us(), us = -1;
  int i;
  for (i = 0; i < PINGS; i++) {
    fill(f + 4, i);
    if (io_full(to_w, f, sizeof f, 1) || io_full(from_r, got, sizeof got, 0) ||
        memcmp(got, f, sizeof f) != 0) {
      bench_fail("round trip %d failed or differs", i);
      break;
    }
  }
  if (i == PINGS)
    us = (bench_now_us() - t0) / PINGS;
  CloseHandle(to_w); /* the child reads end of file and exits */
  if (WaitForSingleObject(pi.hProcess, (DWORD)bench_remaining_ms()) != WAIT_OBJECT_0)
    TerminateProcess(pi.hProcess, 1);
  CloseHandle(from_r);
  CloseHandle(pi.hProcess);
  CloseHandle(pi.hThread);
  return us;
}
#endif

int main(int argc, char **argv) {
#ifdef _WIN32
  if (argc == 4 && strcmp(argv[1], "--echo") == 0)
    return raw_echo_child((HANDLE)(uintptr_t)strtoull(argv[2], NULL, 10),
                          (HANDLE)(uintptr_t)strtoull(argv[3], NULL, 10));
#endif
  mp_init(&argc, &argv);
  bench_init("pipe", argc, argv);
  bench_case *rtt = bench_case_new("pipe", "round trip, " XSTR(MSG) " B", "us", 0);
  bench_peer(rtt, "multiproc Pipe", mp_rtt_us, NULL);
#ifdef _WIN32
  bench_peer(rtt, "raw anonymous pipes, same framing", raw_rtt_us, NULL);
#else
  bench_peer(rtt, "raw socketpair, same framing", raw_rtt_us, NULL);
#endif
  bench_python_peer(rtt, "Python multiprocessing.Pipe", "bench_pipe.py",
                    "rtt " XSTR(PINGS) " " XSTR(MSG));
  bench_case_run(rtt);
  bench_target("pipe_rtt_vs_raw_socketpair", rtt, "multiproc Pipe", "raw socketpair, same framing",
               "<=", 1.2);
  bench_target("pipe_rtt_vs_python_pipe", rtt, "multiproc Pipe", "Python multiprocessing.Pipe",
               "<=", 1.0);
  return bench_finish();
}
