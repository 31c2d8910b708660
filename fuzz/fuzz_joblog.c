/* Fuzzes mprun's job log reader (--resume, --resume-failed), which reads a file that another
 * program may have written (an earlier mprun, GNU parallel, a hand edit). The properties:
 * any input is read without a crash, a leak or unbounded memory, and a job the log lists
 * as successful is also a job it lists. */
#include <stdint.h>
#include <stdlib.h>

#include "mprun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  joblog *all = NULL, *failed = NULL;
  if (joblog_parse(&all, data, size, RESUME_ALL) != 0)
    return 0;
  if (joblog_parse(&failed, data, size, RESUME_FAILED) != 0)
    abort(); /* the same text cannot fail the second time */
  for (uint64_t seq = 0; seq < 200; seq++)
    if (joblog_skip(failed, seq) && !joblog_skip(all, seq))
      abort();
  joblog_close(all);
  joblog_close(failed);
  return 0;
}
