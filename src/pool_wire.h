/* The pool's messages between the master and one worker (pool_master.c, pool_worker.c),
 * carried by the worker's connection, which frames them (connection.c). Not public.
 *
 * Every message starts with its kind byte; integers are big-endian, values are value.c's
 * MessagePack, one after another, and function references are target.c's:
 *   master -> worker  'I' init: has_initializer u8, [fnref], maxtasks u64, initargs value
 *                     'D' function definition: fnid u32, fnref
 *                     'T' task: fnid u32, flags u8, n u32, then n input values
 *                     'A' argument task: fnid u32, nh u8, nh x handle u64 (the names of the
 *                         handles that came with it, mp__conn_take_handles), then the
 *                         argument list (args.c)
 *                     'S' stop
 *   worker -> master  'H' hello: pid u64          'F' initializer failed: message
 *                     'R' result of one task: n u32, then n items, each an output value or
 *                         a failure: extension MP__PW_EXT_FAIL holding code i32 + message
 * A worker answers its tasks in the order it got them, one 'R' message per task, written
 * before it starts the next one: the oldest unanswered task of a dead worker is therefore
 * the one it was running. */
#ifndef MP_POOL_WIRE_H
#define MP_POOL_WIRE_H

#include "multiproc.h"
#include "buf.h"
#include "value.h"

enum {
  MP__PW_INIT = 'I',
  MP__PW_DEF = 'D',
  MP__PW_TASK = 'T',
  MP__PW_ARGS_TASK = 'A',
  MP__PW_STOP = 'S',
  MP__PW_HELLO = 'H',
  MP__PW_INITFAIL = 'F',
  MP__PW_RESULT = 'R'
};
/* Task flags: call an mp_star_fn with the input's items; the task is an argument list. */
enum { MP__PW_STAR = 1, MP__PW_ARGS = 2 };
#define MP__PW_EXT_FAIL 17 /* the extension type of a failed item (values never use it) */

/* The head of a 'T' message after its kind: MP_EPROTO if malformed, or if it claims more
 * items than there are bytes left. */
int mp__pw_read_task_head(mp__reader *r, uint32_t *fnid, unsigned *flags, uint32_t *n);
/* The head of an 'A' message after its kind: the function, and the names of nh (at most
 * 255) handles into theirs[256]. */
int mp__pw_read_args_head(mp__reader *r, uint32_t *fnid, size_t *nh, uint64_t *theirs);

/* Appends a failed item: code and message. */
int mp__pw_put_failure(mp__buf *b, int code, const char *msg);
/* Checks that r holds exactly n result items (their structure: a value's contents are
 * checked when it is decoded), so that nothing is recorded from a malformed answer. */
int mp__pw_check_results(mp__reader r, size_t n);
/* Reads one result item: 0 with *v (yours; its storage from arena a, which may be NULL),
 * or the item's failure code with its message in msg; MP_EPROTO (and msg) for an output
 * that does not decode. */
int mp__pw_read_item(mp__reader *r, mp__value_arena *a, mp_value **v, char *msg, size_t size);

/* Runs fn over the n input values that start r, appending one result item per input to
 * out (a failure item for a task that failed). fn NULL: every item fails with MP_ECHILD
 * and why. An error only for an input that does not decode or no memory. */
int mp__pw_run_items(void (*fn)(void), const char *why, unsigned flags, uint32_t n, mp__reader *r,
                     mp__buf *out);

/* The worker process's target (pool_worker.c); args[0] is its connection. */
int mp__pool_worker_main(mp_args *args);

#endif /* MP_POOL_WIRE_H */
