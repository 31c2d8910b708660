/* Pool.map: the squares of 0..99, computed by four worker processes, printed in order.
 *
 *   with Pool(4) as p:
 *       print(p.map(square, range(100)))
 */
#include <multiproc.h>
#include <stdio.h>

static int square(const mp_value *in, mp_value **out) {
  int64_t x = 0;
  if (mp_value_get_int(in, &x) < 0)
    return -1; /* the message mp_value_get_int set travels back */
  *out = mp_value_int(x * x);
  return *out ? 0 : -1;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  mp_value *in[100], *out[100];
  for (int i = 0; i < 100; i++)
    in[i] = mp_value_int(i);
  mp_pool *pool;
  if (mp_pool_create(&pool, 4, NULL) < 0 ||
      mp_pool_map(pool, square, (const mp_value *const *)in, 100, 0, out) < 0) {
    fprintf(stderr, "pool_map: %s\n", mp_last_error());
    return 1;
  }
  printf("[");
  for (int i = 0; i < 100; i++) {
    int64_t v = 0;
    mp_value_get_int(out[i], &v);
    printf(i ? ", %lld" : "%lld", (long long)v);
    mp_value_free(out[i]);
    mp_value_free(in[i]);
  }
  printf("]\n");
  mp_pool_close(pool);
  mp_pool_join(pool, MP_FOREVER);
  mp_pool_free(pool);
  return 0;
}
