/*
 * The SMP benchmarks at CPL3: the bootstrap processor (CPU 0) runs the measured side, the first
 * application processor (CPU 1) answers. CPU 1 idles in hlt in the kernel until told what to
 * run; its user loop below runs with interrupts on, as a busy CPU of an OS does.
 */
#include "hvb.h"
#include "kernel.h"

#define RESPONDER 1
/* A handler or an answer that never comes fails the benchmark instead of hanging it: about
 * 2^34 cycles (seconds on any host). */
#define WAIT_LIMIT (1ull << 34)

static inline void relax(void) { __asm__ volatile("pause" : : : "memory"); }

/* cpu.cacheline-pingpong, the answering side: whenever the line holds an odd value, make it
 * even with a locked add. */
static void answer_pingpong(uint32_t cpu) {
    while (hvb_ap_command[cpu] == AP_PINGPONG) {
        if (hvb_pingpong_line[0] & 1) __atomic_fetch_add(&hvb_pingpong_line[0], 1, __ATOMIC_SEQ_CST);
        else relax();
    }
}

void ap_user_main(uint32_t cpu) {
    volatile uint8_t *page = (volatile uint8_t *)(BENCHMARK_REGION + 4096);
    for (;;) {
        uint64_t command = hvb_ap_command[cpu];
        hvb_ap_running[cpu] = command;
        if (command == AP_PINGPONG) answer_pingpong(cpu);
        /* AP_TOUCH keeps the benchmark page's translation in this CPU's TLB. */
        else if (command == AP_TOUCH) (void)*page;
        else if (command == AP_LITMUS) hvb_litmus_ap(cpu);
        relax();
    }
}

/* Puts the responder to `command` and waits until its user loop runs it; 0 if there is no
 * second CPU or it does not answer. */
static int responder_runs(uint64_t command, const char **failure) {
    if (hvb_cpu_count < 2) {
        *failure = "no-second-cpu";
        return 0;
    }
    if (hvb_ap_running[RESPONDER] == command) return 1;
    hvb_ap_command[RESPONDER] = command;
    *lapic_register(LAPIC_ICR_HIGH) = (uint32_t)hvb_cpu_apic_ids[RESPONDER] << 24;
    *lapic_register(LAPIC_ICR_LOW) = WAKE_VECTOR;
    uint64_t start = plat_cycles();
    while (hvb_ap_running[RESPONDER] != command) {
        if (plat_cycles() - start > WAIT_LIMIT) {
            *failure = "second-cpu-did-not-start-its-loop";
            return 0;
        }
        relax();
    }
    return 1;
}

/* count IPIs to the responder on PING_VECTOR; its handler answers on this CPU's timer vector.
 * Each round trip is timed from just before the ICR write to the answer's handler (its TSC),
 * so what the responder does after answering is not counted. */
static uint64_t ping_round_trips(uint64_t count, const char *failure) {
    *lapic_register(LAPIC_ICR_HIGH) = (uint32_t)hvb_cpu_apic_ids[RESPONDER] << 24;
    hvb_user_interrupts(1);
    uint64_t total = 0, answered = hvb_pings_answered;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t before = hvb_irq_count, start = plat_cycles();
        *lapic_register(LAPIC_ICR_LOW) = PING_VECTOR;
        while (hvb_irq_count == before) {
            if (plat_cycles() - start > WAIT_LIMIT) {
                plat.failure = failure;
                hvb_user_interrupts(0);
                return UINT64_MAX;
            }
        }
        total += hvb_irq_tsc - start;
    }
    hvb_user_interrupts(0);
    if (hvb_pings_answered - answered != count) {
        plat.failure = "ping-count-mismatch";
        return UINT64_MAX;
    }
    return total;
}

/* cpu.ipi: the responder is busy at CPL3 with interrupts on. */
uint64_t hvb_ipi_round_trips(uint64_t count) {
    if (!responder_runs(AP_SPIN, &plat.failure)) return UINT64_MAX;
    return ping_round_trips(count, "ipi-not-answered");
}

/* cpu.ipi-halt: the responder waits in hlt (the kernel's idle loop) and answers from there.
 * Before each IPI, give it the time to get back into hlt after the previous answer: it leaves
 * the handler, re-checks its command and halts, a few instructions. */
uint64_t hvb_ipi_halt_round_trips(uint64_t count) {
    if (hvb_cpu_count < 2) {
        plat.failure = "no-second-cpu";
        return UINT64_MAX;
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t settle = plat_cycles();
        while (plat_cycles() - settle < (1ull << 18)) relax();
        uint64_t cycles = ping_round_trips(1, "halted-cpu-did-not-answer");
        if (cycles == UINT64_MAX) return UINT64_MAX;
        total += cycles;
    }
    return total;
}

/* cpu.tlb-shootdown: change the benchmark page's mapping, invalidate it here (a kernel entry,
 * as cpu.ptemod), and have the responder, which keeps touching the page, invalidate it too and
 * acknowledge; what the responder reads after its invlpg must be the new frame. */
int hvb_tlb_shootdowns(uint64_t count) {
    if (!responder_runs(AP_TOUCH, &plat.failure)) return 0;
    volatile uint8_t *page = (volatile uint8_t *)(BENCHMARK_REGION + 4096);
    hvb_shootdown_address = (uint64_t)page;
    *lapic_register(LAPIC_ICR_HIGH) = (uint32_t)hvb_cpu_apic_ids[RESPONDER] << 24;
    for (uint64_t i = 0; i < count; i++) {
        int which = (int)(i & 1) ^ 1;
        benchmark_page_table[1] = pte_frame_address(which) | 0x7;
        __asm__ volatile("ud2" : : "a"(INVLPG_SERVICE), "D"(page) : "memory");
        uint64_t acknowledged = hvb_shootdown_acks, start = plat_cycles();
        *lapic_register(LAPIC_ICR_LOW) = SHOOTDOWN_VECTOR;
        while (hvb_shootdown_acks == acknowledged) {
            if (plat_cycles() - start > WAIT_LIMIT) {
                plat.failure = "shootdown-not-acknowledged";
                return 0;
            }
            relax();
        }
        if (*page != 0xA0 + which || hvb_shootdown_seen != 0xA0u + which) {
            plat.failure = "stale-translation-after-shootdown";
            return 0;
        }
    }
    return 1;
}

/* cpu.cacheline-pingpong: make the line odd with a locked add, wait until the responder made it
 * even again: two hand-offs of the line per operation. */
int hvb_cacheline_pingpong(uint64_t count) {
    if (!responder_runs(AP_PINGPONG, &plat.failure)) return 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t mine = __atomic_add_fetch(&hvb_pingpong_line[0], 1, __ATOMIC_SEQ_CST), start = plat_cycles();
        if (!(mine & 1)) {
            plat.failure = "pingpong-line-out-of-step";
            return 0;
        }
        while (hvb_pingpong_line[0] == mine) {
            if (plat_cycles() - start > WAIT_LIMIT) {
                plat.failure = "pingpong-not-answered";
                return 0;
            }
            relax();
        }
    }
    return 1;
}
