/* Fuzzes the Windows command-line builder (src/win32/cmdline.c), pure code that runs on any
 * system. The input is a list of arguments separated by NUL bytes. The properties, checked
 * against independent models of the readers (tests/helpers/cmdline_model.c):
 *   - the MSVCRT / CommandLineToArgvW split of the built command line gives back exactly the
 *     arguments;
 *   - a batch-file line is refused only for CR or LF, and otherwise lets no metacharacter
 *     out of quotes and no %VAR% expand in cmd.exe. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmdline_model.h"
#include "multiproc.h"
#include "win32/cmdline.h"

#define MAX_ARGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *copy = malloc(size + 1);
  if (copy == NULL)
    return 0;
  memcpy(copy, data, size);
  copy[size] = '\0';
  const char *argv[MAX_ARGS + 2] = {"prog"};
  int n = 1, crlf = 0;
  for (size_t off = 0; off <= size && n <= MAX_ARGS; n++) {
    argv[n] = copy + off;
    crlf |= strpbrk(argv[n], "\r\n") != NULL;
    off += strlen(copy + off) + 1;
  }
  argv[n] = NULL;
  char *line = NULL;
  if (mp__cmdline_build(argv, &line) != 0)
    abort(); /* "prog" holds no quote: every argument list has a command line */
  char **back = mp_model_msvcrt_split(line);
  for (int i = 0; i < n; i++)
    if (back == NULL || back[i] == NULL || strcmp(back[i], argv[i]) != 0)
      abort();
  if (back[n] != NULL)
    abort();
  mp_model_free(back);
  free(line);
  line = NULL;
  int rc = mp__cmdline_build_batch("C:\\dir\\x.bat", argv, &line);
  if ((rc != 0) != crlf || (rc == 0 && mp_model_cmd_breakout(line) != 0))
    abort();
  free(line);
  free(copy);
  return 0;
}
