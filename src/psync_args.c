/* Passing process-shared objects to children in mp_args: thin typed wrappers over the
 * generic object slots of args.c (the child receives its own imported copy). */
#include "multiproc.h"
#include "xfer.h"
#include "args.h"

int mp_args_add_plock(mp_args *args, mp_plock *l) {
  return l ? mp__args_add_object(args, &mp__plock_xfer, l)
           : mp_set_error(MP_EINVAL, "mp_args_add_plock: the lock is NULL");
}

int mp_args_get_plock(const mp_args *args, size_t i, mp_plock **l) {
  return mp__args_get_object(args, i, &mp__plock_xfer, (void **)l);
}

int mp_args_add_psem(mp_args *args, mp_psem *s) {
  return s ? mp__args_add_object(args, &mp__psem_xfer, s)
           : mp_set_error(MP_EINVAL, "mp_args_add_psem: the semaphore is NULL");
}

int mp_args_get_psem(const mp_args *args, size_t i, mp_psem **s) {
  return mp__args_get_object(args, i, &mp__psem_xfer, (void **)s);
}

int mp_args_add_pevent(mp_args *args, mp_pevent *e) {
  return e ? mp__args_add_object(args, &mp__pevent_xfer, e)
           : mp_set_error(MP_EINVAL, "mp_args_add_pevent: the event is NULL");
}

int mp_args_get_pevent(const mp_args *args, size_t i, mp_pevent **e) {
  return mp__args_get_object(args, i, &mp__pevent_xfer, (void **)e);
}

int mp_args_add_shm(mp_args *args, mp_shm *m) {
  return m ? mp__args_add_object(args, &mp__shm_xfer, m)
           : mp_set_error(MP_EINVAL, "mp_args_add_shm: the shared memory is NULL");
}

int mp_args_get_shm(const mp_args *args, size_t i, mp_shm **m) {
  return mp__args_get_object(args, i, &mp__shm_xfer, (void **)m);
}

int mp_args_add_shared(mp_args *args, mp_shared *s) {
  return s ? mp__args_add_object(args, &mp__shared_xfer, s)
           : mp_set_error(MP_EINVAL, "mp_args_add_shared: the value is NULL");
}

int mp_args_get_shared(const mp_args *args, size_t i, mp_shared **s) {
  return mp__args_get_object(args, i, &mp__shared_xfer, (void **)s);
}
