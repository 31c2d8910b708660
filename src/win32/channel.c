/* Win32 backend: channels over overlapped named pipes (byte mode, framed by the core like
 * Python's socket connections). A pair is one pipe instance with a unique random name,
 * FILE_FLAG_FIRST_PIPE_INSTANCE (so nobody can have created it first),
 * PIPE_REJECT_REMOTE_CLIENTS and a DACL that admits only the current user; the client end
 * is opened at once, so the name is never connectable by anyone else. */
#include <winsock2.h>
#include <windows.h>

#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "chan.h"
#include "wide.h"

#define PIPE_BUFSIZE 65536
#define MAX_IO ((DWORD)1 << 30)     /* one ReadFile/WriteFile moves at most 1 GiB */
#define SOCKET_IO ((size_t)1 << 20) /* send() on a socket moves at most 1 MiB */

static int chan_new(mp_plat_chan **c, HANDLE h, int dirs) {
  mp_plat_chan *ch = calloc(1, sizeof *ch);
  if (ch == NULL) {
    CloseHandle(h);
    return mp_set_error(MP_ENOMEM, "out of memory allocating a channel");
  }
  ch->h = h;
  ch->dirs = dirs;
  /* Manual-reset events, one per kind of operation, so a reader, a writer and a waiter
   * never share an OVERLAPPED. */
  ch->rd_event = CreateEventW(NULL, TRUE, FALSE, NULL);
  ch->wr_event = CreateEventW(NULL, TRUE, FALSE, NULL);
  ch->wait_event = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (!ch->rd_event || !ch->wr_event || !ch->wait_event) {
    int rc = mp__os_error("CreateEventW");
    mp_plat_chan_close(ch);
    return rc;
  }
  *c = ch;
  return 0;
}

/* \\.\pipe\multiproc-<pid>-<counter>-<64 random bits in hex>. */
static int make_name(wchar_t *name, size_t size) {
  static volatile LONG counter;
  unsigned char rnd[8];
  int rc = mp_plat_random_bytes(rnd, sizeof rnd);
  if (rc < 0)
    return rc;
  unsigned long long parts[3] = {GetCurrentProcessId(),
                                 (unsigned long long)InterlockedIncrement(&counter), 0};
  for (int i = 0; i < 8; i++)
    parts[2] = (parts[2] << 8) | rnd[i];
  const wchar_t *prefix = L"\\\\.\\pipe\\multiproc";
  size_t n = wcslen(prefix);
  memcpy(name, prefix, n * sizeof *name);
  for (int p = 0; p < 3; p++) {
    name[n++] = L'-';
    for (int shift = 60; shift >= 0; shift -= 4) {
      unsigned d = (unsigned)(parts[p] >> shift) & 0xf;
      if (d == 0 && shift > 0 && p < 2 && name[n - 1] == L'-')
        continue; /* no leading zeros for the pid and counter */
      name[n++] = (wchar_t)(d < 10 ? L'0' + d : L'a' + d - 10);
    }
  }
  name[n] = L'\0';
  (void)size;
  return 0;
}

static HANDLE create_server(const wchar_t *name, int duplex, SECURITY_ATTRIBUTES *sa) {
  DWORD open_mode = (duplex ? PIPE_ACCESS_DUPLEX : PIPE_ACCESS_INBOUND) | FILE_FLAG_OVERLAPPED |
                    FILE_FLAG_FIRST_PIPE_INSTANCE;
  DWORD pipe_mode = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;
  return CreateNamedPipeW(name, open_mode, pipe_mode, 1, PIPE_BUFSIZE, PIPE_BUFSIZE, 0, sa);
}

/* Completes the server side's connection (the client is already there). */
static int connect_server(HANDLE server, HANDLE event) {
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  ov.hEvent = event;
  if (ConnectNamedPipe(server, &ov))
    return 0;
  DWORD err = GetLastError(), n;
  if (err == ERROR_PIPE_CONNECTED)
    return 0;
  if (err == ERROR_IO_PENDING && GetOverlappedResult(server, &ov, &n, TRUE))
    return 0;
  return mp__os_error("ConnectNamedPipe");
}

static int open_pair(HANDLE *server, HANDLE *client, int duplex) {
  wchar_t name[96];
  mp__user_sd sd;
  int rc = make_name(name, sizeof name / sizeof name[0]);
  if (rc == 0)
    rc = mp__user_sd_init(&sd);
  if (rc < 0)
    return rc;
  *server = create_server(name, duplex, &sd.sa);
  mp__user_sd_free(&sd);
  if (*server == INVALID_HANDLE_VALUE)
    return mp__os_error("CreateNamedPipeW");
  /* SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS: the server end may not impersonate us. */
  DWORD access = duplex ? GENERIC_READ | GENERIC_WRITE : GENERIC_WRITE;
  *client = CreateFileW(name, access, 0, NULL, OPEN_EXISTING,
                        FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS, NULL);
  if (*client == INVALID_HANDLE_VALUE) {
    rc = mp__os_error("CreateFileW on the new pipe");
    CloseHandle(*server);
    return rc;
  }
  return 0;
}

