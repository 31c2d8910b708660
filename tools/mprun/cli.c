/* Command-line options, spelled as GNU parallel and xargs spell them where they overlap:
 *   mprun [options] [--] command [word ...] [::: value ...] [:::: file ...] ...
 * Options come first; the first word that is not an option (or the word after "--")
 * starts the command, which runs up to the first ":::" or "::::". */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprun.h"

static const char usage_text[] =
    "Usage: mprun [options] [--] command [arg ...] [::: value ...] [:::: file ...]\n"
    "Runs command once per input, several at a time, and prints each job's output whole.\n"
    "\n"
    "Input (every combination of the sources, the last varying fastest):\n"
    "  ::: v1 v2 ...          a source of values given on the command line\n"
    "  :::: FILE ...          a source per file, one value per line (\"-\": stdin)\n"
    "  -a, --arg-file FILE    the same as :::: FILE (before the command)\n"
    "  -0, --null             values in files and stdin end with NUL instead of newline\n"
    "      --link             take the sources side by side instead of every combination\n"
    "  With no source, values are read from standard input; with no command, each value\n"
    "  is a command line for the shell.\n"
    "\n"
    "Replacement strings in the command (without any, the values are appended):\n"
    "  {}  the value   {.} without extension   {/} basename   {//} dirname\n"
    "  {/.} basename without extension   {#} job number   {%} slot number\n"
    "  {N} {N.} {N/} {N//} {N/.}  the same for source N (1, 2, ...)\n"
    "\n"
    "Running:\n"
    "  -j, --jobs N           N jobs at once (default: the number of CPUs; 0: as many as\n"
    "                         possible, at most 256)\n"
    "      --shell            run each command through the system shell (/bin/sh -c,\n"
    "                         cmd.exe /d /s /c); values are quoted for it\n"
    "      --timeout T        kill a job and all its processes after T seconds (suffix\n"
    "                         s, m, h or d)\n"
    "      --retries N        run a failing job up to N times in all\n"
    "      --halt WHEN,WHY=N  stop early: WHEN is soon (start no more jobs) or now (also\n"
    "                         kill the running ones); WHY is fail, success or done; N a\n"
    "                         count or a percentage (fail=10%); or never (the default)\n"
    "      --dry-run          print the commands instead of running them\n"
    "\n"
    "Output:\n"
    "  (default)              each job's stdout and stderr are printed whole when it ends\n"
    "  -k, --keep-order       print them in input order\n"
    "      --line-buffer      print whole lines as jobs write them\n"
    "      --tag              start every line with the job's values and a tab\n"
    "  -u, --ungroup          let jobs write straight to mprun's stdout and stderr\n"
    "      --bar              always show the progress bar on stderr\n"
    "      --no-progress      never show it (default: shown when stdout and stderr are\n"
    "                         terminals)\n"
    "\n"
    "Job log:\n"
    "      --joblog FILE      log every job in GNU parallel's format\n"
    "      --resume           run only the jobs the job log does not list\n"
    "      --resume-failed    run only the jobs the job log does not list as successful\n"
    "\n"
    "Exit status: 0 if every job succeeded, else the number of failed jobs (101 for more\n"
    "than 100); with --halt ...,fail=1 the failed job's status, with fail=N% the failed\n"
    "percentage; 255 for mprun's own errors. Ctrl-C and SIGTERM kill every running job's\n"
    "process tree, write the job log and end mprun as the signal would.\n"
    "\n"
    "  -h, --help             this text        --version   the version\n";

/* --help and --version end the parse; 1 tells main to exit with 0. */
static int print_help(void) {
  fputs(usage_text, stdout);
  return 1;
}

static int fail(const char *fmt, const char *arg) { return mp_set_error(MP_EINVAL, fmt, arg); }

