/* The benchmark harness: interleaved rounds, medians and spreads, targets, time bounds and
 * the JSON-lines record that bench/run collects. See benchutil.h and docs/benchmarks.md. */
#include "benchutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#  include <windows.h>
#else
#  include <errno.h>
#  include <poll.h>
#  include <signal.h>
#  include <sys/prctl.h>
#  include <sys/socket.h>
#  include <sys/syscall.h>
#  include <sys/wait.h>
#  include <unistd.h>
#endif

#define DEFAULT_ROUNDS 7
#define DEFAULT_PEER_TIMEOUT_S 120
/* The watchdog fires this long after a sample's budget: peers get the budget itself to
 * notice and report a timeout on their own. */
#define WATCHDOG_GRACE_MS 15000
#define PYTHON "/usr/bin/python3"

typedef struct peer {
  char *name;
  bench_peer_fn fn;
  void *ctx;
  char *script, *args; /* a Python peer */
  double *samples;     /* one per round; NAN where the round did not run */
  char *failed;        /* why the peer stopped being measured, or NULL */
} peer;

struct bench_case {
  char *feature, *name, *unit;
  int higher_is_better;
  peer *peers;
  size_t npeers;
  int ran;
  struct bench_case *next;
};

static struct {
  const char *benchmark, *platform;
  const char *only; /* --only <prefix>: measure just the peers whose name starts so */
  char platform_detail[128];
  int rounds, peer_timeout_ms, failures;
  FILE *jsonl;
  bench_case *cases, **last;
  char fail_reason[1024];
  /* The watchdog: a sample's deadline, checked by a thread that sleeps until it. */
  mp_lock *lock;
  mp_cond *cond;
  mp_thread *thread;
  int armed, idle;
  uint64_t deadline_ns;
  const char *case_name, *peer_name;
  int64_t python_pid; /* a running Python peer (leads its own process group), or 0 */
} B = {.rounds = DEFAULT_ROUNDS, .peer_timeout_ms = DEFAULT_PEER_TIMEOUT_S * 1000};

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (!d) {
    fprintf(stderr, "bench: out of memory\n");
    exit(2);
  }
  return memcpy(d, s, n);
}

/* ---- the JSON-lines record ------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void json_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.6g", v);
  else
    fputs("null", f);
}

/* Starts a record: {"type":..,"benchmark":..,"platform":.. and the caller adds fields. */
static FILE *record(const char *type) {
  if (!B.jsonl)
    return NULL;
  fprintf(B.jsonl, "{\"type\":\"%s\",\"benchmark\":", type);
  json_str(B.jsonl, B.benchmark);
  fputs(",\"platform\":", B.jsonl);
  json_str(B.jsonl, B.platform);
  return B.jsonl;
}

static void field_str(FILE *f, const char *key, const char *v) {
  fprintf(f, ",\"%s\":", key);
  json_str(f, v);
}

static void field_num(FILE *f, const char *key, double v) {
  fprintf(f, ",\"%s\":", key);
  json_num(f, v);
}

/* Ends a record; flushed at once so that a killed program loses nothing it reported, and
 * so that no forked child inherits a buffer it could write twice. */
static void end_record(FILE *f) {
  fputs("}\n", f);
  fflush(f);
}

/* ---- failures and notes ---------------------------------------------------------------- */

static void report_failure(const char *case_name, const char *peer_name, const char *reason) {
  B.failures++;
  printf("failure %s: %s / %s: %s\n", B.benchmark, case_name, peer_name, reason);
  FILE *f = record("failure");
  if (f) {
    field_str(f, "case", case_name);
    field_str(f, "peer", peer_name);
    field_str(f, "reason", reason);
    end_record(f);
  }
}

double bench_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(B.fail_reason, sizeof B.fail_reason, fmt, ap);
  va_end(ap);
  return -1;
}

void bench_note(const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  printf("note: %s\n", text);
  FILE *f = record("note");
  if (f) {
    field_str(f, "text", text);
    end_record(f);
  }
}

/* ---- time bounds ----------------------------------------------------------------------- */

