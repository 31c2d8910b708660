/* Function references: one encoding of (module, offset, build fingerprint) on top of the
 * backend's mp_plat_target_ref / mp_plat_target_resolve (posix/target.c, win32/target.c),
 * used by the spawn bootstrap and the pool alike. */
#include <string.h>

#include "multiproc.h"
#include "platform.h"
#include "target.h"

_Static_assert(MP_FINGERPRINT_MAX <= 32 && sizeof(((mp_plat_target *)0)->module) <= 1024,
               "MP__FNREF_MAX must cover the longest reference");

int mp__fnref_encode(void (*fn)(void), mp__buf *b) {
  mp_plat_target t;
  int rc = mp_plat_target_ref(fn, &t);
  if (rc < 0)
    return rc;
  size_t mlen = strlen(t.module);
  rc = mp__buf_put_u16(b, (unsigned)mlen);
  rc = rc ? rc : mp__buf_put(b, t.module, mlen);
  rc = rc ? rc : mp__buf_put_u64(b, t.offset);
  rc = rc ? rc : mp__buf_put_u8(b, (unsigned)t.fingerprint_len);
  return rc ? rc : mp__buf_put(b, t.fingerprint, t.fingerprint_len);
}

int mp__fnref_parse(mp__reader *r, mp_plat_target *t) {
  memset(t, 0, sizeof *t);
  size_t mlen = mp__get_u16(r);
  if (mlen >= sizeof t->module)
    r->bad = 1;
  const unsigned char *module = mp__get_bytes(r, r->bad ? 0 : mlen);
  if (!r->bad)
    memcpy(t->module, module, mlen); /* NUL-terminated by the memset */
  t->offset = mp__get_u64(r);
  t->fingerprint_len = mp__get_u8(r);
  if (t->fingerprint_len > MP_FINGERPRINT_MAX)
    r->bad = 1;
  const unsigned char *fp = mp__get_bytes(r, r->bad ? 0 : t->fingerprint_len);
  if (r->bad)
    return mp_set_error(MP_EPROTO, "malformed function reference");
  memcpy(t->fingerprint, fp, t->fingerprint_len);
  if (memchr(t->module, '\0', mlen) != NULL)
    return mp_set_error(MP_EPROTO, "malformed function reference: NUL in the module name");
  return 0;
}

int mp__fnref_decode(mp__reader *r, void (**fn)(void)) {
  mp_plat_target t;
  int rc = mp__fnref_parse(r, &t);
  return rc < 0 ? rc : mp_plat_target_resolve(&t, fn);
}
