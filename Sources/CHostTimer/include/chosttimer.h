#ifndef CHOSTTIMER_H
#define CHOSTTIMER_H
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* Whether the host has BMI2 (shrx, shlx): the binary translator's inline TLB checks use them
 * because they leave the flags alone. CPUID leaf 7, subleaf 0, EBX bit 8. */
static inline int chosttimer_host_has_bmi2(void) {
#if defined(__x86_64__)
    uint32_t eax = 7, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return (ebx >> 8) & 1;
#else
    return 0;
#endif
}

/* An anonymous shared-memory file for the translator's code cache, mapped twice (written
 * through one view, run from the other) so placing code never changes page protections.
 * memfd_create(2) by system call: Swift's Glibc module does not import the wrapper. */
static inline int chosttimer_code_memory_file(void) {
    return (int)syscall(SYS_memfd_create, "hvbench-code-cache", 1u /* MFD_CLOEXEC */);
}

#endif
