/* The seed's dead-loop program, with a fixed amount of work so that it ends:
 *
 *   import threading, multiprocessing
 *   def loop():
 *       x = 0
 *       while True:
 *           x = x ^ 1
 *   for i in range(multiprocessing.cpu_count()):
 *       t = threading.Thread(target=loop)
 *       t.start()
 *
 * In CPython the GIL lets those N threads use about one core (the seed measures 102% on 4
 * cores). C has no GIL: N threads use N cores, and so do N processes. This program runs the
 * same loop once alone, then on every core in threads, then in processes, and prints the
 * speed-up, i.e. how many cores' worth of work ran at once. */
#include <multiproc.h>
#include <stdint.h>
#include <stdio.h>

#define ITERATIONS 500000000ull

static void loop(void *arg) {
  volatile unsigned x = 0; /* volatile: the compiler may not fold the loop away */
  for (uint64_t i = 0; i < ITERATIONS; i++)
    x = x ^ 1;
  (void)arg;
}

static int loop_process(mp_args *args) {
  loop(args);
  return 0;
}

static double seconds(uint64_t ns) { return (double)ns / 1e9; }

static int run_threads(int n, double *elapsed) {
  mp_thread *t[256];
  uint64_t t0 = mp_monotonic_ns();
  for (int i = 0; i < n; i++)
    if (mp_thread_create(&t[i], loop, NULL, NULL) != 0)
      return -1;
  for (int i = 0; i < n; i++) {
    mp_thread_join(t[i], MP_FOREVER);
    mp_thread_free(t[i]);
  }
  *elapsed = seconds(mp_monotonic_ns() - t0);
  return 0;
}

static int run_processes(int n, double *elapsed) {
  mp_process *p[256];
  uint64_t t0 = mp_monotonic_ns();
  for (int i = 0; i < n; i++)
    if (mp_process_create(&p[i], loop_process, NULL, NULL) != 0 || mp_process_start(p[i]) != 0)
      return -1;
  for (int i = 0; i < n; i++) {
    mp_process_join(p[i], MP_FOREVER);
    mp_process_free(p[i]);
  }
  *elapsed = seconds(mp_monotonic_ns() - t0);
  return 0;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  int n = mp_cpu_count();
  if (n > 256)
    n = 256;
  double one, threads, processes;
  if (run_threads(1, &one) != 0 || run_threads(n, &threads) != 0 ||
      run_processes(n, &processes) != 0) {
    fprintf(stderr, "multicore: %s\n", mp_last_error());
    return 1;
  }
  /* n loops ran in `threads` seconds; one loop alone took `one`: n*one/threads cores. */
  printf("%d cores; one loop alone: %.2f s\n", n, one);
  printf("%d threads:   %.2f s, speed-up %.1fx (about %.0f%% CPU)\n", n, threads, n * one / threads,
         100.0 * n * one / threads);
  printf("%d processes: %.2f s, speed-up %.1fx (about %.0f%% CPU)\n", n, processes,
         n * one / processes, 100.0 * n * one / processes);
  return 0;
}
