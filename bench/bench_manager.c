/* The network manager beside Python's: put+get round trips per second through a remote
 * queue on loopback (each round trip is two requests and two replies over TCP), for the
 * four pairs C client/C server, Python/Python, Python client/C server and C client/Python
 * server, and a bare TCP request/reply between two threads as the floor. The servers run
 * in child processes for the whole benchmark; every round trip checks the value it gets
 * back. The target: C with C at least 5x Python with Python. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

#define C_TRIPS 20000
#define PY_TRIPS "4000"
#define KEY "bench"
#define PYTHON "/usr/bin/python3"

/* ---- the floor: a bare 32-byte TCP request/reply, twice per round trip as put+get is -- */

static int echo_fd, floor_fd = -1;

static void *echo(void *arg) {
  (void)arg;
  char b[32];
  while (recv(echo_fd, b, sizeof b, MSG_WAITALL) == (ssize_t)sizeof b)
    send(echo_fd, b, sizeof b, 0);
  return NULL;
}

static int floor_open(pthread_t *t) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) ||
      getsockname(l, (struct sockaddr *)&sa, &len))
    return -1;
  floor_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(floor_fd, (struct sockaddr *)&sa, sizeof sa) ||
      (echo_fd = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
    return -1;
  close(l);
  setsockopt(floor_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(echo_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return pthread_create(t, NULL, echo, NULL) == 0 ? 0 : -1;
}

static double floor_rate(void *ctx) {
  (void)ctx;
  char b[32] = {0};
  bench_bound_reads(floor_fd);
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < 2 * C_TRIPS; i++) {
    memcpy(b, &i, sizeof i);
    int back = -1;
    if (send(floor_fd, b, sizeof b, 0) != (ssize_t)sizeof b ||
        recv(floor_fd, b, sizeof b, MSG_WAITALL) != (ssize_t)sizeof b ||
        (memcpy(&back, b, sizeof back), back != i))
      return bench_fail("echo %d failed", i);
  }
  return C_TRIPS / ((double)(mp_monotonic_ns() - start) / 1e9);
}

/* ---- a C client: C_TRIPS put+get pairs through a queue proxy -------------------------- */

static double c_client_rate(void *arg) {
  mp_queue *q = arg;
  int timeout = bench_remaining_ms();
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < C_TRIPS; i++) {
    mp_value *v = mp_value_int(i), *got = NULL;
    int64_t back = -1;
    int rc = mp_queue_put_value(q, v, timeout);
    if (rc == 0)
      rc = mp_queue_get_value(q, &got, timeout);
    if (rc == 0)
      rc = mp_value_get_int(got, &back);
    mp_value_free(v);
    mp_value_free(got);
    if (rc != 0 || back != i)
      return bench_fail("round trip %d: %s", i,
                        rc ? mp_last_error() : "a different value came back");
  }
  return C_TRIPS / ((double)(mp_monotonic_ns() - start) / 1e9);
}

/* ---- servers in child processes (as Python's manager.start() runs one) -------------- */

/* argv prints "serving on host:port" and serves until its stdin closes. */
typedef struct server {
  mp_popen *p;
  char addr[128];
  mp_manager_client *client;
  mp_queue *q;
} server;

static int server_start(server *s, const char *const *argv) {
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1; /* argv[0] may be a bare name found in PATH */
  o.std_in.mode = MP_STDIO_PIPE;
  o.std_out.mode = MP_STDIO_PIPE;
  if (mp_popen_create(&s->p, argv, &o) != 0)
    return -1;
  char line[256];
  size_t len = 0, n;
  while (!memchr(line, '\n', len) && len < sizeof line - 1 &&
         mp_popen_read(s->p, MP_STDOUT, line + len, sizeof line - 1 - len, &n, 30000) == 0)
    len += n;
  line[len] = '\0';
  char *at = strstr(line, "serving on ");
  if (at == NULL)
    return -1;
  at += strlen("serving on ");
  at[strcspn(at, "\r\n")] = '\0';
  snprintf(s->addr, sizeof s->addr, "%s", at);
  return mp_manager_connect(&s->client, s->addr, KEY) == 0 &&
                 mp_manager_queue(s->client, "get_task_queue", &s->q) == 0
             ? 0
             : -1;
}

