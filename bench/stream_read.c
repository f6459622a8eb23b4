/* The machine's memory read bandwidth, as decode sees it: every core streams its share of a
 * buffer far larger than the caches, summing 64-bit words (the loads are the work). Prints the
 * best of 5 passes in GB/s. bench/compare.py builds and runs it next to the bandwidth check.
 *
 *   cc -O2 -pthread bench/stream_read.c -o stream_read && ./stream_read [MiB] [threads] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct part { const uint64_t* p; size_t n; uint64_t sum; };

static void* reader(void* arg) {
  struct part* w = arg;
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= w->n; i += 4) {
    a += w->p[i]; b += w->p[i + 1]; c += w->p[i + 2]; d += w->p[i + 3];
  }
  w->sum = a + b + c + d;
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  long threads = argc > 2 ? strtol(argv[2], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  if (threads < 1) threads = 1;
  if (threads > 256) threads = 256;
  size_t words = mib * 1024 * 1024 / 8;
  uint64_t* buf = malloc(words * 8);
  if (!buf) { fprintf(stderr, "out of memory\n"); return 1; }
  memset(buf, 1, words * 8);  /* touch every page before timing */
  double best = 1e30;
  uint64_t check = 0;
  for (int pass = 0; pass < 5; ++pass) {
    pthread_t t[256];
    struct part parts[256];
    double t0 = now();
    for (long i = 0; i < threads; ++i) {
      parts[i].p = buf + words / threads * i;
      parts[i].n = words / threads;
      pthread_create(&t[i], NULL, reader, &parts[i]);
    }
    for (long i = 0; i < threads; ++i) { pthread_join(t[i], NULL); check += parts[i].sum; }
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  printf("{\"read_gb_per_s\": %.2f, \"threads\": %ld, \"mib\": %zu, \"check\": %llu}\n",
         (double)(words / threads * threads * 8) / best / 1e9, threads, mib, (unsigned long long)(check & 1));
  free(buf);
  return 0;
}