static int parse_int(const char *s, const char *what, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (s[0] == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
    return mp_set_error(MP_EINVAL, "%s: '%s' is not a whole number from %ld to %ld", what, s, lo,
                        hi);
  *out = (int)v;
  return 0;
}

/* "30", "2.5s", "10m", "1h", "1d": seconds with an optional unit. */
static int parse_timeout(const char *s, int *ms) {
  char *end;
  errno = 0;
  double v = strtod(s, &end), unit = 1;
  if (end == s || errno != 0)
    return fail("--timeout: '%s' is not a duration (seconds, or a number with s, m, h, d)", s);
  if (*end == 's' || *end == 'm' || *end == 'h' || *end == 'd') {
    unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : 86400;
    end++;
  }
  double total = v * unit * 1000.0;
  if (*end != '\0' || !(total >= 1.0) || total > (double)INT_MAX)
    return fail("--timeout: '%s' must be a duration from 1 ms to about 24 days", s);
  *ms = (int)total;
  return 0;
}

/* "never", "now,fail=1", "soon,success=3", "now,done=10%", and GNU's numbers 0, 1, 2,
 * -1, -2. */
static int parse_halt(const char *s, halt_policy *h) {
  static const struct {
    const char *name;
    halt_policy policy;
  } shorthand[] = {
      {"never", {HALT_NEVER, HALT_FAIL, 0, 0, NULL}}, {"0", {HALT_NEVER, HALT_FAIL, 0, 0, NULL}},
      {"1", {HALT_SOON, HALT_FAIL, 1, 0, NULL}},      {"2", {HALT_NOW, HALT_FAIL, 1, 0, NULL}},
      {"-1", {HALT_SOON, HALT_SUCCESS, 1, 0, NULL}},  {"-2", {HALT_NOW, HALT_SUCCESS, 1, 0, NULL}}};
  for (size_t i = 0; i < sizeof shorthand / sizeof shorthand[0]; i++) {
    if (strcmp(s, shorthand[i].name) == 0) {
      *h = shorthand[i].policy;
      h->text = s;
      return 0;
    }
  }
  h->text = s;
  const char *why;
  if (strncmp(s, "now,", 4) == 0)
    h->when = HALT_NOW, why = s + 4;
  else if (strncmp(s, "soon,", 5) == 0)
    h->when = HALT_SOON, why = s + 5;
  else
    return fail("--halt: '%s' is not never, now,WHY=N or soon,WHY=N", s);
  const char *num;
  if (strncmp(why, "fail=", 5) == 0)
    h->why = HALT_FAIL, num = why + 5;
  else if (strncmp(why, "success=", 8) == 0)
    h->why = HALT_SUCCESS, num = why + 8;
  else if (strncmp(why, "done=", 5) == 0)
    h->why = HALT_DONE, num = why + 5;
  else
    return fail("--halt: '%s': WHY must be fail=, success= or done=", s);
  char *end;
  errno = 0;
  h->threshold = strtod(num, &end);
  h->percent = *end == '%';
  if (h->percent)
    end++;
  if (end == num || *end != '\0' || errno != 0 || !(h->threshold > 0) ||
      (h->percent && h->threshold > 100) ||
      (!h->percent && h->threshold != (double)(long)h->threshold))
    return fail("--halt: '%s': N must be a count (1, 2, ...) or a percentage up to 100%%", s);
  return 0;
}

static int add_source(options *o, int is_file, const char *path) {
  source *ns = realloc(o->sources, (o->nsources + 1) * sizeof *ns);
  if (ns == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory");
  o->sources = ns;
  source *s = &o->sources[o->nsources++];
  memset(s, 0, sizeof *s);
  s->is_file = is_file;
  s->path = is_file && strcmp(path, "-") == 0 ? NULL : path;
  return 0;
}

/* ---- options ------------------------------------------------------------------------- */

typedef struct cursor {
  int argc, i;
  char **argv;
} cursor;

/* The value of an option: what follows '=' or the short letter, else the next word. */
static int take_value(cursor *c, const char *name, const char *attached, const char **value) {
  if (attached != NULL) {
    *value = attached;
    return 0;
  }
  if (c->i + 1 >= c->argc)
    return fail("option %s needs a value", name);
  *value = c->argv[++c->i];
  return 0;
}

static int long_flag(options *o, const char *name) {
  static const struct {
    const char *name;
    size_t off;
    int value;
  } flags[] = {
      {"null", offsetof(options, null_sep), 1},
      {"link", offsetof(options, link), 1},
      {"shell", offsetof(options, shell), 1},
      {"keep-order", offsetof(options, keep_order), 1},
      {"tag", offsetof(options, tag), 1},
      {"bar", offsetof(options, bar), 1},
      {"no-progress", offsetof(options, bar), 0},
      {"dry-run", offsetof(options, dry_run), 1},
      {"line-buffer", offsetof(options, output), OUT_LINE},
      {"lb", offsetof(options, output), OUT_LINE},
      {"ungroup", offsetof(options, output), OUT_UNGROUP},
      {"resume", offsetof(options, resume), RESUME_ALL},
      {"resume-failed", offsetof(options, resume), RESUME_FAILED},
  };
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    if (strcmp(name, flags[i].name) == 0) {
      *(int *)((char *)o + flags[i].off) = flags[i].value;
      return 1;
    }
  }
  return 0;
}

static int valued(options *o, cursor *c, const char *name, const char *attached) {
  const char *v = NULL;
  int rc = take_value(c, name, attached, &v);
  if (rc != 0)
    return rc;
  if (strcmp(name, "--jobs") == 0 || strcmp(name, "-j") == 0 || strcmp(name, "-P") == 0) {
    if ((rc = parse_int(v, "--jobs", 0, INT_MAX, &o->jobs)) != 0)
      return rc;
    if (o->jobs == 0 || o->jobs > MPRUN_MAX_SLOTS)
      o->jobs = MPRUN_MAX_SLOTS;
    return 0;
  }
  if (strcmp(name, "--arg-file") == 0 || strcmp(name, "-a") == 0)
    return add_source(o, 1, v);
  if (strcmp(name, "--timeout") == 0)
    return parse_timeout(v, &o->timeout_ms);
  if (strcmp(name, "--retries") == 0) {
    if ((rc = parse_int(v, "--retries", 0, 1000000, &o->attempts)) == 0 && o->attempts == 0)
      o->attempts = 1;
    return rc;
  }
  if (strcmp(name, "--halt") == 0 || strcmp(name, "--halt-on-error") == 0)
    return parse_halt(v, &o->halt);
  o->joblog = v; /* --joblog */
  return 0;
}

static int is_valued(const char *name) {
  static const char *const names[] = {"--jobs", "--arg-file",      "--timeout", "--retries",
                                      "--halt", "--halt-on-error", "--joblog"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i]) == 0)
      return 1;
  return 0;
}

