/* Fuzzes the fork server's request decoder (src/posix/forkserver.c), which the server applies
 * to the header a client wrote. The first byte is the number of descriptors that came with
 * it, the rest the header. Property: bad input fails cleanly with MP_EPROTO (no crash, no
 * wild read), and an accepted header announces exactly the descriptors that came. */
#include <stdint.h>
#include <stdlib.h>

#include "posix/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  int rc = mp__forkserver_check_request(data + 1, size - 1, data[0]);
  if (rc != 0 && rc != MP_EPROTO)
    abort();
  if (rc == 0 && data[0] < 2) /* the bootstrap and the working directory always travel */
    abort();
  return 0;
}
