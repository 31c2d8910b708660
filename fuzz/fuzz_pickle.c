/* Fuzzes the pickle reader (mp__pickle_read), which reads every manager request after
 * authentication and every reply a client gets. The property: any input either is refused
 * cleanly or reads as a value that the writer pickles and the reader reads back to the
 * same pickle (no crash, no leak, no unbounded allocation, nothing altered). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mp__pk_exc exc;
  mp__pk_read io = {0};
  io.exc = &exc;
  /* Budgets from 256 to 65,536 values, so that inputs of a few KiB reach every limit of
   * both passes, and iterations stay fast. */
  io.max_values = 256 + (size % 256) * 256;
  mp_value *v = NULL;
  if (mp__pickle_read(data, size, &io, &v) != 0)
    return 0;
  void *buf = NULL, *buf2 = NULL;
  size_t len = 0, len2 = 0;
  mp_value *again = NULL;
  if (mp__pickle_dumps(v, &buf, &len) != 0)
    abort(); /* whatever reads must write again */
  io.exc = NULL;
  if (mp__pickle_read(buf, len, &io, &again) != 0)
    abort();
  /* NaN differs from itself: compare the second writing rather than the values. */
  if (mp__pickle_dumps(again, &buf2, &len2) != 0 || len2 != len || memcmp(buf, buf2, len) != 0)
    abort();
  free(buf);
  free(buf2);
  mp_value_free(again);
  mp_value_free(v);
  return 0;
}