double bench_now_us(void) { return (double)mp_monotonic_ns() / 1000.0; }

int bench_remaining_ms(void) {
  uint64_t now = mp_monotonic_ns();
  if (!B.armed) /* outside a sample (set-up, clean-up): a whole budget */
    return B.peer_timeout_ms;
  if (now >= B.deadline_ns)
    return 1;
  uint64_t ms = (B.deadline_ns - now) / 1000000u;
  return ms < 1 ? 1 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static void kill_python_tree(void) {
#ifndef _WIN32
  if (B.python_pid > 0)
    kill(-(pid_t)B.python_pid, SIGKILL);
#endif
}

/* Sleeps until the armed deadline (plus grace); a sample still running then is stuck in a
 * wait the peer did not bound, so the program reports it and stops: its children die with
 * it (PR_SET_PDEATHSIG, job objects) and bench/run goes on with the next program. */
static void watchdog(void *arg) {
  (void)arg;
  mp_lock_acquire(B.lock, MP_FOREVER);
  for (;;) {
    uint64_t now = mp_monotonic_ns(), fire = B.deadline_ns + (uint64_t)WATCHDOG_GRACE_MS * 1000000u;
    if (!B.armed) {
      B.idle = 1;
      mp_cond_wait(B.cond, MP_FOREVER);
      B.idle = 0;
      continue;
    }
    if (now < fire) {
      uint64_t ms = (fire - now) / 1000000u + 1;
      mp_cond_wait(B.cond, ms > INT32_MAX ? INT32_MAX : (int)ms);
      continue;
    }
    char reason[256];
    snprintf(reason, sizeof reason,
             "no result within %d s (budget %d s + %d s grace): stopped the benchmark",
             (B.peer_timeout_ms + WATCHDOG_GRACE_MS) / 1000, B.peer_timeout_ms / 1000,
             WATCHDOG_GRACE_MS / 1000);
    report_failure(B.case_name, B.peer_name, reason);
    fflush(stdout);
    kill_python_tree();
    _exit(3);
  }
}

static void arm(const char *case_name, const char *peer_name) {
  mp_lock_acquire(B.lock, MP_FOREVER);
  B.case_name = case_name;
  B.peer_name = peer_name;
  B.deadline_ns = mp_monotonic_ns() + (uint64_t)B.peer_timeout_ms * 1000000u;
  B.armed = 1;
  if (B.idle) /* only an idle watchdog needs waking; a sleeping one re-reads the deadline */
    mp_cond_notify(B.cond, 1);
  mp_lock_release(B.lock);
}

static void disarm(void) {
  mp_lock_acquire(B.lock, MP_FOREVER);
  B.armed = 0;
  mp_lock_release(B.lock);
}

/* ---- set-up ---------------------------------------------------------------------------- */

static void detect_platform(void) {
#ifdef _WIN32
  typedef const char *(*wine_version_fn)(void);
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  FARPROC p = ntdll ? GetProcAddress(ntdll, "wine_get_version") : NULL;
  if (p) {
    wine_version_fn fn;
    memcpy(&fn, &p, sizeof fn);
    B.platform = "wine";
    snprintf(B.platform_detail, sizeof B.platform_detail, "Wine %s", fn());
  } else {
    B.platform = "windows";
    snprintf(B.platform_detail, sizeof B.platform_detail, "Windows");
  }
#else
  B.platform = "linux";
  snprintf(B.platform_detail, sizeof B.platform_detail, "Linux");
#endif
}

void bench_init(const char *name, int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows, and a killed run keeps its lines */
  B.benchmark = name;
  B.last = &B.cases;
  detect_platform();
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      B.rounds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--peer-timeout") == 0 && i + 1 < argc)
      B.peer_timeout_ms = atoi(argv[++i]) * 1000;
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      B.only = argv[++i];
  }
  if (B.rounds < 1)
    B.rounds = 1;
  if (B.peer_timeout_ms < 1000)
    B.peer_timeout_ms = 1000;
  const char *path = getenv("MP_BENCH_JSONL");
  if (path && *path && (B.jsonl = fopen(path, "a")) == NULL)
    fprintf(stderr, "bench: cannot open MP_BENCH_JSONL=%s; no record is written\n", path);
  if (mp_lock_create(&B.lock) || mp_cond_create(&B.cond, B.lock) ||
      mp_thread_create(&B.thread, watchdog, NULL, "bench-watchdog")) {
    fprintf(stderr, "bench: cannot start the watchdog: %s\n", mp_last_error());
    exit(2);
  }
  mp_thread_detach(B.thread);
  FILE *f = record("start");
  if (f) {
    field_str(f, "platform_detail", B.platform_detail);
    field_num(f, "rounds", B.rounds);
    field_num(f, "peer_timeout_s", B.peer_timeout_ms / 1000);
    end_record(f);
  }
  if (!bench_native())
    printf("%s on %s: Windows figures, information only (%s)\n", name, B.platform_detail,
           strcmp(B.platform, "wine") == 0 ? "Wine is not Windows" : "no targets here");
  if (B.rounds < 5)
    printf("note: %d rounds (fewer than 5): these figures are not a verdict\n", B.rounds);
}

