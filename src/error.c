/* Error codes, their names, and the thread-local detailed message. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "compat.h"
#include "platform.h"

#define MP_ERRMSG_MAX 512

/* Per-thread so that concurrent failures never overwrite each other's explanation. */
static MP_THREAD_LOCAL char tls_message[MP_ERRMSG_MAX];
static MP_THREAD_LOCAL int tls_code;

const char *mp_strerror(int code) {
  switch (code) {
  case MP_OK: return "success";
  case MP_EINVAL: return "invalid argument";
  case MP_ENOMEM: return "out of memory";
  case MP_ETIMEDOUT: return "timed out";
  case MP_EEMPTY: return "empty";
  case MP_EFULL: return "full";
  case MP_EEOF: return "end of file: the peer closed its end";
  case MP_EPROTO: return "protocol error: malformed or oversized data";
  case MP_EAUTH: return "authentication failed";
  case MP_EBROKEN: return "broken: the peer died mid-operation";
  case MP_ECHILD: return "child process failed to start";
  case MP_EOS: return "operating system error";
  case MP_ECLOSED: return "object is closed";
  case MP_ECANCELED: return "cancelled";
  case MP_ETASK: return "task failed";
  case MP_EWORKER: return "worker died";
  case MP_EDEADLK: return "would deadlock";
  case MP_EOWNERDEAD: return "previous owner died";
  case MP_ENOTSUP: return "not supported";
  case MP_ESTATE: return "wrong state for this call";
  case MP_ENOENT: return "not found";
  case MP_EPERM: return "permission denied";
  case MP_EBUSY: return "busy";
  case MP_EEXIT: return "command returned a non-zero exit status";
  default: return "unknown error";
  }
}

const char *mp_last_error(void) { return tls_message; }

int mp_last_error_code(void) { return tls_code; }

int mp_set_error(int code, const char *fmt, ...) {
  tls_code = code;
  if (fmt == NULL) {
    snprintf(tls_message, sizeof tls_message, "%s", mp_strerror(code));
    return code;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_message, sizeof tls_message, fmt, ap);
  va_end(ap);
  return code;
}

int mp__os_error_code(int code, long os_err, const char *what) {
  char text[256];
  mp_plat_os_error_text(os_err, text, sizeof text);
  return mp_set_error(code, "%s: %s (OS error %ld)", what, text, os_err);
}

int mp__os_error(const char *what) {
  return mp__os_error_code(MP_EOS, mp_plat_last_os_error(), what);
}

void mp_free(void *ptr) { free(ptr); }
