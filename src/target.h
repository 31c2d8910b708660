/* Function references on the wire (target.c): how a function of this program travels to
 * another process of it, for process targets and pool tasks alike. Not part of the public
 * API. */
#ifndef MP_TARGET_H
#define MP_TARGET_H

#include "buf.h"

/* The longest encoding: module name, offset and build fingerprint with their lengths. */
#define MP__FNREF_MAX (2 + 1023 + 8 + 1 + 32)

/* Appends fn's reference to b: its module (u16 length, UTF-8 name; empty for the main
 * program), its offset in the module (u64) and the module's build fingerprint (u8 length,
 * bytes). MP_EINVAL if fn lies in no loaded module. */
int mp__fnref_encode(void (*fn)(void), mp__buf *b);

/* Reads one reference from r (bytes from another process) and finds the function in this
 * process, loading its module if needed: 0 with *fn; MP_EPROTO for a malformed reference;
 * MP_ECHILD when the module is missing or was rebuilt (its fingerprint differs), with the
 * reason — never a jump into the wrong code. */
int mp__fnref_decode(mp__reader *r, void (**fn)(void));

struct mp_plat_target;
/* The reading half of mp__fnref_decode, without finding the function: 0 or MP_EPROTO. */
int mp__fnref_parse(mp__reader *r, struct mp_plat_target *t);

#endif /* MP_TARGET_H */
