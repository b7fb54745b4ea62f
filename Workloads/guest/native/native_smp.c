/*
 * Native equivalents of the SMP benchmarks, where honest ones exist: a second thread on a
 * second host CPU stands in for the second vCPU. cpu.cacheline-pingpong is the same locked
 * hand-off; cpu.tlb-shootdown is mprotect of a page both threads have touched (the kernel
 * changes the PTE and, for the downgrade, IPIs the other CPU and waits for its flush). User
 * space cannot send IPIs, so cpu.ipi and cpu.ipi-halt have no native form.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>

#include "hvb.h"

#define WAIT_LIMIT (1ull << 34)

enum responder_task { RESPONDER_NONE, RESPONDER_PINGPONG, RESPONDER_TOUCH };
static volatile enum responder_task task;
static volatile uint64_t line[8] __attribute__((aligned(64)));
static volatile uint8_t *shared_page;
static int second_cpu = -1;

static inline void relax(void) { __asm__ volatile("pause" : : : "memory"); }

static void *respond(void *unused) {
    (void)unused;
    for (;;) {
        if (task == RESPONDER_PINGPONG && (line[0] & 1)) __atomic_fetch_add(&line[0], 1, __ATOMIC_SEQ_CST);
        else if (task == RESPONDER_TOUCH) (void)*shared_page;
        relax();
    }
    return 0;
}

/* This thread on the first CPU it may use, the responder on the second (the CPUs --pin gave
 * the process, or all of them); a failure reason when there is only one. */
static const char *start_responder(enum responder_task what) {
    if (second_cpu >= 0) return task == what ? 0 : "responder-busy";
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return "cannot-read-cpu-affinity";
    int first = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && second_cpu < 0; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (first < 0) first = cpu;
        else second_cpu = cpu;
    }
    if (second_cpu < 0) return "needs-two-host-cpus";
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) return "cannot-pin-the-measuring-thread";
    task = what;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    CPU_ZERO(&one);
    CPU_SET(second_cpu, &one);
    pthread_attr_setaffinity_np(&attributes, sizeof one, &one);
    pthread_t thread;
    int failed = pthread_create(&thread, &attributes, respond, 0);
    pthread_attr_destroy(&attributes);
    return failed ? "cannot-start-the-second-thread" : 0;
}

static int cacheline_pingpong(uint64_t count) {
    if ((plat.failure = start_responder(RESPONDER_PINGPONG))) return 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t mine = __atomic_add_fetch(&line[0], 1, __ATOMIC_SEQ_CST), start = plat_cycles();
        if (!(mine & 1)) {
            plat.failure = "pingpong-line-out-of-step";
            return 0;
        }
        while (line[0] == mine) {
            if (plat_cycles() - start > WAIT_LIMIT) {
                plat.failure = "pingpong-not-answered";
                return 0;
            }
            relax();
        }
    }
    return 1;
}

/* One operation: read-only (the shootdown), then read-write again and a write through it. */
static int tlb_shootdowns(uint64_t count) {
    if (!shared_page) {
        void *page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) {
            plat.failure = "cannot-map-the-shared-page";
            return 0;
        }
        shared_page = page;
        *(volatile uint8_t *)shared_page = 1;
    }
    if ((plat.failure = start_responder(RESPONDER_TOUCH))) return 0;
    for (uint64_t i = 0; i < count; i++) {
        if (mprotect((void *)shared_page, 4096, PROT_READ) != 0 ||
            mprotect((void *)shared_page, 4096, PROT_READ | PROT_WRITE) != 0) {
            plat.failure = "mprotect-failed";
            return 0;
        }
        *(volatile uint8_t *)shared_page = (uint8_t)i;
    }
    return 1;
}

void native_smp_install(void) {
    plat.cacheline_pingpong = cacheline_pingpong;
    plat.tlb_shootdowns = tlb_shootdowns;
    plat.no_ipi = plat.no_ipi_halt = "user-space-cannot-send-ipis";
}
