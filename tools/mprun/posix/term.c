/* The terminal on POSIX: isatty and TIOCGWINSZ. Terminals here understand ESC [ K, and a
 * forced bar written to a file or pipe carries the same bytes. */
#include <sys/ioctl.h>
#include <unistd.h>

#include "../sys.h"

int sys_isatty(int stream) { return isatty(stream) == 1; }

int sys_term_width(int stream) {
  struct winsize ws;
  if (ioctl(stream, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 0;
}

int sys_term_prepare(int stream) {
  (void)stream;
  return 1;
}
