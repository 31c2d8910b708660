/* Fuzzes mp__args_decode, the decoder a spawned child runs on the argument bytes its parent
 * sent (and a pool worker on a task's arguments).
 *
 * Input: one byte giving how many OS handles came beside the bytes (0..8), then the bytes.
 * A real child imports each object with the handles its parent passed; here every handle
 * is MP_PLAT_INVALID (which no OS call accepts and closing ignores), and objects are
 * imported by stand-in types that carry the real types' ids and check what an import is
 * handed: a blob within MP_XFER_MAX_BLOB and at most MP_XFER_MAX_HANDLES handles, all from
 * the table (ASan sees any read outside it). So every path of the decoder runs, with
 * nothing in the process touched.
 *
 * The property: any input fails cleanly, or decodes to arguments that encode and decode
 * again to the same arguments (no crash, no leak, no allocation beyond the input's size). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "xfer.h"

#define MAX_TABLE 8

typedef struct token {
  mp__xfer x; /* what the import was handed, to export again */
} token;

static int stand_in_export(void *obj, mp__xfer *out) {
  *out = ((token *)obj)->x;
  return 0;
}

static int stand_in_import(const mp__xfer *in, void **obj) {
  if (in->blob_len > MP_XFER_MAX_BLOB || in->nhandles > MP_XFER_MAX_HANDLES)
    abort(); /* the decoder handed an import more than any type may take */
  for (size_t k = 0; k < in->nhandles; k++)
    if (in->handles[k] != MP_PLAT_INVALID)
      abort(); /* a handle that was not in the table */
  token *t = malloc(sizeof *t);
  if (t == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  t->x = *in;
  *obj = t;
  return 0;
}

static void stand_in_release(void *obj) { free(obj); }

#define STAND_IN(id, name)                                                                         \
  { id, name, stand_in_export, stand_in_import, stand_in_release }
static const mp__xfer_type stand_ins[] = {
    STAND_IN(MP_XFER_CONN, "connection"),     STAND_IN(MP_XFER_QUEUE, "queue"),
    STAND_IN(MP_XFER_PLOCK, "lock"),          STAND_IN(MP_XFER_PSEM, "semaphore"),
    STAND_IN(MP_XFER_PEVENT, "event"),        STAND_IN(MP_XFER_SHM, "shared memory"),
    STAND_IN(MP_XFER_SHARED, "shared value"),
};

static const mp__xfer_type *lookup(uint8_t id) {
  for (size_t i = 0; i < sizeof stand_ins / sizeof stand_ins[0]; i++)
    if (stand_ins[i].id == id)
      return &stand_ins[i];
  return NULL;
}

/* 1 if a and b hold the same arguments: equal values, objects with equal records. */
static int same_args(const mp_args *a, const mp_args *b) {
  if (mp_args_count(a) != mp_args_count(b))
    return 0;
  for (size_t i = 0; i < mp_args_count(a); i++) {
    const mp_value *va = NULL, *vb = NULL;
    int ra = mp_args_get_value(a, i, &va), rb = mp_args_get_value(b, i, &vb);
    if (ra != rb)
      return 0;
    if (ra == 0) {
      /* NaN differs from itself: compare the encodings instead of the values. */
      void *ea = NULL, *eb = NULL;
      size_t la = 0, lb = 0;
      int same = mp_value_encode(va, &ea, &la) == 0 && mp_value_encode(vb, &eb, &lb) == 0 &&
                 la == lb && memcmp(ea, eb, la) == 0;
      mp_free(ea);
      mp_free(eb);
      if (!same)
        return 0;
      continue;
    }
    int type = mp_args_type(a, i);
    if (type != mp_args_type(b, i))
      return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  mp_plat_handle table[MAX_TABLE];
  size_t nhandles = data[0] % (MAX_TABLE + 1);
  for (size_t k = 0; k < MAX_TABLE; k++)
    table[k] = MP_PLAT_INVALID;
  /* An exact-size copy of the table, so that ASan sees a read past its end. */
  mp_plat_handle *handles = malloc((nhandles ? nhandles : 1) * sizeof *handles);
  if (handles == NULL)
    return 0;
  memcpy(handles, table, nhandles * sizeof *handles);
  mp_args *args = NULL;
  if (mp__args_decode_with((const char *)data + 1, size - 1, handles, nhandles, lookup, &args) !=
      0) {
    free(handles);
    return 0;
  }
  char *buf = NULL;
  size_t len = 0, n2 = 0;
  mp_plat_handle again_handles[MP_ARGS_MAX < 256 ? MP_ARGS_MAX : 256];
  if (mp__args_encode(args, &buf, &len, again_handles, &n2, 256) != 0 || n2 != nhandles)
    abort(); /* whatever decodes must encode again, naming the same handles */
  mp_args *again = NULL;
  if (mp__args_decode_with(buf, len, again_handles, n2, lookup, &again) != 0 ||
      !same_args(args, again))
    abort();
  free(buf);
  mp_args_free(again);
  mp_args_free(args);
  free(handles);
  return 0;
}
