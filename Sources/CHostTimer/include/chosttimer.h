#ifndef CHOSTTIMER_H
#define CHOSTTIMER_H
#include <stdint.h>

/* The host's time-stamp counter: the emulator's rdtsc returns it (as QEMU TCG does), so guest
 * cycle counts mean the same thing in every mode. */
static inline uint64_t chosttimer_rdtsc(void) {
#if defined(__x86_64__)
    uint32_t low, high;
    __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
    return ((uint64_t)high << 32) | low;
#else
    return 0;
#endif
}

#endif
