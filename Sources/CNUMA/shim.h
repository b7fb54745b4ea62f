#include <numa.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The CPU the calling thread runs on (getcpu(2)), or -1. */
static inline int cnuma_current_cpu(void) {
    unsigned cpu = 0;
    return syscall(SYS_getcpu, &cpu, (void *)0, (void *)0) == 0 ? (int)cpu : -1;
}
