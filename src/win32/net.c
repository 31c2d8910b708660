/* Win32 backend: a socket library's writes. Windows has no SIGPIPE: a write to a closed
 * socket fails with WSAECONNRESET, which hiredis reports as an error. */
#include "../platform.h"

int mp_plat_sigpipe_hold(void) { return 0; }

void mp_plat_sigpipe_release(int token) { (void)token; }
