/*
 * Bringing up the application processors the way an OS does: find them in the ACPI MADT (the
 * RSDP from the PVH start info, or found in the BIOS area as firmware leaves it), copy the
 * real-mode trampoline below 1 MiB, and send each one INIT, then SIPI twice, waiting for it to
 * report before starting the next. Runs once per boot at CPL0 (emulated on some hosts, so
 * kept to table walks and a few APIC writes).
 */
#include "hvb.h"
#include "cpu_tables.h"
#include "kernel.h"

#define AP_KERNEL_STACK_SIZE 16384 /* smp_entry.S */
#define AP_USER_STACK_SIZE 16384

volatile uint64_t hvb_ap_command[MAX_CPUS], hvb_ap_running[MAX_CPUS];
volatile uint32_t hvb_cpu_count = 1;
volatile uint8_t hvb_cpu_apic_ids[MAX_CPUS];
volatile uint64_t hvb_pings_answered, hvb_shootdown_address, hvb_shootdown_seen, hvb_shootdown_acks;
/* The cache line cpu.cacheline-pingpong hands back and forth (its first word), alone in it. */
volatile uint64_t hvb_pingpong_line[8] __attribute__((aligned(64)));
/* The index the next AP to arrive takes (smp_entry.S); the bootstrap processor is 0. */
volatile uint32_t hvb_next_cpu_index = 1;
static volatile uint32_t cpu_online[MAX_CPUS];

uint8_t ap_kernel_stacks[MAX_CPUS][AP_KERNEL_STACK_SIZE] __attribute__((aligned(16)));
static uint8_t ap_user_stacks[MAX_CPUS][AP_USER_STACK_SIZE] __attribute__((aligned(16)));

extern const uint8_t ap_trampoline_start[], ap_trampoline_end[];

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem[6], oem_table[8];
    uint32_t oem_revision, creator, creator_revision;
} __attribute__((packed));

