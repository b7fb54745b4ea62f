/* Each CPU's descriptor tables (cpu_tables.c). */
#ifndef HVB_CPU_TABLES_H
#define HVB_CPU_TABLES_H
#include <stdint.h>

/* An interrupt gate in the shared IDT (IF cleared on entry); ist 0: the current stack. */
void cpu_set_gate(int vector, uint64_t handler, uint8_t ist);
/* Loads this CPU's IDT, TSS, syscall MSRs and enables its local APIC. */
void cpu_tables_load(int cpu);
/* This CPU's kernel stack top, for interrupts it takes in user mode. */
void cpu_set_kernel_stack(int cpu, uint64_t top);
#endif
