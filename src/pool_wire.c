/* The pool's result items (see pool_wire.h): what both ends write and read of them. */
#include <stdio.h>
#include <string.h>

#include "pool_wire.h"
#include "value.h"

#define FAIL_HEAD 4 /* a failure's payload: code (i32), then the message */

int mp__pw_read_task_head(mp__reader *r, uint32_t *fnid, unsigned *flags, uint32_t *n) {
  *fnid = mp__get_u32(r);
  *flags = mp__get_u8(r);
  *n = mp__get_u32(r);
  if (r->bad || *n > r->left || (*flags & ~(unsigned)MP__PW_STAR))
    return mp_set_error(MP_EPROTO, "pool worker: malformed task");
  return 0;
}

int mp__pw_read_args_head(mp__reader *r, uint32_t *fnid, size_t *nh, uint64_t *theirs) {
  *fnid = mp__get_u32(r);
  *nh = mp__get_u8(r);
  for (size_t i = 0; i < *nh; i++)
    theirs[i] = mp__get_u64(r);
  return r->bad ? mp_set_error(MP_EPROTO, "pool worker: malformed task") : 0;
}

int mp__pw_put_failure(mp__buf *b, int code, const char *msg) {
  size_t n = strlen(msg);
  if (n > 4096)
    n = 4096; /* a message, not a payload */
  int rc = mp__value_put_ext_head(b, MP__PW_EXT_FAIL, FAIL_HEAD + n);
  rc = rc ? rc : mp__buf_put_u32(b, (uint32_t)code);
  return rc ? rc : mp__buf_put(b, msg, n);
}

/* If r starts a failure: 1 with its code and message (borrowed), and r moved past it. */
static int failure(mp__reader *r, int *code, const char **msg, size_t *len) {
  unsigned c = r->left > 0 ? r->p[0] : 0;
  if (!((c >= 0xc7 && c <= 0xc9) || (c >= 0xd4 && c <= 0xd8)))
    return 0; /* not an extension: a value (most items; no need to parse its head) */
  int type = 0;
  const unsigned char *payload = NULL;
  size_t plen = 0, used = 0;
  int ext = mp__value_ext_head(r->p, r->left, &type, &payload, &plen, &used);
  if (ext <= 0 || type != MP__PW_EXT_FAIL)
    return ext < 0 ? ext : 0;
  if (plen < FAIL_HEAD)
    return mp_set_error(MP_EPROTO, "pool: a malformed failed item");
  mp__reader f = {payload, plen, 0};
  *code = (int)(int32_t)mp__get_u32(&f);
  *msg = (const char *)f.p;
  *len = f.left;
  mp__get_bytes(r, used);
  return 1;
}

int mp__pw_check_results(mp__reader r, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int code;
    const char *msg;
    size_t len, used = 0;
    int rc = failure(&r, &code, &msg, &len);
    if (rc == 0 && (rc = mp__value_skip(r.p, r.left, &used)) == 0)
      mp__get_bytes(&r, used);
    if (rc < 0)
      return rc;
  }
  return r.left == 0 ? 0 : mp_set_error(MP_EPROTO, "pool: bytes after the last result item");
}

int mp__pw_read_item(mp__reader *r, mp__value_arena *a, mp_value **v, char *msg, size_t size) {
  int code = 0;
  const char *text = "";
  size_t len = 0, used = 0;
  *v = NULL;
  int rc = failure(r, &code, &text, &len);
  if (rc == 1) {
    snprintf(msg, size, "%.*s", (int)len, text);
    return code < 0 ? code : MP_ETASK;
  }
  if (rc == 0)
    rc = mp__value_decode_in(a, r->p, r->left, v, &used);
  if (rc < 0) {
    snprintf(msg, size, "pool: undecodable result: %s", mp_last_error());
    if (mp__value_skip(r->p, r->left, &used) < 0)
      used = r->left; /* not even its length is known: nothing after it can be read */
  }
  mp__get_bytes(r, used);
  return rc;
}