int bench_rounds(void) { return B.rounds; }

int bench_native(void) {
#ifdef _WIN32
  return 0;
#else
  return 1;
#endif
}

int bench_finish(void) {
  /* The watchdog thread stays (detached, asleep); the lock and condition it sleeps on are
   * left for the process's exit to reclaim. */
  while (B.cases) {
    bench_case *c = B.cases;
    B.cases = c->next;
    for (size_t i = 0; i < c->npeers; i++) {
      free(c->peers[i].name);
      free(c->peers[i].script);
      free(c->peers[i].args);
      free(c->peers[i].samples);
      free(c->peers[i].failed);
    }
    free(c->peers);
    free(c->feature);
    free(c->name);
    free(c->unit);
    free(c);
  }
  if (B.jsonl)
    fclose(B.jsonl);
  return B.failures ? 1 : 0;
}

/* ---- statistics ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *v, size_t n) {
  if (n == 0)
    return NAN;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_median_of(int n, bench_peer_fn fn, void *ctx) {
  double *v = malloc(sizeof *v * (size_t)n);
  if (!v)
    return bench_fail("out of memory");
  for (int i = 0; i < n; i++) {
    if ((v[i] = fn(ctx)) < 0) {
      double bad = v[i];
      free(v);
      return bad;
    }
  }
  double m = bench_median(v, (size_t)n);
  free(v);
  return m;
}

uint64_t bench_stamp(uint32_t producer, uint32_t seq) {
  return (uint64_t)seq * UINT64_C(0x9E3779B97F4A7C15) ^
         (uint64_t)(producer + 1) * UINT64_C(0xC2B2AE3D27D4EB4F);
}

/* Median, smallest and largest of the finite values in v[0..n); returns how many. */
static size_t summarize(const double *v, size_t n, double *med, double *lo, double *hi) {
  double *tmp = malloc(sizeof *tmp * (n ? n : 1));
  size_t k = 0;
  for (size_t i = 0; tmp && i < n; i++)
    if (isfinite(v[i]))
      tmp[k++] = v[i];
  *med = *lo = *hi = NAN;
  if (k > 0) {
    *med = bench_median(tmp, k);
    *lo = tmp[0];
    *hi = tmp[k - 1];
  }
  free(tmp);
  return k;
}

/* ---- cases ----------------------------------------------------------------------------- */

bench_case *bench_case_new(const char *feature, const char *name, const char *unit,
                           int higher_is_better) {
  bench_case *c = calloc(1, sizeof *c);
  if (!c) {
    fprintf(stderr, "bench: out of memory\n");
    exit(2);
  }
  c->feature = dup_str(feature);
  c->name = dup_str(name);
  c->unit = dup_str(unit);
  c->higher_is_better = higher_is_better;
  *B.last = c;
  B.last = &c->next;
  return c;
}

