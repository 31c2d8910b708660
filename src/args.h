/* Argument lists as the spawn path and the pool see them (args.c). Not part of the public API. */
#ifndef MP_ARGS_H
#define MP_ARGS_H

#include "multiproc.h"
#include "platform.h"
#include "xfer.h"

/* Appends any passable object; the public mp_args_add_<kind> functions wrap this. */
int mp__args_add_object(mp_args *args, const mp__xfer_type *type, void *obj);
/* Reads argument i as an object of the given type (MP_EINVAL if it is another type). */
int mp__args_get_object(const mp_args *args, size_t i, const mp__xfer_type *type, void **obj);

/* Encodes args for a spawned child as MessagePack into *buf (malloc'd) and appends the OS
 * handles the objects need to handles[*nhandles..max). */
int mp__args_encode(const mp_args *args, char **buf, size_t *len, mp_plat_handle *handles,
                    size_t *nhandles, size_t max);
/* In the child: decodes args, importing objects with the child's handle values. */
int mp__args_decode(const char *buf, size_t len, const mp_plat_handle *handles, size_t nhandles,
                    mp_args **out);
/* Deep-copies args (strings and bytes copied, objects shared). */
int mp__args_copy(const mp_args *src, mp_args **out);

#endif /* MP_ARGS_H */