static int same(const volatile char *a, const char *b, int count) {
    for (int i = 0; i < count; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static uint8_t byte_sum(const volatile uint8_t *p, uint32_t count) {
    uint8_t sum = 0;
    for (uint32_t i = 0; i < count; i++) sum += p[i];
    return sum;
}

/* The RSDP: "RSD PTR " on a 16-byte boundary with a valid checksum over its first 20 bytes. */
static const volatile uint8_t *valid_rsdp(uint64_t address) {
    const volatile uint8_t *p = (const volatile uint8_t *)address;
    return same((const volatile char *)p, "RSD PTR ", 8) && byte_sum(p, 20) == 0 ? p : 0;
}

static const volatile uint8_t *find_rsdp(uint64_t hint) {
    if (hint && hint < 0xC0000000ull && valid_rsdp(hint)) return valid_rsdp(hint);
    for (uint64_t a = 0xE0000; a < 0x100000; a += 16)
        if (valid_rsdp(a)) return valid_rsdp(a);
    return 0;
}

/* A table the RSDT or XSDT points at, if it lies in mapped RAM and its length is sane. */
static const struct acpi_header *table_at(uint64_t address) {
    if (!address || address >= 0xC0000000ull) return 0;
    const struct acpi_header *h = (const void *)address;
    return h->length >= sizeof *h && h->length <= 0x10000 ? h : 0;
}

static const struct acpi_header *find_madt(const volatile uint8_t *rsdp) {
    uint8_t revision = rsdp[15];
    uint64_t xsdt = *(const volatile uint64_t *)(rsdp + 24);
    int wide = revision >= 2 && xsdt;
    const struct acpi_header *root = table_at(wide ? xsdt : *(const volatile uint32_t *)(rsdp + 16));
    if (!root) return 0;
    uint32_t size = wide ? 8 : 4, count = (root->length - sizeof *root) / size;
    const uint8_t *entries = (const uint8_t *)(root + 1);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t address = wide ? *(const uint64_t *)(entries + i * 8) : *(const uint32_t *)(entries + i * 4);
        const struct acpi_header *table = table_at(address);
        if (table && same(table->signature, "APIC", 4)) return table;
    }
    return 0;
}

static void delay_cycles(uint64_t cycles) {
    uint64_t start = plat_cycles();
    while (plat_cycles() - start < cycles) __asm__ volatile("pause");
}

static void send_ipi(uint8_t apic_id, uint32_t command) {
    /* Wait while a previous IPI is still being sent (delivery status, bit 12), bounded. */
    for (int i = 0; i < 1000 && (*lapic_register(LAPIC_ICR_LOW) & (1u << 12)); i++) __asm__ volatile("pause");
    *lapic_register(LAPIC_ICR_HIGH) = (uint32_t)apic_id << 24;
    *lapic_register(LAPIC_ICR_LOW) = command;
}

/* INIT, then two SIPIs into the trampoline, with the MP specification's waits shortened as
 * current kernels do; then up to about 2^33 cycles (seconds on any host) for the AP to report. */
static int start_ap(int index, uint8_t apic_id) {
    hvb_cpu_apic_ids[index] = apic_id;
    send_ipi(apic_id, 0x4500); /* INIT, level assert */
    delay_cycles(1ull << 20);
    for (int sipi = 0; sipi < 2 && !cpu_online[index]; sipi++) {
        send_ipi(apic_id, 0x4600 | (TRAMPOLINE_BASE >> 12)); /* start-up */
        delay_cycles(1ull << 18);
    }
    uint64_t start = plat_cycles();
    while (!cpu_online[index] && plat_cycles() - start < (1ull << 33)) __asm__ volatile("pause");
    return cpu_online[index];
}

static void copy_trampoline(void) {
    uint8_t *copy = (uint8_t *)TRAMPOLINE_BASE;
    for (const uint8_t *p = ap_trampoline_start; p < ap_trampoline_end; p++) copy[p - ap_trampoline_start] = *p;
}

int smp_start(uint64_t rsdp_address) {
    hvb_cpu_apic_ids[0] = (uint8_t)(*lapic_register(LAPIC_ID) >> 24);
    const volatile uint8_t *rsdp = find_rsdp(rsdp_address);
    const struct acpi_header *madt = rsdp ? find_madt(rsdp) : 0;
    if (!madt) return 1;
    /* After the header: the local APIC address and flags, then entries of (type, length). */
    const uint8_t *entry = (const uint8_t *)madt + sizeof *madt + 8, *end = (const uint8_t *)madt + madt->length;
    int index = 1;
    while (entry + 2 <= end && entry[1] >= 2 && entry + entry[1] <= end && index < MAX_CPUS) {
        /* Processor local APIC: ACPI id, APIC id, flags (enabled, or online-capable). */
        if (entry[0] == 0 && entry[1] >= 8 && (entry[4] & 3) && entry[3] != hvb_cpu_apic_ids[0]) {
            /* Only when there is an AP to start: byte by byte it is a third of a uniprocessor
             * boot's CPL0 instructions, each one emulated on software-assisted KVM. */
            if (index == 1) copy_trampoline();
            if (start_ap(index, entry[3])) index++;
            else break; /* the index is taken by a CPU that may still arrive: start no more */
        }
        entry += entry[1];
    }
    hvb_cpu_count = (uint32_t)index;
    return index;
}

/* Interrupts from user mode land on the top of the AP's kernel stack: what ap_main ran on is
 * abandoned once it enters user mode. */
__attribute__((noreturn)) void ap_main(uint32_t index) {
    cpu_tables_load((int)index);
    uint64_t stack_top = (uint64_t)ap_kernel_stacks[index] + AP_KERNEL_STACK_SIZE;
    cpu_set_kernel_stack((int)index, stack_top);
    __atomic_store_n(&cpu_online[index], 1, __ATOMIC_SEQ_CST);
    for (;;) {
        uint64_t command = hvb_ap_command[index];
        if (command != AP_IDLE)
            enter_user(
                (void (*)(uint32_t))ap_user_main, ap_user_stacks[index] + AP_USER_STACK_SIZE, index, USER_RFLAGS_INTERRUPTS);
        /* sti's one-instruction shadow: an interrupt already pending wakes the hlt. */
        __asm__ volatile("sti\n\thlt\n\tcli" : : : "memory");
    }
}
