/* Small helpers shared by the benchmarks: timing, medians, and the verdict lines. */
#ifndef MP_BENCHUTIL_H
#define MP_BENCHUTIL_H
#include <stddef.h>
#include <stdint.h>

/* The head of a benchmark message: who sent it, its number, and a stamp derived from both
 * (the message's last 8 bytes repeat the stamp), so a consumer checks each one. */
struct bench_hdr {
  uint32_t producer, seq;
  uint64_t stamp;
};
/* The stamp of message seq of producer. */
uint64_t bench_stamp(uint32_t producer, uint32_t seq);

/* Median of n samples (sorts the array in place). */
double bench_median(double *v, size_t n);
/* Prints "target <name> ratio=<r> goal=<op><bound> PASS|MISS"; op is "<=" or ">=". */
void bench_target(const char *name, double ratio, const char *op, double bound);
/* Runs a shell command and returns its stdout (malloc'd, NUL-terminated) or NULL. Used to
 * run the Python peers; Debian's /usr/bin/python3 is the interpreter. */
char *bench_capture(const char *cmd);
/* Finds "key=<number>" in text; returns the number or -1. */
double bench_field(const char *text, const char *key);
#endif
