/* Pool.map over Redis: the squares of 0..99, computed by workers started separately, on
 * this machine or any other that reaches the Redis server, printed in order.
 *
 *   pool_redis [URL [NAME]]            the master: maps square over 0..99 and prints
 *   pool_redis --worker [URL [NAME]]   a worker (start as many as you like, any time);
 *                                      it leaves after 5 s without a task
 * URL defaults to redis://127.0.0.1:6379/0, NAME to "squares". A worker is this same
 * program: square travels as a reference into it, checked against its build. */
#include <multiproc.h>
#include <stdio.h>
#include <string.h>

static int square(const mp_value *in, mp_value **out) {
  int64_t x = 0;
  if (mp_value_get_int(in, &x) < 0)
    return -1; /* the message mp_value_get_int set travels back */
  *out = mp_value_int(x * x);
  return *out ? 0 : -1;
}

static int worker(const char *url, const char *name) {
  mp_worker_opts o = {0};
  o.idle_exit_ms = 5000;
  printf("worker %lld serving %s\n", (long long)mp_getpid(), name);
  fflush(stdout);
  if (mp_worker_serve(url, name, &o) < 0) {
    fprintf(stderr, "pool_redis --worker: %s\n", mp_last_error());
    return 1;
  }
  printf("worker exit.\n");
  return 0;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  int as_worker = argc > 1 && strcmp(argv[1], "--worker") == 0;
  const char *url = argc > 1 + as_worker ? argv[1 + as_worker] : "redis://127.0.0.1:6379/0";
  const char *name = argc > 2 + as_worker ? argv[2 + as_worker] : "squares";
  if (as_worker)
    return worker(url, name);
  mp_value *in[100], *out[100];
  for (int i = 0; i < 100; i++)
    in[i] = mp_value_int(i);
  mp_pool *pool;
  if (mp_redis_pool_create(&pool, url, name, NULL) < 0 ||
      mp_pool_map(pool, square, (const mp_value *const *)in, 100, 0, out) < 0) {
    fprintf(stderr, "pool_redis: %s\n", mp_last_error());
    return 1;
  }
  printf("[");
  for (int i = 0; i < 100; i++) {
    int64_t v = 0;
    mp_value_get_int(out[i], &v);
    printf("%s%lld", i ? ", " : "", (long long)v);
    mp_value_free(out[i]);
    mp_value_free(in[i]);
  }
  printf("]\n");
  mp_pool_close(pool);
  mp_pool_join(pool, MP_FOREVER);
  mp_pool_free(pool);
  return 0;
}
