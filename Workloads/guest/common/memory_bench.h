#ifndef HVB_MEMORY_BENCH_H
#define HVB_MEMORY_BENCH_H
#include "hvb.h"

/* What one balloon repetition times. */
enum balloon_benchmark { BALLOON_INFLATE, BALLOON_DEFLATE, BALLOON_REFAULT };

/* Sets up the region of `job->iterations` pages the balloon benchmarks give and take back. */
const char *balloon_prepare(const struct hvb_job *job);
/* One repetition over `pages` pages; returns the TSC cycles of its timed part, or sets *failure. */
uint64_t balloon_repetition(enum balloon_benchmark which, uint64_t pages, const char **failure);
#endif
