/* Fuzzes the pool's decoders of messages from another process (pool_wire.h): what a worker
 * reads from its master ('T' task heads and their input values, 'A' argument-task heads,
 * 'D' function references) and what the master reads from a worker ('R' results: checked
 * whole, then item by item, as the master and a map's caller do).
 *
 * Input: the message as it travels (kind byte first). A function reference is only parsed:
 * finding the function would load whatever module the bytes name, which a real worker does
 * only for its own master. Argument lists have their own target (fuzz_args.c). The
 * property: any input fails cleanly or decodes, with no crash, leak or allocation beyond
 * the input's size; a result that passes the check always reads item by item. */
#include <stdint.h>
#include <stdlib.h>

#include "platform.h"
#include "pool_wire.h"
#include "target.h"
#include "value.h"

static void task(mp__reader *r) {
  uint32_t fnid, n;
  unsigned flags;
  if (mp__pw_read_task_head(r, &fnid, &flags, &n) < 0)
    return;
  for (uint32_t i = 0; i < n; i++) {
    mp_value *v = NULL;
    size_t used = 0;
    if (mp__value_decode_prefix(r->p, r->left, &v, &used) < 0)
      return;
    mp__get_bytes(r, used);
    mp_value_free(v);
  }
}

static void results(mp__reader *r) {
  uint32_t n = mp__get_u32(r);
  if (r->bad || mp__pw_check_results(*r, n) < 0)
    return;
  char msg[512];
  for (uint32_t i = 0; i < n; i++) {
    mp_value *v = NULL;
    mp__pw_read_item(r, NULL, &v, msg, sizeof msg);
    mp_value_free(v);
  }
  if (r->bad || r->left != 0)
    abort(); /* the check passed, so every item must have read exactly */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mp__reader r = {data, size, 0};
  unsigned kind = mp__get_u8(&r);
  uint32_t fnid;
  size_t nh;
  uint64_t theirs[256];
  mp_plat_target t;
  switch (kind) {
  case MP__PW_TASK: task(&r); break;
  case MP__PW_ARGS_TASK: mp__pw_read_args_head(&r, &fnid, &nh, theirs); break;
  case MP__PW_DEF:
    mp__get_u32(&r);
    mp__fnref_parse(&r, &t);
    break;
  case MP__PW_RESULT: results(&r); break;
  default: break;
  }
  return 0;
}
