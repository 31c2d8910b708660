/* The harness every bench/bench_<name>.c runs on (see docs/benchmarks.md).
 *
 * A benchmark is a list of cases; a case is one job (a start+join, a 64-byte round trip)
 * done by several peers (multiproc, a raw system-call version, Python, ZeroMQ, ...). The
 * harness runs the peers of a case interleaved, round by round (A B C, B C A, C A B, ...),
 * so that the drift of a shared machine hits all of them alike, and reports for each peer
 * the median of the rounds with their spread (smallest..largest). A target compares two
 * peers of one case round by round: its ratio is the median of the per-round ratios and
 * its spread their range, so a verdict that could flip shows as a spread across the goal.
 *
 * Every sample has a time budget (--peer-timeout, default 120 s): peers pass
 * bench_remaining_ms() to their waits and fail cleanly when it runs out; a watchdog stops
 * the program, with a failure line, if a peer is stuck past its budget anyway.
 *
 * Output: a table per case and the target lines on stdout; when MP_BENCH_JSONL names a
 * file (bench/run sets it), every measurement, target, failure and note is also appended
 * there as one JSON object per line. */
#ifndef MP_BENCHUTIL_H
#define MP_BENCHUTIL_H
#include <stddef.h>
#include <stdint.h>

#include "multiproc.h"

/* A peer's measurement of one round: a value in the case's unit, or a negative number
 * after bench_fail() said why. Runs in the benchmark's main thread. */
typedef double (*bench_peer_fn)(void *ctx);
typedef struct bench_case bench_case;

/* Starts the harness for benchmark `name` (call after mp_init and after handling any
 * special arguments the program has): reads --rounds N, --peer-timeout SECONDS and
 * --only PREFIX (measure only the peers whose name starts with PREFIX, print no targets:
 * for tuning one peer, e.g. `bench_pool --only multiproc` under a profiler). */
void bench_init(const char *name, int argc, char **argv);
/* Ends the harness: frees the cases and returns the exit status (1 if anything failed). */
int bench_finish(void);
/* Rounds per case (at least 5 unless --rounds asked for fewer). */
int bench_rounds(void);
/* 1 on Linux; 0 in a Windows build (native or under Wine). */
int bench_native(void);

/* A new case of `feature` (the chart it belongs to, e.g. "pipe"); unit names what a peer's
 * value counts ("us", "msg/s"); higher_is_better says which way is good. */
bench_case *bench_case_new(const char *feature, const char *name, const char *unit,
                           int higher_is_better);
/* Adds a peer implemented in C; it gets one untimed warm-up call before the rounds. */
void bench_peer(bench_case *c, const char *peer, bench_peer_fn fn, void *ctx);
/* Adds a Python peer: each round runs `/usr/bin/python3 <bench dir>/<script> <args>`
 * (args split on spaces) and reads "value=<number>" from its output. Linux only: a
 * no-op in a Windows build. */
void bench_python_peer(bench_case *c, const char *peer, const char *script, const char *args);
/* Runs the rounds, prints the case's table and records its measurements. */
void bench_case_run(bench_case *c);
/* The median of a peer's rounds, or -1 if it failed or is not part of the case. */
double bench_case_median(const bench_case *c, const char *peer);

/* Prints and records "target <name> ratio=<r> goal=<op><bound> PASS|MISS spread=<lo>..<hi>
 * rounds=<n>": the ratio of peer to versus in case c (op is "<=" or ">="). A target whose
 * peers did not both measure is a MISS with ratio=nan and says why. Windows builds and
 * --only runs print no targets (their figures are information). */
void bench_target(const char *name, const bench_case *c, const char *peer, const char *versus,
                  const char *op, double bound);
/* Prints and records a note (what was not measured and why, what a figure means). */
void bench_note(const char *fmt, ...) MP_PRINTF(1, 2);

/* Records why the running peer failed and returns -1 (peers: return bench_fail(...)). */
double bench_fail(const char *fmt, ...) MP_PRINTF(1, 2);
/* Milliseconds left in the running sample's budget (at least 1): the timeout for waits. */
int bench_remaining_ms(void);

/* Microseconds on the monotonic clock. */
double bench_now_us(void);
/* Median of n samples (sorts the array in place). */
double bench_median(double *v, size_t n);
/* Median of n calls of fn(ctx); stops at the first negative result and returns it. */
double bench_median_of(int n, bench_peer_fn fn, void *ctx);
/* A per-message stamp that both ends compute: 64 bits of (producer, seq). */
uint64_t bench_stamp(uint32_t producer, uint32_t seq);

/* Starts fn(args) as a daemon child (never joined at exit if a failure leaves it behind)
 * with the platform's usual method: fork on POSIX, spawn on Windows. */
int bench_start_child(mp_process **p, mp_target_fn fn, const mp_args *args);

#ifndef _WIN32
#  include <sys/types.h>
/* fork() for a raw peer's child: the child is killed if this process dies (Linux
 * PR_SET_PDEATHSIG), so no raw child outlives a stopped benchmark. */
pid_t bench_fork(void);
/* Waits for pid within the sample's budget: its wait status, or -1 after killing it. */
int bench_waitpid(pid_t pid);
/* Reaps pid (a raw peer's child) and returns the microseconds since t0_us, or a failure
 * if it did not exit with 0 within the budget. */
double bench_reap_us(pid_t pid, double t0_us);
/* Waits until fd is readable within the sample's budget: 1, or 0 on timeout. */
int bench_poll_in(int fd);
/* Bounds every later read on socket fd by the sample's budget (SO_RCVTIMEO): a read that
 * waits longer fails with EAGAIN. Costs nothing per read, unlike a poll before each. */
void bench_bound_reads(int fd);
#endif
#endif
