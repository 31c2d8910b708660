/* Argument lists as the spawn path and the pool see them (args.c). Not part of the public API. */
#ifndef MP_ARGS_H
#define MP_ARGS_H

#include "multiproc.h"
#include "buf.h"
#include "platform.h"
#include "xfer.h"

/* Appends any passable object; the public mp_args_add_<kind> functions wrap this. */
int mp__args_add_object(mp_args *args, const mp__xfer_type *type, void *obj);
/* Reads argument i as an object of the given type (MP_EINVAL if it is another type). */
int mp__args_get_object(const mp_args *args, size_t i, const mp__xfer_type *type, void **obj);

/* Encodes args for another process as MessagePack into *buf (malloc'd) and appends the OS
 * handles the objects need to handles[*nhandles..max) (still owned by the objects). */
int mp__args_encode(const mp_args *args, char **buf, size_t *len, mp_plat_handle *handles,
                    size_t *nhandles, size_t max);
/* The same, appended to b (nothing is left in b on failure). */
int mp__args_encode_append(const mp_args *args, mp__buf *b, mp_plat_handle *handles,
                           size_t *nhandles, size_t max);
/* In the receiving process: decodes args, importing each object with the handles it names
 * (in order, each handle exactly once). Takes the handles: each ends up in an imported
 * object or closed, on failure too. Counts and lengths are checked against the bytes
 * present, and the number of arguments against MP_ARGS_MAX, before anything is allocated. */
int mp__args_decode(const char *buf, size_t len, const mp_plat_handle *handles, size_t nhandles,
                    mp_args **out);
/* mp__args_decode with the passable types looked up by lookup instead of the registry (the
 * fuzz target imports into harmless stand-ins this way). */
int mp__args_decode_with(const char *buf, size_t len, const mp_plat_handle *handles,
                         size_t nhandles, mp__xfer_lookup_fn lookup, mp_args **out);
/* Deep-copies args (values copied, objects shared). */
int mp__args_copy(const mp_args *src, mp_args **out);

#endif /* MP_ARGS_H */
