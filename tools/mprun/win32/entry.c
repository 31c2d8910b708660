/* The entry point on Windows: wmain, so that the C runtime splits the command line as
 * UTF-16 (the ANSI argv of main loses what the code page cannot represent) by the same
 * rules every program uses; mprun works in UTF-8. Built with -municode by mingw-w64. Not
 * shell32's CommandLineToArgvW: shell32 would load USER32 into mprun. */
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>

#include "../mprun.h"

int wmain(int argc, wchar_t **wargv) {
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  for (int i = 0; argv != NULL && i < argc; i++) {
    int n = WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, NULL, 0, NULL, NULL);
    if (n <= 0 || (argv[i] = malloc((size_t)n)) == NULL) {
      fputs("mprun: cannot read the command line\n", stderr);
      return MPRUN_EXIT_ERROR;
    }
    WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, argv[i], n, NULL, NULL);
  }
  if (argv == NULL) {
    fputs("mprun: out of memory\n", stderr);
    return MPRUN_EXIT_ERROR;
  }
  /* The strings live as long as the process: mprun borrows them for its options. */
  return mprun_main(argc, argv);
}
