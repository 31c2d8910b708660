/* The terminal on Windows: a console handle (GetConsoleMode succeeds), its window width,
 * and the UTF-8 output code page, which is given back at exit because it belongs to the
 * console, not to us. The bar erases with carriage returns and spaces there, which every
 * console understands: Wine 8's console accepts ENABLE_VIRTUAL_TERMINAL_PROCESSING but
 * prints ESC [ K as text (see docs/platform-notes.md). */
#include <windows.h>

#include <stdlib.h>

#include "../sys.h"

static HANDLE std_handle(int stream) {
  return GetStdHandle(stream == 1 ? STD_OUTPUT_HANDLE : STD_ERROR_HANDLE);
}

int sys_isatty(int stream) {
  DWORD mode;
  HANDLE h = std_handle(stream);
  return h != NULL && h != INVALID_HANDLE_VALUE && GetConsoleMode(h, &mode) != 0;
}

int sys_term_width(int stream) {
  CONSOLE_SCREEN_BUFFER_INFO info;
  if (!GetConsoleScreenBufferInfo(std_handle(stream), &info))
    return 0;
  return info.srWindow.Right - info.srWindow.Left + 1;
}

static UINT saved_cp;

static void restore_cp(void) {
  if (saved_cp != 0)
    SetConsoleOutputCP(saved_cp);
}

int sys_term_prepare(int stream) {
  if (!sys_isatty(stream))
    return 1; /* a file or pipe gets the same bytes as on POSIX */
  if (saved_cp == 0 && (saved_cp = GetConsoleOutputCP()) != CP_UTF8) {
    SetConsoleOutputCP(CP_UTF8);
    atexit(restore_cp);
  }
  return 0;
}
