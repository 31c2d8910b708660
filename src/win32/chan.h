/* The Win32 channel's layout, shared by win32/channel.c and win32/wait.c (which issues the
 * zero-byte reads that tell a waiter a pipe has data). */
#ifndef MP_WIN32_CHAN_H
#define MP_WIN32_CHAN_H

#include <windows.h>

struct mp_plat_chan {
  HANDLE h;
  int dirs;
  HANDLE rd_event, wr_event, wait_event;
  OVERLAPPED wait_ov; /* the zero-byte read of a pending mp_plat_wait_many */
  int wait_armed;     /* wait_ov is in use by the current mp_plat_wait_many call */
  int wait_ready;     /* its outcome, for the same channel listed twice */
  int is_socket;      /* a TCP socket (win32/socket.c): closesocket, and 0 bytes read is EOF */
};

/* Closes a socket handle (win32/socket.c). */
void mp__win_sock_close(HANDLE h);

/* Returns 1 for the errors that mean the other end of a pipe is closed. */
int mp__win_peer_gone(DWORD err);

#endif
