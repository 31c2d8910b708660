/* Fuzzes the distributed pool's decoders of bytes that came through Redis (redis_pool.h):
 * a task as a worker reads it (its head, then its input values) and an answer as the
 * master reads it ('R' results checked whole then read item by item, 'F' failures).
 *
 * Input: a selector byte (even: a task, odd: an answer), then the bytes as they lie in
 * Redis. A function reference is only parsed, never resolved. The property: any input
 * fails cleanly or decodes, with no crash, leak or read beyond the input. */
#include <stdint.h>
#include <stdlib.h>

#include "pool_wire.h"
#include "redis_pool.h"
#include "value.h"

static void task(const uint8_t *data, size_t size) {
  mp__reader r = {data, size, 0};
  mp__rp_task t;
  if (mp__rp_read_task(&r, &t) < 0)
    return;
  for (uint32_t i = 0; i < t.n; i++) {
    mp_value *v = NULL;
    size_t used = 0;
    if (mp__value_decode_prefix(r.p, r.left, &v, &used) < 0)
      return;
    mp__get_bytes(&r, used);
    mp_value_free(v);
  }
}

static void answer(const uint8_t *data, size_t size) {
  mp__rp_answer a;
  if (mp__rp_read_answer(data, size, &a) < 0 || a.kind != MP__RP_RESULT)
    return;
  char msg[512];
  mp__value_arena arena;
  mp__value_arena_init(&arena, a.n);
  for (uint32_t i = 0; i < a.n; i++) {
    mp_value *v = NULL;
    mp__pw_read_item(&a.items, &arena, &v, msg, sizeof msg);
    mp__value_free_in(&arena, v);
  }
  mp__value_arena_done(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  if (data[0] % 2 == 0)
    task(data + 1, size - 1);
  else
    answer(data + 1, size - 1);
  return 0;
}
