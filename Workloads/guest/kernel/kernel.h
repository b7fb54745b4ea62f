#ifndef KERNEL_H
#define KERNEL_H
#include <stdint.h>
#include "interrupts.h"
#include "port_io.h"

#define BOOT_MILESTONE_PORT 0x80
#define DEBUG_EXIT_PORT 0xF4
#define COM1 0x3F8
/* cpu.pio reads this port, cpu.mmio this page: neither is claimed by hvbench's VMM or by
 * QEMU's pc machine, so both reach the VMM's "unclaimed access" path. */
#define UNCLAIMED_PORT 0x0455
#define UNCLAIMED_MMIO 0xD0000000ull
/* 2 MiB region (page-directory entry 500 = 1000 MiB) mapped with 4 KiB pages. */
#define BENCHMARK_PD_INDEX 500
/* rax value with which ud2 asks the kernel for invlpg (see entry.S). */
#define INVLPG_SERVICE 0x1a7e
#define BENCHMARK_REGION ((uint64_t)BENCHMARK_PD_INDEX << 21)
/* SMP: vectors an application processor handles for the benchmarks (smp_entry.S), the CPUs
 * the kernel supports, and where the real-mode trampoline is copied (a SIPI's vector is its
 * page number, so it lies below 1 MiB and clear of the start-of-day data at 0x6000-0x7FFF). */
#define PING_VECTOR 0xE0
#define SHOOTDOWN_VECTOR 0xE1
#define WAKE_VECTOR 0xE2
#define MAX_CPUS 8
#define TRAMPOLINE_BASE 0x8000
#define LAPIC_ID 0x20
#define LAPIC_ICR_HIGH 0x310

/* Exit codes written to DEBUG_EXIT_PORT; the VMM reports (code << 1) | 1. */
#define GUEST_EXIT_OK 0
#define GUEST_EXIT_FAILED 1
#define GUEST_EXIT_BAD_JOB 2
#define GUEST_EXIT_FAULT 0x7F

static inline __attribute__((noreturn)) void guest_exit(uint8_t code) {
    outb(DEBUG_EXIT_PORT, code);
    for (;;) __asm__ volatile("pause"); /* hlt would #GP at CPL3 */
}

void user_main(uint32_t start_info);
/* The flags user code starts with: IOPL=3 (port I/O without the kernel), reserved bit 1, and
 * interrupts off or on. */
#define USER_RFLAGS 0x3002ull
#define USER_RFLAGS_INTERRUPTS 0x3202ull
void enter_user(void (*entry)(uint32_t), void *stack, uint64_t argument, uint64_t rflags)
    __attribute__((noreturn));

/* ---- SMP (smp.c, smp_user.c) */
/* Starts the application processors the ACPI MADT lists, the way an OS does (INIT-SIPI-SIPI
 * into the real-mode trampoline); returns how many CPUs run, this one included. */
int smp_start(uint64_t rsdp_address);
/* What an application processor does next: idle in hlt (where cpu.ipi-halt finds it), or run
 * ap_user_main at CPL3 with interrupts on (the running target of cpu.ipi, cpu.tlb-shootdown
 * and cpu.cacheline-pingpong). Set by the bootstrap processor, followed by a WAKE_VECTOR IPI. */
enum ap_command { AP_IDLE = 0, AP_SPIN = 1, AP_TOUCH = 2, AP_PINGPONG = 3, AP_LITMUS = 4 };
extern volatile uint64_t hvb_ap_command[MAX_CPUS];
/* The command each AP's user loop is running, once it runs it. */
extern volatile uint64_t hvb_ap_running[MAX_CPUS];
extern volatile uint32_t hvb_cpu_count;
extern volatile uint8_t hvb_cpu_apic_ids[MAX_CPUS];
extern volatile uint64_t hvb_pings_answered, hvb_shootdown_address, hvb_shootdown_seen, hvb_shootdown_acks;
extern volatile uint64_t hvb_pingpong_line[8];
void ap_user_main(uint32_t cpu);
/* CPL3: interrupts on or off for the caller (a kernel service). */
void hvb_user_interrupts(int on);
uint64_t hvb_ipi_round_trips(uint64_t count);
uint64_t hvb_ipi_halt_round_trips(uint64_t count);
int hvb_tlb_shootdowns(uint64_t count);
int hvb_cacheline_pingpong(uint64_t count);
/* The memory-model litmus tests (litmus.c): the job, and an application processor's part. */
int hvb_litmus(uint64_t iterations, int inject_violation);
void hvb_litmus_ap(uint32_t cpu);
void hvb_report_fault(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2, uint64_t cs);
void hvb_report_line(const char *kind, const char *key, const char *value);
uint64_t pte_frame_address(int which);
extern uint64_t benchmark_page_table[512];
extern volatile uint64_t hvb_syscall_stayed_in_user_mode;
#endif
