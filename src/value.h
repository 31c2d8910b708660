/* Value internals that other core files use (value.c). Not part of the public API. */
#ifndef MP_VALUE_H
#define MP_VALUE_H

#include "multiproc.h"

/* Appends (key, val) to a dict without looking for an equal key, in amortised O(1): for a
 * caller that has already checked the keys are distinct (the pickle reader sorts them).
 * Takes both, and frees them on failure. */
int mp__value_dict_push(mp_value *dict, mp_value *key, mp_value *val);

/* Takes item i out of a list or tuple, leaving None in its place: the caller owns *item.
 * Moves a large item out of a request without copying it. */
int mp__value_take(mp_value *seq, size_t i, mp_value **item);

#endif /* MP_VALUE_H */
