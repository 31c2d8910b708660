/* Replays fuzz inputs without libFuzzer: every file named on the command line, or found in a
 * directory named there, goes through the target's LLVMFuzzerTestOneInput once. The test
 * suite runs this over each target's seed corpus and every crash ever found (on every leg,
 * Wine included), so a fixed bug stays fixed. Exits 0 when every input ran. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#  include <windows.h>
#else
#  include <dirent.h>
#  include <sys/stat.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return -1;
  }
  size_t cap = 4096, len = 0;
  unsigned char *buf = malloc(cap);
  size_t n;
  while (buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      unsigned char *bigger = realloc(buf, cap * 2);
      if (bigger == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf == NULL) {
    fprintf(stderr, "replay: out of memory reading %s\n", path);
    return -1;
  }
  /* A copy of exactly len bytes, so that ASan sees any read past the input's end. */
  unsigned char *exact = malloc(len ? len : 1);
  if (exact == NULL) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

/* Calls fn for every regular file in dir (not recursive); returns the count or -1. */
static int replay_dir(const char *dir) {
  int count = 0;
#ifdef _WIN32
  char pattern[MAX_PATH];
  snprintf(pattern, sizeof pattern, "%s\\*", dir);
  WIN32_FIND_DATAA fd;
  HANDLE h = FindFirstFileA(pattern, &fd);
  if (h == INVALID_HANDLE_VALUE)
    return -1;
  do {
    if ((fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) || fd.cFileName[0] == '.')
      continue;
    char path[MAX_PATH];
    snprintf(path, sizeof path, "%s\\%s", dir, fd.cFileName);
    if (replay_file(path) != 0)
      count = -1;
    else if (count >= 0)
      count++;
  } while (FindNextFileA(h, &fd));
  FindClose(h);
#else
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (replay_file(path) != 0)
      count = -1;
    else if (count >= 0)
      count++;
  }
  closedir(d);
#endif
  return count;
}

int main(int argc, char **argv) {
  int total = 0;
  for (int i = 1; i < argc; i++) {
    int n = replay_dir(argv[i]);
    if (n < 0 && replay_file(argv[i]) == 0)
      n = 1;
    if (n < 0) {
      fprintf(stderr, "replay: %s is neither a readable file nor a directory\n", argv[i]);
      return 1;
    }
    printf("replay: %d input(s) from %s\n", n, argv[i]);
    total += n;
  }
  printf("replay: %d input(s) ran without a finding\n", total);
  return 0;
}