/* NULL when --only leaves this peer out (for tuning one peer alone, e.g. in a profiler). */
static peer *add_peer(bench_case *c, const char *name) {
  if (B.only && strncmp(name, B.only, strlen(B.only)) != 0)
    return NULL;
  peer *np = realloc(c->peers, sizeof *np * (c->npeers + 1));
  if (!np) {
    fprintf(stderr, "bench: out of memory\n");
    exit(2);
  }
  c->peers = np;
  peer *p = &c->peers[c->npeers++];
  memset(p, 0, sizeof *p);
  p->name = dup_str(name);
  return p;
}

void bench_peer(bench_case *c, const char *name, bench_peer_fn fn, void *ctx) {
  peer *p = add_peer(c, name);
  if (!p)
    return;
  p->fn = fn;
  p->ctx = ctx;
}

void bench_python_peer(bench_case *c, const char *name, const char *script, const char *args) {
#ifdef _WIN32
  (void)c, (void)name, (void)script, (void)args;
#else
  peer *p = add_peer(c, name);
  if (!p)
    return;
  p->script = dup_str(script);
  p->args = dup_str(args);
#endif
}

/* ---- Python peers ---------------------------------------------------------------------- */

#ifndef _WIN32
/* One round of a Python peer: the interpreter in its own process group (so that a
 * timeout kills it and every multiprocessing child it made), output read within the
 * sample's budget, "value=<number>" parsed. Start-up happens before the script's clock
 * starts, so it is not measured. */
static double python_round(const peer *p) {
  char script[1024], args[1024];
  snprintf(script, sizeof script, "%s/%s", MP_BENCH_DIR, p->script);
  snprintf(args, sizeof args, "%s", p->args);
  const char *argv[40] = {getenv("MP_BENCH_PYTHON") ? getenv("MP_BENCH_PYTHON") : PYTHON, script};
  size_t argc = 2;
  for (char *tok = strtok(args, " "); tok && argc < 39; tok = strtok(NULL, " "))
    argv[argc++] = tok;
  argv[argc] = NULL;
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.std_in.mode = MP_STDIO_DEVNULL;
  o.std_out.mode = MP_STDIO_PIPE;
  o.std_err.mode = MP_STDIO_PIPE;
  o.new_process_group = 1;
  mp_popen *child;
  if (mp_popen_create(&child, argv, &o) != 0)
    return bench_fail("cannot start %s: %s", argv[0], mp_last_error());
  B.python_pid = mp_popen_pid(child);
  char *out = NULL, *err = NULL;
  int rc = mp_popen_communicate(child, NULL, 0, &out, NULL, &err, NULL, bench_remaining_ms());
  int code = -1;
  double value = -1;
  if (rc == MP_ETIMEDOUT) {
    mp_popen_kill_tree(child);
    mp_popen_wait(child, 10000);
    bench_fail("timed out after %d s (killed with its children)", B.peer_timeout_ms / 1000);
  } else if (rc != 0) {
    mp_popen_kill_tree(child);
    bench_fail("reading its output failed: %s", mp_last_error());
  } else if (mp_popen_returncode(child, &code) != 0 || code != 0) {
    const char *tail = err ? err + (strlen(err) > 300 ? strlen(err) - 300 : 0) : "";
    bench_fail("exit code %d: %s", code, tail);
  } else {
    const char *at = out ? strstr(out, "value=") : NULL;
    value = at ? atof(at + 6) : -1;
    if (!(value > 0))
      bench_fail("no value=<number> in its output: %.200s", out ? out : "");
  }
  B.python_pid = 0;
  mp_free(out);
  mp_free(err);
  mp_popen_free(child);
  return value > 0 ? value : -1;
}
#endif

static double run_peer(peer *p) {
  B.fail_reason[0] = '\0';
#ifndef _WIN32
  if (p->script)
    return python_round(p);
#endif
  return p->fn(p->ctx);
}

/* One sample of p, bounded by the budget; a failure retires the peer from the case. */
static void sample(bench_case *c, peer *p, double *slot) {
  arm(c->name, p->name);
  double v = run_peer(p);
  disarm();
  if (v >= 0 && isfinite(v)) {
    if (slot)
      *slot = v;
    return;
  }
  p->failed = dup_str(B.fail_reason[0] ? B.fail_reason : "the peer returned no value");
  report_failure(c->name, p->name, p->failed);
}