int mp_plat_chan_pair(mp_plat_chan **a, mp_plat_chan **b, int duplex) {
  HANDLE server, client;
  int rc = open_pair(&server, &client, duplex);
  if (rc < 0)
    return rc;
  int rw = MP_CHAN_READ | MP_CHAN_WRITE;
  rc = chan_new(a, server, duplex ? rw : MP_CHAN_READ);
  if (rc < 0) {
    CloseHandle(client);
    return rc;
  }
  mp_plat_chan *cb = NULL;
  rc = chan_new(&cb, client, duplex ? rw : MP_CHAN_WRITE);
  if (rc == 0)
    rc = connect_server(server, (*a)->rd_event);
  if (rc < 0) {
    mp_plat_chan_close(*a);
    mp_plat_chan_close(cb);
    *a = NULL;
    return rc;
  }
  *b = cb;
  return 0;
}

int mp_plat_chan_wrap(mp_plat_chan **c, mp_plat_handle h, int dirs) {
  return chan_new(c, (HANDLE)h, dirs);
}

mp_plat_handle mp_plat_chan_handle(const mp_plat_chan *c) { return (mp_plat_handle)c->h; }

int mp_plat_chan_dirs(const mp_plat_chan *c) { return c->dirs; }

int mp__win_peer_gone(DWORD err) {
  return err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED || err == ERROR_NO_DATA ||
         /* the same for a TCP socket (win32/socket.c) */
         err == ERROR_NETNAME_DELETED || err == ERROR_CONNECTION_ABORTED ||
         err == ERROR_GRACEFUL_DISCONNECT || err == WSAECONNRESET || err == WSAECONNABORTED ||
         err == WSAESHUTDOWN;
}

/* Starts an overlapped read and waits up to timeout_ms; on timeout the read is cancelled,
 * and bytes that arrived while cancelling are still returned. */
