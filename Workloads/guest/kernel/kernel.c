/*
 * The CPL0 part of the benchmark guest: the interrupt gates, the benchmark page table, the
 * other CPUs (smp.c), then straight to user mode. Everything here runs once per boot and is kept short
 * because CPL0 code may be emulated by the host (see README: software-assisted KVM).
 */
#include "hvb.h"
#include "cpu_tables.h"
#include "kernel.h"
#include "start_info.h"



struct exception_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

extern uint64_t page_directories[];
extern const uint64_t exception_stubs[32];
extern char timer_interrupt_entry[], spurious_interrupt_entry[];
extern char device_interrupt_0[], device_interrupt_1[], device_interrupt_2[], device_interrupt_3[];
extern char ping_interrupt_entry[], shootdown_interrupt_entry[], wake_interrupt_entry[];

volatile uint64_t hvb_syscall_stayed_in_user_mode;
volatile uint64_t hvb_irq_count, hvb_irq_tsc, hvb_wake_tsc;
volatile uint64_t hvb_device_interrupts[DEVICE_VECTORS], hvb_device_spurious[DEVICE_VECTORS];
volatile uint32_t hvb_device_causes[DEVICE_VECTORS];
volatile void *volatile hvb_device_cause_register[DEVICE_VECTORS];
volatile uint8_t hvb_device_cause_width[DEVICE_VECTORS];
static uint8_t kernel_stack[16384] __attribute__((aligned(16)));
static uint8_t user_stack[65536] __attribute__((aligned(16)));
/* Referenced by entry.S. */
__asm__(".globl kernel_stack_top\n.set kernel_stack_top, kernel_stack + 16384");

/* 4 KiB page table for the 2 MiB region at benchmark_region: entry 0 is never present
 * (cpu.pgfault), entry 1 alternates between two frames (cpu.ptemod). */
uint64_t benchmark_page_table[512] __attribute__((aligned(4096)));
static uint8_t pte_frames[2][4096] __attribute__((aligned(4096)));



/* KVM's paravirtual CPU interface, where the VMM presents it (hvbench's `paravirt` system):
 * leaf 0x40000001's features when leaf 0x40000000 says "KVMKVMKVM", else 0. */
uint32_t hvb_kvm_features;
/* PV EOI (feature bit 6): the host sets bit 0 of this word when the interrupt it injects needs
 * no EOI write, and the handler clears the bit instead of writing the local APIC's EOI register
 * (an exit). The bootstrap processor's alone: timer and device interrupts are delivered to it
 * (MSI and IOAPIC destination 0); the application processors' handlers write the EOI. */
volatile uint32_t hvb_pv_eoi_word __attribute__((aligned(4)));
/* End-of-interrupts done through PV EOI (entry.S), reported after the job. */
volatile uint64_t hvb_pv_eois;
#define KVM_FEATURE_PV_EOI (1u << 6)
#define MSR_KVM_PV_EOI_EN 0x4b564d04u
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01u

/* kvmclock (feature bit 3): the host keeps this structure (the pvclock ABI) up to date, and
 * its multiplier and shift turn TSC ticks into nanoseconds: the guest's TSC rate without
 * calibrating it. */
struct pvclock_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags;
    uint8_t pad[2];
};
static volatile struct pvclock_time_info kvmclock __attribute__((aligned(64)));
/* The TSC rate kvmclock gives, in kHz (0: no kvmclock), reported after the job. */
uint64_t hvb_kvmclock_khz;

static uint64_t kvmclock_tsc_khz(void) {
    uint32_t version, mul;
    int8_t shift;
    do {
        version = kvmclock.version;
        __asm__ volatile("" ::: "memory");
        mul = kvmclock.tsc_to_system_mul;
        shift = kvmclock.tsc_shift;
        __asm__ volatile("" ::: "memory");
    } while ((version & 1) || version != kvmclock.version);
    if (!mul) return 0;
    /* ns per tick = mul * 2^shift / 2^32, so kHz = 2^32 * 10^6 / (mul * 2^shift). */
    uint64_t khz = (1000000ull << 32) / mul;
    return shift >= 0 ? khz >> shift : khz << -shift;
}

