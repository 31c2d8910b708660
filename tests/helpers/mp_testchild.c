/* The child program that tests/test_popen.c starts. It does not link multiproc, so what it
 * reports comes from the OS alone. Commands run left to right:
 *   args A B ...   write every following argument, each ending in '\0', then stop
 *   exit N         exit with code N              sleep MS     sleep MS milliseconds
 *   out N / err N  write N pattern bytes to stdout / stderr
 *   print S / eprint S   write S to stdout / stderr
 *   env NAME       write "NAME=value\n" or "NAME unset\n"
 *   cwd            write the working directory and "\n"
 *   cat            copy stdin to stdout        tee2    copy stdin to stdout and stderr
 *   spawn-sleep MS start "mp_testchild sleep MS" with our stdout/stderr, write
 *                  "grandchild <pid>\n"
 *   fds            Linux: write "fds N\n", N = open descriptors other than 0, 1, 2
 *   ids            POSIX: write "pid P pgid G sid S\n"
 *   append PATH S  append S to the file PATH (created if missing)
 *   fail-until PATH N   append a line to PATH, then exit 1 while PATH has fewer than N
 *                  lines (a job that fails N-1 times, then works)
 *   wait-file PATH wait (polling every 10 ms, at most 60 s) until PATH exists
 *   crash          write through a null pointer (Windows: the exit code is the exception's,
 *                  as for any crashing program, not a dialog)
 * Arguments arrive as UTF-8: on Windows they are read with CommandLineToArgvW, as every
 * program built with the Microsoft C runtime would see them. */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE /* nanosleep, dirfd, mkdtemp, setenv */
#endif
#ifdef _WIN32
#  include <windows.h>
#  include <fcntl.h>
#  include <io.h>
#  include <shellapi.h>
#else
#  include <dirent.h>
#  include <spawn.h>
#  include <time.h>
#  include <unistd.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *self_path;

static void put(FILE *f, const void *data, size_t n) {
  if (n > 0 && fwrite(data, 1, n, f) != n)
    exit(90);
  fflush(f);
}

static void put_str(FILE *f, const char *s) { put(f, s, strlen(s)); }

static void pattern(FILE *f, long n) {
  char buf[4096];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (char)('a' + i % 26);
  while (n > 0) {
    size_t k = n > (long)sizeof buf ? sizeof buf : (size_t)n;
    put(f, buf, k);
    n -= (long)k;
  }
}

static void copy_stdin(int both) {
  char buf[16384];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
    put(stdout, buf, n);
    if (both)
      put(stderr, buf, n);
  }
}

#ifdef _WIN32
static char *to_utf8(const wchar_t *w) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
  char *s = malloc((size_t)n);
  WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL);
  return s;
}

static void sleep_ms(long ms) { Sleep((DWORD)ms); }

static void print_env(const char *name) {
  wchar_t wname[256], value[32768];
  MultiByteToWideChar(CP_UTF8, 0, name, -1, wname, 256);
  DWORD n = GetEnvironmentVariableW(wname, value, 32768);
  char line[40000];
  if (n == 0 && GetLastError() == ERROR_ENVVAR_NOT_FOUND)
    snprintf(line, sizeof line, "%s unset\n", name);
  else {
    char *v = to_utf8(value);
    snprintf(line, sizeof line, "%s=%s\n", name, v);
    free(v);
  }
  put_str(stdout, line);
}

static void print_cwd(void) {
  wchar_t w[32768];
  GetCurrentDirectoryW(32768, w);
  char *s = to_utf8(w);
  put_str(stdout, s);
  put_str(stdout, "\n");
  free(s);
}

static void spawn_sleep(const char *ms) {
  wchar_t exe[32768], cmd[33000];
  GetModuleFileNameW(NULL, exe, 32768);
  swprintf(cmd, 33000, L"\"%ls\" sleep %hs", exe, ms);
  STARTUPINFOW si;
  PROCESS_INFORMATION pi;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  if (!CreateProcessW(exe, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi))
    exit(91);
  char line[64];
  snprintf(line, sizeof line, "grandchild %lu\n", (unsigned long)pi.dwProcessId);
  put_str(stdout, line);
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
}

static void print_fds(void) { put_str(stdout, "fds n/a\n"); }

static void print_ids(void) { put_str(stdout, "ids n/a\n"); }
#else
static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void print_env(const char *name) {
  const char *v = getenv(name);
  put_str(stdout, name);
  put_str(stdout, v ? "=" : " unset");
  if (v)
    put_str(stdout, v);
  put_str(stdout, "\n");
}

static void print_cwd(void) {
  char buf[4096];
  if (getcwd(buf, sizeof buf) == NULL)
    exit(92);
  put_str(stdout, buf);
  put_str(stdout, "\n");
}