static int read_once(mp_plat_chan *c, void *buf, DWORD len, int timeout_ms, DWORD *got) {
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  ov.hEvent = c->rd_event;
  DWORD w = WAIT_OBJECT_0;
  BOOL ok = ReadFile(c->h, buf, len, NULL, &ov);
  DWORD err = ok ? 0 : GetLastError();
  if (ok || err == ERROR_IO_PENDING || err == ERROR_MORE_DATA) {
    if (err == ERROR_IO_PENDING) {
      w = WaitForSingleObject(ov.hEvent, timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
      if (w != WAIT_OBJECT_0)
        CancelIoEx(c->h, &ov);
    }
    ok = GetOverlappedResult(c->h, &ov, got, TRUE);
    err = ok ? 0 : GetLastError();
  }
  /* ERROR_MORE_DATA: a message-mode peer; the rest of its message comes with the next read. */
  if (ok || err == ERROR_MORE_DATA)
    return 0;
  if (err == ERROR_OPERATION_ABORTED && w == WAIT_TIMEOUT)
    return mp_set_error(MP_ETIMEDOUT, "no data within %d ms", timeout_ms);
  if (mp__win_peer_gone(err))
    return mp__os_error_code(MP_EEOF, (long)err, "the peer closed the pipe");
  return mp__os_error_code(MP_EOS, (long)err, "ReadFile");
}

int mp_plat_chan_read(mp_plat_chan *c, void *buf, size_t len, int timeout_ms, size_t *nread) {
  DWORD want = len > MAX_IO ? MAX_IO : (DWORD)len, got = 0;
  for (;;) {
    int rc = read_once(c, buf, want, timeout_ms, &got);
    if (rc < 0)
      return rc;
    if (got == 0 && c->is_socket)
      return mp_set_error(MP_EEOF, "the peer closed the connection");
    /* A zero-byte completion (a message-mode peer's empty message) carries nothing. */
    if (got > 0)
      break;
  }
  *nread = got;
  return 0;
}

/* Windows waits inside its one overlapped read either way: nothing to save here. */
int mp_plat_chan_read_awaited(mp_plat_chan *c, void *buf, size_t len, int timeout_ms,
                              size_t *nread) {
  return mp_plat_chan_read(c, buf, len, timeout_ms, nread);
}

/* A socket is written with blocking send(): Wine 8 stalls overlapped WriteFile calls on a
 * socket once a few MiB are in flight (a 4 MiB message never arrived; see
 * docs/platform-notes.md). mp_plat_tcp_shutdown still ends a send that waits. */
static int send_all(mp_plat_chan *c, const char *p, size_t len) {
  while (len > 0) {
    int n = send((SOCKET)c->h, p, len > SOCKET_IO ? (int)SOCKET_IO : (int)len, 0);
    if (n <= 0) {
      int err = WSAGetLastError();
      if (mp__win_peer_gone((DWORD)err) || err == WSAENOTSOCK || err == WSAEINTR)
        return mp__os_error_code(MP_EBROKEN, err,
                                 "the peer closed the connection before the message was sent");
      return mp__os_error_code(MP_EOS, err, "send");
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int write_all(mp_plat_chan *c, const char *p, size_t len) {
  if (c->is_socket)
    return send_all(c, p, len);
  while (len > 0) {
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = c->wr_event;
    DWORD n = len > MAX_IO ? MAX_IO : (DWORD)len, done = 0;
    BOOL ok = WriteFile(c->h, p, n, NULL, &ov);
    if (ok || GetLastError() == ERROR_IO_PENDING)
      ok = GetOverlappedResult(c->h, &ov, &done, TRUE);
    if (!ok) {
      DWORD err = GetLastError();
      if (mp__win_peer_gone(err))
        return mp__os_error_code(MP_EBROKEN, (long)err,
                                 "the peer closed the pipe before the message was written");
      return mp__os_error_code(MP_EOS, (long)err, "WriteFile");
    }
    p += done;
    len -= done;
  }
  return 0;
}

#define SMALL_WRITE 16384

int mp_plat_chan_write(mp_plat_chan *c, const mp_plat_buf *bufs, size_t nbufs) {
  size_t total = 0;
  for (size_t i = 0; i < nbufs; i++)
    total += bufs[i].len;
  /* A small message goes out in one WriteFile so the reader wakes once. */
  if (nbufs > 1 && total <= SMALL_WRITE) {
    char joined[SMALL_WRITE];
    size_t off = 0;
    for (size_t i = 0; i < nbufs; i++) {
      if (bufs[i].len > 0)
        memcpy(joined + off, bufs[i].base, bufs[i].len);
      off += bufs[i].len;
    }
    return write_all(c, joined, total);
  }
  for (size_t i = 0; i < nbufs; i++) {
    int rc = write_all(c, bufs[i].base, bufs[i].len);
    if (rc < 0)
      return rc;
  }
  return 0;
}

void mp_plat_chan_close(mp_plat_chan *c) {
  if (c == NULL)
    return;
  if (c->h && c->h != INVALID_HANDLE_VALUE && c->is_socket)
    mp__win_sock_close(c->h);
  else if (c->h && c->h != INVALID_HANDLE_VALUE)
    CloseHandle(c->h);
  if (c->rd_event)
    CloseHandle(c->rd_event);
  if (c->wr_event)
    CloseHandle(c->wr_event);
  if (c->wait_event)
    CloseHandle(c->wait_event);
  free(c);
}

/* ---- handing handles to a running process ----------------------------------------------- */

int mp_plat_handle_passing(void) { return MP_PLAT_PASS_INTO; }

int mp_plat_chan_write_along(mp_plat_chan *c, const mp_plat_buf *bufs, size_t nbufs,
                             const mp_plat_handle *h, size_t nh) {
  (void)h;
  if (nh > 0)
    return mp_set_error(MP_EINVAL, "Windows hands handles into the peer process "
                                   "(mp_plat_handle_into), not along a pipe's data");
  return mp_plat_chan_write(c, bufs, nbufs);
}

int mp_plat_chan_read_along(mp_plat_chan *c, void *buf, size_t len, int timeout_ms, size_t *nread,
                            mp_plat_handle *h, size_t max, size_t *nh) {
  (void)h, (void)max;
  *nh = 0;
  return mp_plat_chan_read(c, buf, len, timeout_ms, nread);
}

int mp_plat_handle_into(mp_plat_handle proc, mp_plat_handle h, mp_plat_handle *theirs) {
  HANDLE out = NULL;
  if (DuplicateHandle(GetCurrentProcess(), (HANDLE)h, (HANDLE)proc, &out, 0, FALSE,
                      DUPLICATE_SAME_ACCESS)) {
    *theirs = (mp_plat_handle)out;
    return 0;
  }
  /* A process that is exiting has no handle table left: Windows and Wine refuse with
   * STATUS_PROCESS_IS_TERMINATING, which reads as ERROR_ACCESS_DENIED, and Windows does so
   * before the process's handle is signalled. Our process handles come from CreateProcess
   * (full access), so that refusal means the process is going. */
  DWORD err = GetLastError();
  if (err == ERROR_ACCESS_DENIED || WaitForSingleObject((HANDLE)proc, 0) == WAIT_OBJECT_0)
    return mp_set_error(MP_EBROKEN, "DuplicateHandle(into a running process): the process has "
                                    "exited or is exiting");
  return mp__os_error_code(MP_EOS, (long)err, "DuplicateHandle(into a running process)");
}
