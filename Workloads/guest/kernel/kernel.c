/*
 * The CPL0 part of the benchmark guest: descriptor tables, syscall MSRs, the benchmark page
 * table, then straight to user mode. Everything here runs once per boot and is kept short
 * because CPL0 code may be emulated by the host (see README: software-assisted KVM).
 */
#include "hvb.h"
#include "kernel.h"
#include "start_info.h"

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

struct exception_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

extern uint64_t gdt[];
extern uint64_t page_directories[];
extern const uint64_t exception_stubs[32];
extern char timer_interrupt_entry[], spurious_interrupt_entry[];
extern char device_interrupt_0[], device_interrupt_1[], device_interrupt_2[], device_interrupt_3[];
extern char ping_interrupt_entry[], shootdown_interrupt_entry[], wake_interrupt_entry[];
extern char syscall_entry[];

/* All 256 vectors: exceptions, the timer and the spurious vector are present; any other vector
 * arriving raises #NP, which the exception path reports. */
static struct interrupt_gate idt[256] __attribute__((aligned(16)));
volatile uint64_t hvb_syscall_stayed_in_user_mode;
volatile uint64_t hvb_irq_count, hvb_irq_tsc, hvb_wake_tsc;
volatile uint64_t hvb_device_interrupts[DEVICE_VECTORS], hvb_device_spurious[DEVICE_VECTORS];
volatile uint32_t hvb_device_causes[DEVICE_VECTORS];
volatile void *volatile hvb_device_cause_register[DEVICE_VECTORS];
volatile uint8_t hvb_device_cause_width[DEVICE_VECTORS];
static struct task_state_segment tss[MAX_CPUS] __attribute__((aligned(16)));
static uint8_t kernel_stack[16384] __attribute__((aligned(16)));
/* Application processors take interrupts on the stack they run on (smp.c), and a double fault
 * on their own. */
static uint8_t double_fault_stacks[MAX_CPUS][4096] __attribute__((aligned(16)));
static uint8_t user_stack[65536] __attribute__((aligned(16)));
/* Referenced by entry.S. */
__asm__(".globl kernel_stack_top\n.set kernel_stack_top, kernel_stack + 16384");

/* 4 KiB page table for the 2 MiB region at benchmark_region: entry 0 is never present
 * (cpu.pgfault), entry 1 alternates between two frames (cpu.ptemod). */
uint64_t benchmark_page_table[512] __attribute__((aligned(4096)));
static uint8_t pte_frames[2][4096] __attribute__((aligned(4096)));

static inline void write_msr(uint32_t msr, uint64_t value) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

static void set_gate(int vector, uint64_t handler, uint8_t ist) {
    idt[vector] = (struct interrupt_gate){
        .offset_low = (uint16_t)handler,
        .selector = 0x08,
        .ist = ist,
        .type_attributes = 0x8E, /* interrupt gate: IF cleared on entry */
        .offset_middle = (uint16_t)(handler >> 16),
        .offset_high = (uint32_t)(handler >> 32),
    };
}

void kernel_main(uint32_t start_info) {
    outb(BOOT_MILESTONE_PORT, 2); /* milestone 2: long mode, kernel C code */

    for (int v = 0; v < 32; v++) set_gate(v, exception_stubs[v], v == 8 ? 1 : 0); /* #DF: own stack */
    set_gate(TIMER_VECTOR, (uint64_t)timer_interrupt_entry, 0);
    set_gate(SPURIOUS_VECTOR, (uint64_t)spurious_interrupt_entry, 0);
    set_gate(FIRST_DEVICE_VECTOR + 0, (uint64_t)device_interrupt_0, 0);
    set_gate(FIRST_DEVICE_VECTOR + 1, (uint64_t)device_interrupt_1, 0);
    set_gate(FIRST_DEVICE_VECTOR + 2, (uint64_t)device_interrupt_2, 0);
    set_gate(FIRST_DEVICE_VECTOR + 3, (uint64_t)device_interrupt_3, 0);
    set_gate(PING_VECTOR, (uint64_t)ping_interrupt_entry, 0);
    set_gate(SHOOTDOWN_VECTOR, (uint64_t)shootdown_interrupt_entry, 0);
    set_gate(WAKE_VECTOR, (uint64_t)wake_interrupt_entry, 0);
    /* The legacy PICs stay masked (QEMU's firmware leaves its PIT ticking on IRQ 0); interrupts
     * come through the local APIC. */
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    tss[0].rsp[0] = (uint64_t)(kernel_stack + sizeof kernel_stack);
    cpu_tables_load(0);

    benchmark_page_table[0] = 0;
    benchmark_page_table[1] = (uint64_t)pte_frames[0] | 0x7;
    pte_frames[0][0] = 0xA0;
    pte_frames[1][0] = 0xA1;
    page_directories[BENCHMARK_PD_INDEX] = (uint64_t)benchmark_page_table | 0x7;
    __asm__ volatile("invlpg (%0)" : : "r"(BENCHMARK_REGION) : "memory");

    const struct hvm_start_info *info = (const void *)(uint64_t)start_info;
    smp_start(info->magic == HVM_START_MAGIC ? info->rsdp_paddr : 0);
    enter_user(user_main, user_stack + sizeof user_stack, start_info, USER_RFLAGS);
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

/* Only unexpected exceptions get here (expected ones take the fast path in entry.S). */
void exception_handler(struct exception_frame *frame) {
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    hvb_report_fault(frame->vector, frame->error, frame->rip, cr2, frame->cs);
    guest_exit(GUEST_EXIT_FAULT);
}

uint64_t pte_frame_address(int which) { return (uint64_t)pte_frames[which]; }

/* The compiler may emit calls to these even in freestanding code. */
void *memset(void *destination, int value, size_t count) {
    uint8_t *d = destination;
    while (count--) *d++ = (uint8_t)value;
    return destination;
}

void *memcpy(void *destination, const void *source, size_t count) {
    uint8_t *d = destination;
    const uint8_t *s = source;
    while (count--) *d++ = *s++;
    return destination;
}
