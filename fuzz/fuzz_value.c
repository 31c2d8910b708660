/* Fuzzes mp_value_decode, the decoder of every typed message from another process. The
 * property: any input either fails cleanly or decodes to a value whose encoding decodes
 * back to an equal value (no crash, no leak, no unbounded allocation). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mp_value *v = NULL;
  if (mp_value_decode(data, size, &v) != 0)
    return 0;
  void *buf = NULL;
  size_t len = 0;
  if (mp_value_encode(v, &buf, &len) != 0)
    abort(); /* whatever decodes must encode again */
  mp_value *again = NULL;
  if (mp_value_decode(buf, len, &again) != 0)
    abort();
  /* NaN differs from itself; compare the encodings' second round instead of values. */
  void *buf2 = NULL;
  size_t len2 = 0;
  if (mp_value_encode(again, &buf2, &len2) != 0 || len2 != len || memcmp(buf, buf2, len) != 0)
    abort();
  mp_free(buf2);
  mp_free(buf);
  mp_value_free(again);
  mp_value_free(v);
  return 0;
}
