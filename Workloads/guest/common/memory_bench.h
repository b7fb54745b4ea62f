#ifndef HVB_MEMORY_BENCH_H
#define HVB_MEMORY_BENCH_H
#include "hvb.h"

/* What one balloon repetition times. */
enum balloon_benchmark { BALLOON_INFLATE, BALLOON_DEFLATE, BALLOON_REFAULT };

/* Sets up the region of `job->iterations` pages the balloon benchmarks give and take back. */
const char *balloon_prepare(const struct hvb_job *job);
/* One repetition over `pages` pages; returns the TSC cycles of its timed part, or sets *failure. */
uint64_t balloon_repetition(enum balloon_benchmark which, uint64_t pages, const char **failure);

/* mem.page-sharing: fills `job->iterations` pages with content every VM of the run shares. */
const char *sharing_prepare(const struct hvb_job *job);
/* Says where the host's go-ahead will be written, waits for it (the host has let KSM merge
 * the pages meanwhile), then writes to each shared page once: the TSC cycles of those writes,
 * or UINT64_MAX with *failure. */
uint64_t sharing_break(uint64_t pages, const char **failure);

/* mem.balloon-reclaim: makes `pages` pages resident, says so, then holds in the balloon what
 * the host asks for (up to those pages) until the host stops the VM; returns only on error. */
const char *balloon_follow(const struct hvb_job *job);
#endif