static int long_option(options *o, cursor *c, const char *arg) {
  char name[64];
  const char *eq = strchr(arg, '=');
  size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
  if (n >= sizeof name)
    return fail("unknown option '%s'", arg);
  memcpy(name, arg, n);
  name[n] = '\0';
  if (is_valued(name))
    return valued(o, c, name, eq ? eq + 1 : NULL);
  if (eq == NULL && long_flag(o, name + 2))
    return 0;
  if (eq == NULL && strcmp(name, "--help") == 0)
    return print_help();
  if (eq == NULL && strcmp(name, "--version") == 0) {
    printf("mprun %s (multiproc %s)\n", MPRUN_VERSION, mp_version());
    return 1;
  }
  return fail("unknown option '%s'", arg);
}

/* Short options may be bundled (-ku); -j, -a and -P take the rest of the word or the
 * next one. */
static int short_options(options *o, cursor *c, const char *arg) {
  for (const char *p = arg + 1; *p; p++) {
    char name[3] = {'-', *p, '\0'};
    switch (*p) {
    case 'j':
    case 'P':
    case 'a': return valued(o, c, name, p[1] ? p + 1 : NULL);
    case '0': o->null_sep = 1; break;
    case 'k': o->keep_order = 1; break;
    case 'u': o->output = OUT_UNGROUP; break;
    case 'h': return print_help();
    default: return fail("unknown option '%s'", arg);
    }
  }
  return 0;
}

/* ---- the command and its sources ----------------------------------------------------- */

static int is_sep(const char *w) { return strcmp(w, ":::") == 0 || strcmp(w, "::::") == 0; }

static int parse_sources(options *o, cursor *c) {
  int rc = 0;
  while (rc == 0 && c->i < c->argc) {
    int files = strcmp(c->argv[c->i++], "::::") == 0;
    int start = c->i;
    while (c->i < c->argc && !is_sep(c->argv[c->i]))
      c->i++;
    if (c->i == start)
      return fail("'%s' must be followed by at least one value", files ? "::::" : ":::");
    if (files) {
      for (int k = start; k < c->i && rc == 0; k++)
        rc = add_source(o, 1, c->argv[k]);
    } else if ((rc = add_source(o, 0, NULL)) == 0) {
      o->sources[o->nsources - 1].values = c->argv + start;
      o->sources[o->nsources - 1].nvalues = (size_t)(c->i - start);
    }
  }
  return rc;
}

static int check(options *o) {
  size_t stdin_sources = 0;
  if (o->nsources == 0 && add_source(o, 1, "-") != 0)
    return MP_ENOMEM;
  for (size_t i = 0; i < o->nsources; i++)
    stdin_sources += o->sources[i].is_file && o->sources[i].path == NULL;
  if (stdin_sources > 1)
    return fail("%s", "standard input can be only one input source");
  if (o->resume != RESUME_NONE && o->joblog == NULL)
    return fail("%s", "--resume and --resume-failed need --joblog FILE");
  if (o->keep_order && o->output != OUT_GROUP)
    return fail("%s", "--keep-order cannot be combined with --line-buffer or --ungroup");
  if (o->tag && o->output == OUT_UNGROUP)
    return fail("%s", "--tag cannot be combined with --ungroup");
  if (o->dry_run)
    o->output = OUT_GROUP; /* the printed commands are each job's output */
  if (o->ncommand == 0)
    o->shell = 1; /* each value is a command line */
  return 0;
}

int cli_parse(options *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->jobs = mp_cpu_count();
  o->attempts = 1;
  o->bar = -1;
  cursor c = {argc, 1, argv};
  int rc = 0;
  for (; rc == 0 && c.i < argc; c.i++) {
    const char *a = argv[c.i];
    if (strcmp(a, "--") == 0) {
      c.i++;
      break;
    }
    if (a[0] != '-' || a[1] == '\0' || is_sep(a))
      break;
    rc = a[1] == '-' ? long_option(o, &c, a) : short_options(o, &c, a);
  }
  if (rc != 0)
    return rc;
  o->command = argv + c.i;
  while (c.i < argc && !is_sep(argv[c.i]))
    c.i++;
  o->ncommand = (size_t)(argv + c.i - o->command);
  if ((rc = parse_sources(o, &c)) != 0)
    return rc;
  return check(o);
}

void cli_free(options *o) {
  free(o->sources);
  o->sources = NULL;
}

int error_context(const char *context) {
  char was[1024]; /* mp_set_error writes where mp_last_error points: copy it first */
  snprintf(was, sizeof was, "%s", mp_last_error());
  return mp_set_error(mp_last_error_code(), "%s: %s", context, was);
}
