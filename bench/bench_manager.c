/* The network manager beside Python's: put+get round trips per second through a remote
 * queue on loopback (each round trip is two requests and two replies over TCP), for the
 * four pairs C client/C server, Python/Python, Python client/C server and C client/Python
 * server. Medians of 3 runs. The target: C with C at least 5x Python with Python. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"
#include "multiproc.h"

#define RUNS 3
#define C_TRIPS 20000
#define PY_TRIPS 4000
#define KEY "bench"

/* The floor: a bare TCP request/reply of 32 bytes between two threads over loopback, twice
 * per round trip as put+get is. What any manager on this machine pays in the kernel. */
static int echo_fd;

static void *echo(void *arg) {
  (void)arg;
  char b[32];
  while (recv(echo_fd, b, sizeof b, MSG_WAITALL) == (ssize_t)sizeof b)
    send(echo_fd, b, sizeof b, 0);
  return NULL;
}

static double floor_rate(void) {
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) ||
      getsockname(l, (struct sockaddr *)&sa, &len))
    return -1;
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr *)&sa, sizeof sa) || (echo_fd = accept(l, NULL, NULL)) < 0)
    return -1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(echo_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  pthread_t t;
  pthread_create(&t, NULL, echo, NULL);
  char b[32] = {0};
  double v[RUNS];
  for (int r = 0; r < RUNS; r++) {
    uint64_t start = mp_monotonic_ns();
    for (int i = 0; i < 2 * C_TRIPS; i++) {
      send(c, b, sizeof b, 0);
      recv(c, b, sizeof b, MSG_WAITALL);
    }
    v[r] = C_TRIPS / ((double)(mp_monotonic_ns() - start) / 1e9);
  }
  close(c);
  pthread_join(t, NULL);
  close(echo_fd);
  close(l);
  return bench_median(v, RUNS);
}

static double c_client_rate(const char *addr) {
  mp_manager_client *c;
  mp_queue *q;
  if (mp_manager_connect(&c, addr, KEY) != 0 || mp_manager_queue(c, "get_task_queue", &q) != 0) {
    fprintf(stderr, "bench_manager: %s\n", mp_last_error());
    exit(1);
  }
  double best[RUNS];
  for (int r = 0; r < RUNS; r++) {
    uint64_t start = mp_monotonic_ns();
    for (int i = 0; i < C_TRIPS; i++) {
      mp_value *v = mp_value_int(i), *got = NULL;
      int64_t back = -1;
      if (mp_queue_put_value(q, v, MP_FOREVER) != 0 || mp_queue_get_value(q, &got, MP_FOREVER) ||
          mp_value_get_int(got, &back) || back != i) {
        fprintf(stderr, "bench_manager: round trip %d failed: %s\n", i, mp_last_error());
        exit(1);
      }
      mp_value_free(v);
      mp_value_free(got);
    }
    best[r] = C_TRIPS / ((double)(mp_monotonic_ns() - start) / 1e9);
  }
  mp_queue_free(q);
  mp_manager_disconnect(c);
  return bench_median(best, RUNS);
}

static double python_rate(const char *args) {
  double v[RUNS];
  for (int r = 0; r < RUNS; r++) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 %s/bench_manager.py %s", MP_BENCH_DIR, args);
    char *out = bench_capture(cmd);
    v[r] = out ? bench_field(out, "rps") : -1;
    free(out);
  }
  return bench_median(v, RUNS);
}

/* A server in a child process (as Python's manager.start() runs one): argv prints
 * "serving on host:port" and serves until its stdin closes. */
typedef struct server {
  mp_popen *p;
  char addr[128];
} server;

static int server_start(server *s, const char *const *argv) {
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
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
  return 0;
}

static void server_stop(server *s) {
  mp_popen_close_stdin(s->p);
  mp_popen_wait(s->p, 30000);
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
  char script[400], args[300];
  snprintf(script, sizeof script, "%s/bench_manager.py", MP_BENCH_DIR);
  const char *c_server[] = {argv[0], "serve", NULL};
  const char *py_server[] = {"python3", script, "server", KEY, NULL};
  server cs, ps;
  if (server_start(&cs, c_server) != 0 || server_start(&ps, py_server) != 0) {
    fprintf(stderr, "bench_manager: a server did not start\n");
    return 1;
  }
  double cc = c_client_rate(cs.addr);
  snprintf(args, sizeof args, "client %s %s %d", cs.addr, KEY, PY_TRIPS);
  double pc = python_rate(args);
  snprintf(args, sizeof args, "pp %d", PY_TRIPS);
  double pp = python_rate(args);
  double cp = c_client_rate(ps.addr);
  server_stop(&cs);
  server_stop(&ps);
  double fl = floor_rate();
  printf("%-40s %14s\n", "put+get round trips per second", "loopback");
  printf("%-40s %14.0f\n", "C client    -> C server (multiproc)", cc);
  printf("%-40s %14.0f\n", "Python client -> Python server", pp);
  printf("%-40s %14.0f\n", "Python client -> C server", pc);
  printf("%-40s %14.0f\n", "C client    -> Python server", cp);
  printf("%-40s %14.0f\n", "bare TCP, 2 request/replies (floor)", fl);
  if (pp <= 0 || pc <= 0 || cp <= 0) {
    printf("a Python peer did not run\n");
    return 1;
  }
  bench_target("manager_c_vs_python", cc / pp, ">=", 5.0);
  /* The protocol needs four messages per put+get; the kernel's wake-ups bound the rate. */
  bench_target("manager_c_vs_bare_tcp_floor", cc / fl, ">=", 0.5);
  /* A C server should not slow a Python client down, nor a C client a Python server. */
  bench_target("manager_python_client_c_server_vs_python", pc / pp, ">=", 1.0);
  bench_target("manager_c_client_python_server_vs_python", cp / pp, ">=", 1.0);
  return 0;
}