static void fmt_value(char *buf, size_t n, double v) {
  if (!isfinite(v))
    snprintf(buf, n, "-");
  else if (fabs(v) >= 1000)
    snprintf(buf, n, "%.0f", v);
  else if (fabs(v) >= 10)
    snprintf(buf, n, "%.1f", v);
  else
    snprintf(buf, n, "%.3g", v);
}

static void print_and_record(const bench_case *c) {
  printf("== %s: %s (%s, %s is better; median [min..max] of %d interleaved rounds)\n", c->feature,
         c->name, c->unit, c->higher_is_better ? "higher" : "lower", B.rounds);
  for (size_t i = 0; i < c->npeers; i++) {
    const peer *p = &c->peers[i];
    double med, lo, hi;
    size_t n = summarize(p->samples, (size_t)B.rounds, &med, &lo, &hi);
    char m[32], l[32], h[32];
    fmt_value(m, sizeof m, med);
    fmt_value(l, sizeof l, lo);
    fmt_value(h, sizeof h, hi);
    if (p->failed)
      printf("  %-40s %14s   failed: %s\n", p->name, "-", p->failed);
    else
      printf("  %-40s %14s   [%s..%s]\n", p->name, m, l, h);
    FILE *f = record("measure");
    if (!f)
      continue;
    field_str(f, "feature", c->feature);
    field_str(f, "case", c->name);
    field_str(f, "peer", p->name);
    field_str(f, "unit", c->unit);
    field_str(f, "better", c->higher_is_better ? "higher" : "lower");
    field_num(f, "rounds", (double)n);
    if (p->failed) {
      field_str(f, "failed", p->failed);
    } else {
      field_num(f, "median", med);
      fprintf(f, ",\"spread\":[");
      json_num(f, lo);
      fputc(',', f);
      json_num(f, hi);
      fputc(']', f);
    }
    fprintf(f, ",\"samples\":[");
    for (int r = 0; r < B.rounds; r++) {
      if (r)
        fputc(',', f);
      json_num(f, p->samples[r]);
    }
    fputc(']', f);
    end_record(f);
  }
}

void bench_case_run(bench_case *c) {
  for (size_t i = 0; i < c->npeers; i++) {
    peer *p = &c->peers[i];
    p->samples = malloc(sizeof *p->samples * (size_t)B.rounds);
    if (!p->samples) {
      fprintf(stderr, "bench: out of memory\n");
      exit(2);
    }
    for (int r = 0; r < B.rounds; r++)
      p->samples[r] = NAN;
    if (!p->script) /* Python peers warm up inside each run */
      sample(c, p, NULL);
  }
  /* Round r starts with peer r mod n: each peer goes first, and follows each other peer,
   * equally often, so no peer always pays for its predecessor's mess (cold caches, a
   * freshly exited interpreter). */
  for (int r = 0; r < B.rounds; r++) {
    for (size_t k = 0; k < c->npeers; k++) {
      peer *p = &c->peers[((size_t)r + k) % c->npeers];
      if (!p->failed)
        sample(c, p, &p->samples[r]);
    }
  }
  c->ran = 1;
  print_and_record(c);
}

static const peer *find_peer(const bench_case *c, const char *name) {
  for (size_t i = 0; i < c->npeers; i++)
    if (strcmp(c->peers[i].name, name) == 0)
      return &c->peers[i];
  return NULL;
}

double bench_case_median(const bench_case *c, const char *name) {
  const peer *p = find_peer(c, name);
  double med, lo, hi;
  if (!p || p->failed || !c->ran || summarize(p->samples, (size_t)B.rounds, &med, &lo, &hi) == 0)
    return -1;
  return med;
}

/* ---- targets --------------------------------------------------------------------------- */

