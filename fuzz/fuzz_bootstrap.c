/* Fuzzes the spawn bootstrap's decoders (src/process.c), which a spawned child applies to
 * what it was given: the marker argument (first byte 'M') and the "call" message from the
 * parent (any other first byte). Property: bad input fails cleanly with MP_EPROTO (no crash,
 * no leak, no wild read), and an accepted marker is exactly three decimal numbers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  if (data[0] != 'M') {
    int rc = mp__boot_check_call(data + 1, size - 1);
    if (rc != 0 && rc != MP_EPROTO)
      abort();
    return 0;
  }
  char *arg = malloc(size);
  if (arg == NULL)
    return 0;
  memcpy(arg, data + 1, size - 1);
  arg[size - 1] = '\0';
  int64_t ppid = 0, handle = 0;
  int flags = 0;
  int rc = mp__boot_parse_marker(arg, &ppid, &handle, &flags);
  if (rc == 0) {
    char again[128];
    snprintf(again, sizeof again, "%s%lld:%lld:%d", MP_CHILD_MARKER, (long long)ppid,
             (long long)handle, flags);
    /* The same numbers, unless written with leading zeros. */
    if (ppid <= 0 || handle < 0 || flags < 0 || strlen(again) > strlen(arg))
      abort();
  } else if (rc != MP_EPROTO) {
    abort();
  }
  free(arg);
  return 0;
}