extern char **environ;

static void spawn_sleep(const char *ms) {
  pid_t pid;
  char *argv[] = {self_path, "sleep", (char *)ms, NULL};
  if (posix_spawn(&pid, self_path, NULL, NULL, argv, environ) != 0)
    exit(91);
  char line[64];
  snprintf(line, sizeof line, "grandchild %ld\n", (long)pid);
  put_str(stdout, line);
}

static void print_ids(void) {
  char line[96];
  snprintf(line, sizeof line, "pid %ld pgid %ld sid %ld\n", (long)getpid(), (long)getpgrp(),
           (long)getsid(0));
  put_str(stdout, line);
}

static void print_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  if (d == NULL) {
    put_str(stdout, "fds n/a\n");
    return;
  }
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd > 2 && fd != dirfd(d))
      n++;
  }
  closedir(d);
  char line[32];
  snprintf(line, sizeof line, "fds %d\n", n);
  put_str(stdout, line);
}
#endif

static void append_file(const char *path, const char *text) {
  FILE *f = fopen(path, "ab");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
    exit(93);
}

static int count_lines(const char *path) {
  FILE *f = fopen(path, "rb");
  int c, n = 0;
  if (f == NULL)
    return 0;
  while ((c = fgetc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

static void wait_file(const char *path) {
  for (int i = 0; i < 6000; i++) {
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
      fclose(f);
      return;
    }
    sleep_ms(10);
  }
  exit(94);
}

#ifdef _WIN32
static LONG WINAPI end_with_code(EXCEPTION_POINTERS *ep) {
  TerminateProcess(GetCurrentProcess(), ep->ExceptionRecord->ExceptionCode);
  return EXCEPTION_EXECUTE_HANDLER;
}
#endif

static void crash(void) {
#ifdef _WIN32
  SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
  SetUnhandledExceptionFilter(end_with_code);
#endif
  /* Not NULL, so no sanitizer intercepts; read through a volatile so that an optimising
   * compiler cannot see (and warn about) the constant address. */
  volatile uintptr_t addr = 16;
  *(volatile int *)addr = 1;
}

static int run(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *c = argv[i], *a = i + 1 < argc ? argv[i + 1] : "0";
    if (strcmp(c, "args") == 0) {
      for (int k = i + 1; k < argc; k++)
        put(stdout, argv[k], strlen(argv[k]) + 1);
      return 0;
    }
    int takes_arg = 1;
    if (strcmp(c, "exit") == 0)
      return atoi(a);
    else if (strcmp(c, "sleep") == 0)
      sleep_ms(atol(a));
    else if (strcmp(c, "out") == 0)
      pattern(stdout, atol(a));
    else if (strcmp(c, "err") == 0)
      pattern(stderr, atol(a));
    else if (strcmp(c, "print") == 0)
      put_str(stdout, a);
    else if (strcmp(c, "eprint") == 0)
      put_str(stderr, a);
    else if (strcmp(c, "env") == 0)
      print_env(a);
    else if (strcmp(c, "spawn-sleep") == 0)
      spawn_sleep(a);
    else if (strcmp(c, "wait-file") == 0)
      wait_file(a);
    else if (strcmp(c, "append") == 0 || strcmp(c, "fail-until") == 0) {
      const char *b = i + 2 < argc ? argv[i + 2] : "";
      append_file(a, c[0] == 'a' ? b : "x\n");
      if (c[0] == 'f' && count_lines(a) < atoi(b))
        return 1;
      i++;
    } else {
      takes_arg = 0;
      if (strcmp(c, "cwd") == 0)
        print_cwd();
      else if (strcmp(c, "cat") == 0)
        copy_stdin(0);
      else if (strcmp(c, "tee2") == 0)
        copy_stdin(1);
      else if (strcmp(c, "fds") == 0)
        print_fds();
      else if (strcmp(c, "ids") == 0)
        print_ids();
      else if (strcmp(c, "crash") == 0)
        crash();
      else {
        fprintf(stderr, "mp_testchild: unknown command '%s'\n", c);
        return 99;
      }
    }
    i += takes_arg;
  }
  return 0;
}

int main(int argc, char **argv) {
#ifdef _WIN32
  _setmode(_fileno(stdin), _O_BINARY);
  _setmode(_fileno(stdout), _O_BINARY);
  _setmode(_fileno(stderr), _O_BINARY);
  int wargc;
  wchar_t **wargv = CommandLineToArgvW(GetCommandLineW(), &wargc);
  argv = calloc((size_t)wargc + 1, sizeof *argv);
  for (int i = 0; i < wargc; i++)
    argv[i] = to_utf8(wargv[i]);
  argc = wargc;
#endif
  self_path = argv[0];
  return run(argc, argv);
}
