/* Objects that travel to a child: the passable types and their registry (args.c).
 * Not part of the public API. */
#ifndef MP_XFER_H
#define MP_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"

/* Under fork the child uses the parent's object as it is. Under spawn the parent exports
 * the object as a small blob plus the OS handles it needs; process.c hands exactly those
 * handles to the child (the same fd numbers on POSIX; duplicated into the child on Windows
 * with the child's values substituted) and the child imports them into a fresh object,
 * which it releases after the target returns. */
#define MP_XFER_MAX_HANDLES 8 /* a joinable queue needs 7 */
#define MP_XFER_MAX_BLOB 256

typedef struct mp__xfer {
  unsigned char blob[MP_XFER_MAX_BLOB];
  size_t blob_len;
  mp_plat_handle handles[MP_XFER_MAX_HANDLES];
  size_t nhandles;
} mp__xfer;

typedef struct mp__xfer_type {
  uint8_t id;       /* stable; the MessagePack extension type on the wire */
  const char *name; /* for messages: "connection", "queue", ... */
  /* Fills out with what a spawned child needs; the handles stay owned by obj. */
  int (*export_obj)(void *obj, mp__xfer *out);
  /* In the child: builds a new object from the blob and the child's handles. */
  int (*import_obj)(const mp__xfer *in, void **obj);
  /* In the child, after the target returns: frees what import_obj built. */
  void (*release_imported)(void *obj);
} mp__xfer_type;

/* Ids in use; one line per passable type, listed in args.c's registry. */
enum {
  MP_XFER_CONN = 1,
  MP_XFER_QUEUE = 2,
  MP_XFER_PLOCK = 3,
  MP_XFER_PSEM = 4,
  MP_XFER_PEVENT = 5,
  MP_XFER_SHM = 6,
  MP_XFER_SHARED = 7 /* a Value/Array: shared memory plus its lock (shm.c) */
};

/* Looks up a passable type by id (the registry in args.c); NULL if unknown. */
const mp__xfer_type *mp__xfer_lookup(uint8_t id);
typedef const mp__xfer_type *(*mp__xfer_lookup_fn)(uint8_t id);

/* The registry's entries, one per passable type (args.c lists them). */
/* How a connection travels to a spawned child: handles[0] is its channel's handle; the
 * blob holds its directions and maximum message size. Exporting a connection that is in
 * the middle of receiving a message fails with MP_ESTATE (the child could not continue
 * the frame). */
extern const mp__xfer_type mp__conn_xfer;

/* The passable process-shared objects (psync.c, shm.c). */
extern const mp__xfer_type mp__plock_xfer;
extern const mp__xfer_type mp__psem_xfer;
extern const mp__xfer_type mp__pevent_xfer;
extern const mp__xfer_type mp__shm_xfer;
extern const mp__xfer_type mp__shared_xfer;
/* How a local queue travels to a spawned child (queue_local.c). */
extern const mp__xfer_type mp__queue_xfer;

#endif /* MP_XFER_H */