void bench_target(const char *name, const bench_case *c, const char *peer_name, const char *versus,
                  const char *op, double bound) {
  if (!bench_native() || B.only) /* no verdicts from a partial run */
    return;
  const peer *a = find_peer(c, peer_name), *b = find_peer(c, versus);
  char why[600] = "";
  double *ratios = calloc((size_t)B.rounds, sizeof *ratios);
  size_t n = 0;
  if (!a || !b)
    snprintf(why, sizeof why, "%s is not a peer of %s", a ? versus : peer_name, c->name);
  else if (a->failed || b->failed)
    snprintf(why, sizeof why, "%s failed", a->failed ? peer_name : versus);
  for (int r = 0; !why[0] && ratios && r < B.rounds; r++) /* rounds where both measured */
    if (isfinite(a->samples[r]) && isfinite(b->samples[r]) && b->samples[r] > 0)
      ratios[n++] = a->samples[r] / b->samples[r];
  double ratio, lo, hi;
  summarize(ratios, n, &ratio, &lo, &hi);
  free(ratios);
  if (!why[0] && n == 0)
    snprintf(why, sizeof why, "no round measured both peers");
  int pass = n > 0 && (op[0] == '<' ? ratio <= bound : ratio >= bound);
  char line[1024];
  int len =
      snprintf(line, sizeof line, "target %s ratio=%.3f goal=%s%g %s spread=%.3f..%.3f rounds=%zu",
               name, ratio, op, bound, pass ? "PASS" : "MISS", lo, hi, n);
  if (why[0] && len > 0 && (size_t)len < sizeof line)
    snprintf(line + len, sizeof line - (size_t)len, " (no measurement: %s)", why);
  puts(line);
  FILE *f = record("target");
  if (!f)
    return;
  field_str(f, "name", name);
  field_str(f, "feature", c->feature);
  field_str(f, "case", c->name);
  field_str(f, "peer", peer_name);
  field_str(f, "versus", versus);
  field_num(f, "ratio", ratio);
  field_str(f, "op", op);
  field_num(f, "goal", bound);
  field_str(f, "verdict", pass ? "PASS" : "MISS");
  fprintf(f, ",\"spread\":[");
  json_num(f, lo);
  fputc(',', f);
  json_num(f, hi);
  fputc(']', f);
  field_num(f, "rounds", (double)n);
  if (why[0])
    field_str(f, "failed", why);
  field_str(f, "line", line);
  end_record(f);
}

int bench_start_child(mp_process **p, mp_target_fn fn, const mp_args *args) {
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.daemon = 1;
  o.method = bench_native() ? MP_START_FORK : MP_START_SPAWN;
  *p = NULL;
  int rc = mp_process_create(p, fn, args, &o);
  return rc ? rc : mp_process_start(*p);
}

/* ---- helpers for raw POSIX peers ------------------------------------------------------- */

#ifndef _WIN32
pid_t bench_fork(void) {
  pid_t parent = getpid(), pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the parent died before the line above */
      _exit(1);
  }
  return pid;
}

int bench_waitpid(pid_t pid) {
  int st = 0, killed = 0;
  /* A pidfd turns "wait with a deadline" into poll(); without one (kernels before 5.3)
   * the wait blocks and the watchdog bounds it. */
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    struct pollfd pf = {fd, POLLIN, 0};
    int ready;
    while ((ready = poll(&pf, 1, bench_remaining_ms())) < 0 && errno == EINTR) {
    }
    close(fd);
    if (ready == 0)
      killed = kill(pid, SIGKILL) == 0;
  }
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR)
      return -1;
  }
  return killed ? -1 : st;
}

double bench_reap_us(pid_t pid, double t0_us) {
  int st = bench_waitpid(pid);
  double us = bench_now_us() - t0_us;
  if (st < 0)
    return bench_fail("the child did not exit within the budget (killed)");
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? us : bench_fail("bad child status %#x", st);
}

int bench_poll_in(int fd) {
  struct pollfd pf = {fd, POLLIN, 0};
  int ready;
  while ((ready = poll(&pf, 1, bench_remaining_ms())) < 0 && errno == EINTR) {
  }
  return ready > 0;
}

void bench_bound_reads(int fd) {
  int ms = bench_remaining_ms();
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}
#endif