static void server_stop(server *s) {
  mp_queue_free(s->q);
  if (s->client)
    mp_manager_disconnect(s->client);
  if (!s->p)
    return;
  mp_popen_close_stdin(s->p);
  if (mp_popen_wait(s->p, 30000) != 0)
    mp_popen_kill(s->p);
  mp_popen_free(s->p);
}

static mp_manager *served;

static void stop_on_eof(void *arg) {
  (void)arg;
  char b[64];
  while (fread(b, 1, sizeof b, stdin) > 0) {
  }
  mp_manager_shutdown(served);
}

/* "bench_manager serve": the C server's child process. */
static int serve(void) {
  mp_thread *t;
  if (mp_manager_create(&served, "127.0.0.1:0", KEY, NULL) != 0 ||
      mp_manager_register_queue(served, "get_task_queue", 0) != 0)
    return 1;
  printf("serving on %s\n", mp_manager_address(served));
  fflush(stdout);
  if (mp_thread_create(&t, stop_on_eof, NULL, "stdin") != 0)
    return 1;
  int rc = mp_manager_serve_forever(served);
  mp_thread_join(t, MP_FOREVER);
  mp_thread_free(t);
  mp_manager_free(served);
  return rc != 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "serve") == 0)
    return serve();
  mp_init(&argc, &argv);
  bench_init("manager", argc, argv);
  char script[400], args[300];
  snprintf(script, sizeof script, "%s/bench_manager.py", MP_BENCH_DIR);
  const char *c_server[] = {argv[0], "serve", NULL};
  const char *py_server[] = {PYTHON, script, "server", KEY, NULL};
  server cs = {0}, ps = {0};
  pthread_t echo_thread;
  if (server_start(&cs, c_server) != 0 || server_start(&ps, py_server) != 0 ||
      floor_open(&echo_thread) != 0) {
    fprintf(stderr, "bench_manager: a server did not start: %s\n", mp_last_error());
    server_stop(&cs);
    server_stop(&ps);
    return 2;
  }
  bench_case *c =
      bench_case_new("manager", "put+get through a remote queue, loopback", "round trips/s", 1);
  bench_peer(c, "multiproc C client -> C server", c_client_rate, cs.q);
  bench_python_peer(c, "Python client -> Python server", "bench_manager.py", "pp " PY_TRIPS);
  snprintf(args, sizeof args, "client %s %s %s", cs.addr, KEY, PY_TRIPS);
  bench_python_peer(c, "Python client -> multiproc C server", "bench_manager.py", args);
  bench_peer(c, "multiproc C client -> Python server", c_client_rate, ps.q);
  bench_peer(c, "bare TCP, 2 request/replies (floor)", floor_rate, NULL);
  bench_case_run(c);
  server_stop(&cs);
  server_stop(&ps);
  shutdown(floor_fd, SHUT_RDWR);
  pthread_join(echo_thread, NULL);
  close(floor_fd);
  close(echo_fd);

  const char *pp = "Python client -> Python server";
  bench_target("manager_c_vs_python", c, "multiproc C client -> C server", pp, ">=", 5.0);
  /* The protocol needs four messages per put+get; the kernel's wake-ups bound the rate. */
  bench_target("manager_c_vs_bare_tcp_floor", c, "multiproc C client -> C server",
               "bare TCP, 2 request/replies (floor)", ">=", 0.5);
  /* A C server serves a Python client faster than CPython's (issue 16: 1.5x), and a C
   * client does not slow a Python server down. */
  bench_target("manager_python_client_c_server_vs_python", c, "Python client -> multiproc C server",
               pp, ">=", 1.5);
  bench_target("manager_c_client_python_server_vs_python", c, "multiproc C client -> Python server",
               pp, ">=", 1.0);
  return bench_finish();
}