static void cpuid_leaf(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

static void paravirtual_setup(void) {
    uint32_t a, b, c, d;
    cpuid_leaf(0x40000000u, &a, &b, &c, &d);
    if (b != 0x4b4d564bu || c != 0x564b4d56u || d != 0x4du) return;
    cpuid_leaf(0x40000001u, &a, &b, &c, &d);
    hvb_kvm_features = a;
    if (hvb_kvm_features & KVM_FEATURE_CLOCKSOURCE2) {
        uint64_t enable = (uint64_t)&kvmclock | 1;
        __asm__ volatile("wrmsr" : : "c"(MSR_KVM_SYSTEM_TIME_NEW), "a"((uint32_t)enable), "d"((uint32_t)(enable >> 32))
                         : "memory");
        hvb_kvmclock_khz = kvmclock_tsc_khz();
    }
    if (hvb_kvm_features & KVM_FEATURE_PV_EOI) {
        uint64_t enable = (uint64_t)&hvb_pv_eoi_word | 1; /* identity-mapped: the address is physical */
        __asm__ volatile("wrmsr" : : "c"(MSR_KVM_PV_EOI_EN), "a"((uint32_t)enable), "d"((uint32_t)(enable >> 32)));
    }
}

void kernel_main(uint32_t start_info) {
    outb(BOOT_MILESTONE_PORT, 2); /* milestone 2: long mode, kernel C code */

    for (int v = 0; v < 32; v++) cpu_set_gate(v, exception_stubs[v], v == 8 ? 1 : 0); /* #DF: own stack */
    cpu_set_gate(TIMER_VECTOR, (uint64_t)timer_interrupt_entry, 0);
    cpu_set_gate(SPURIOUS_VECTOR, (uint64_t)spurious_interrupt_entry, 0);
    cpu_set_gate(FIRST_DEVICE_VECTOR + 0, (uint64_t)device_interrupt_0, 0);
    cpu_set_gate(FIRST_DEVICE_VECTOR + 1, (uint64_t)device_interrupt_1, 0);
    cpu_set_gate(FIRST_DEVICE_VECTOR + 2, (uint64_t)device_interrupt_2, 0);
    cpu_set_gate(FIRST_DEVICE_VECTOR + 3, (uint64_t)device_interrupt_3, 0);
    cpu_set_gate(PING_VECTOR, (uint64_t)ping_interrupt_entry, 0);
    cpu_set_gate(SHOOTDOWN_VECTOR, (uint64_t)shootdown_interrupt_entry, 0);
    cpu_set_gate(WAKE_VECTOR, (uint64_t)wake_interrupt_entry, 0);
    /* The legacy PICs stay masked (QEMU's firmware leaves its PIT ticking on IRQ 0); interrupts
     * come through the local APIC. */
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    cpu_set_kernel_stack(0, (uint64_t)(kernel_stack + sizeof kernel_stack));
    cpu_tables_load(0);

    benchmark_page_table[0] = 0;
    benchmark_page_table[1] = (uint64_t)pte_frames[0] | 0x7;
    pte_frames[0][0] = 0xA0;
    pte_frames[1][0] = 0xA1;
    page_directories[BENCHMARK_PD_INDEX] = (uint64_t)benchmark_page_table | 0x7;
    __asm__ volatile("invlpg (%0)" : : "r"(BENCHMARK_REGION) : "memory");

    paravirtual_setup();
    const struct hvm_start_info *info = (const void *)(uint64_t)start_info;
    smp_start(info->magic == HVM_START_MAGIC ? info->rsdp_paddr : 0);
    enter_user(user_main, user_stack + sizeof user_stack, start_info, USER_RFLAGS);
}


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
