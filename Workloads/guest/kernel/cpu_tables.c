/*
 * Each CPU's descriptor tables: the shared IDT, a TSS per CPU (its kernel stack for interrupts
 * from user mode, its double-fault stack, the I/O bitmap that lets user mode use ports), the
 * GDT's TSS descriptors, the syscall MSRs and the local APIC's spurious vector. The bootstrap
 * processor loads them in kernel.c, each application processor in smp.c.
 */
#include "cpu_tables.h"
#include "kernel.h"

struct interrupt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type_attributes;
    uint16_t offset_middle;
    uint32_t offset_high, reserved;
} __attribute__((packed));

struct task_state_segment {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, io_map_base;
    /* All ports allowed (bits clear) plus the terminating byte. IOPL=3 should already grant
     * them, but kvm_pvm does not honour IOPL for user mode; the bitmap works everywhere. */
    uint8_t io_bitmap[8192 + 1];
} __attribute__((packed));

extern uint64_t gdt[];
extern char syscall_entry[];

/* All 256 vectors: exceptions, the timer and the spurious vector are present; any other vector
 * arriving raises #NP, which the exception path reports. */
static struct interrupt_gate idt[256] __attribute__((aligned(16)));
static struct task_state_segment tss[MAX_CPUS] __attribute__((aligned(16)));
/* Application processors take interrupts on the stack they run on (smp.c), and a double fault
 * on their own. */
static uint8_t double_fault_stacks[MAX_CPUS][4096] __attribute__((aligned(16)));

static inline void write_msr(uint32_t msr, uint64_t value) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

void cpu_set_gate(int vector, uint64_t handler, uint8_t ist) {
    idt[vector] = (struct interrupt_gate){
        .offset_low = (uint16_t)handler,
        .selector = 0x08,
        .ist = ist,
        .type_attributes = 0x8E, /* interrupt gate: IF cleared on entry */
        .offset_middle = (uint16_t)(handler >> 16),
        .offset_high = (uint32_t)(handler >> 32),
    };
}

/* The IDT is shared; each CPU has its own TSS (its kernel stack for interrupts from user mode,
 * its double-fault stack, the I/O bitmap that lets user mode use ports), syscall MSRs and
 * local APIC, software-enabled with the spurious vector. */
void cpu_tables_load(int cpu) {
    *lapic_register(LAPIC_SPURIOUS) = 0x100 | SPURIOUS_VECTOR;
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = {sizeof idt - 1, (uint64_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));

    struct task_state_segment *t = &tss[cpu];
    t->ist[0] = (uint64_t)(double_fault_stacks[cpu] + sizeof double_fault_stacks[cpu]);
    t->io_map_base = __builtin_offsetof(struct task_state_segment, io_bitmap);
    t->io_bitmap[8192] = 0xFF;
    uint64_t base = (uint64_t)t, limit = sizeof *t - 1;
    gdt[5 + 2 * cpu] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) |
                       ((base >> 24 & 0xFF) << 56);
    gdt[6 + 2 * cpu] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(0x28 + 16 * cpu));

    write_msr(0xC0000081, (0x10ull << 48) | (0x08ull << 32)); /* STAR */
    write_msr(0xC0000082, (uint64_t)syscall_entry);            /* LSTAR */
    write_msr(0xC0000084, 0x700);                              /* FMASK: TF, IF, DF */
}

/* An application processor's kernel stack top, for interrupts it takes in user mode. */
void cpu_set_kernel_stack(int cpu, uint64_t top) { tss[cpu].rsp[0] = top; }
