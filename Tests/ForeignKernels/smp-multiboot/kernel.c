/* The C part of the foreign SMP test kernel (see entry.S). 32-bit, freestanding. */
#include <stdint.h>

#define COM1 0x3F8
#define LAPIC 0xFEE00000u
#define TRAMPOLINE 0x8000

extern const uint8_t trampoline_start[], trampoline_end[];
static volatile uint32_t print_lock, cpus_up = 1;

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t value) { __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}
static volatile uint32_t *lapic(uint32_t offset) { return (volatile uint32_t *)(LAPIC + offset); }

static void put(const char *text) {
    for (; *text; text++) {
        while (!(inb(COM1 + 5) & 0x20)) __asm__ volatile("pause");
        outb(COM1, (uint8_t)*text);
    }
}

/* One line per call, whole: CPUs take turns with a spin lock. */
static void say(const char *text, uint32_t number) {
    while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE)) __asm__ volatile("pause");
    char digits[11];
    int n = 10;
    digits[n] = 0;
    do digits[--n] = (char)('0' + number % 10); while ((number /= 10) && n);
    put(text);
    put(digits + n);
    put("\n");
    __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);
}

static int same(const volatile char *a, const char *b, int count) {
    for (int i = 0; i < count; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static uint8_t sum(const volatile uint8_t *p, uint32_t count) {
    uint8_t total = 0;
    while (count--) total += *p++;
    return total;
}

static const volatile uint8_t *scan(uint32_t from, uint32_t to, const char *signature, uint32_t length) {
    for (uint32_t a = from; a + length <= to; a += 16) {
        const volatile uint8_t *p = (const volatile uint8_t *)a;
        if (same((const volatile char *)p, signature, 4) && sum(p, length) == 0) return p;
    }
    return 0;
}

/* The MP floating pointer: the first KiB of the EBDA, the last KiB of base memory, or the BIOS. */
static const volatile uint8_t *find_mp(void) {
    uint32_t ebda = (uint32_t)*(volatile uint16_t *)0x40E << 4;
    const volatile uint8_t *p = ebda ? scan(ebda, ebda + 1024, "_MP_", 16) : 0;
    if (!p) p = scan(0x9FC00, 0xA0000, "_MP_", 16);
    if (!p) p = scan(0xF0000, 0x100000, "_MP_", 16);
    return p;
}

static void delay(uint32_t loops) {
    for (volatile uint32_t i = 0; i < loops; i++) __asm__ volatile("pause");
}

static void ipi(uint8_t apic_id, uint32_t command) {
    *lapic(0x310) = (uint32_t)apic_id << 24;
    *lapic(0x300) = command;
    for (int i = 0; i < 100000 && (*lapic(0x300) & (1u << 12)); i++) __asm__ volatile("pause");
}

void ap_main(void) {
    *lapic(0xF0) = 0x1FF;
    say("foreign-smp: cpu up, APIC id ", *lapic(0x20) >> 24);
    __atomic_add_fetch(&cpus_up, 1, __ATOMIC_SEQ_CST);
}

/* An ACPI table by signature, through the RSDP in the BIOS area and the RSDT. */
static const volatile uint8_t *acpi_table(const char *signature) {
    const volatile uint8_t *rsdp = scan(0xE0000, 0x100000, "RSD ", 20);
    if (!rsdp || !same((const volatile char *)rsdp, "RSD PTR ", 8)) return 0;
    const volatile uint8_t *rsdt = (const volatile uint8_t *)*(const volatile uint32_t *)(rsdp + 16);
    uint32_t length = *(const volatile uint32_t *)(rsdt + 4);
    for (uint32_t i = 36; i + 4 <= length; i += 4) {
        const volatile uint8_t *table = (const volatile uint8_t *)*(const volatile uint32_t *)(rsdt + i);
        if (same((const volatile char *)table, signature, 4)) return table;
    }
    return 0;
}

/* ACPI power-off: PM1a_CNT from the FADT, SLP_TYPa of \_S5 from the DSDT's AML, SLP_EN. */
static void power_off(void) {
    const volatile uint8_t *table = acpi_table("FACP");
    if (table) {
        uint16_t control = (uint16_t)*(const volatile uint32_t *)(table + 64);
        const volatile uint8_t *dsdt = (const volatile uint8_t *)*(const volatile uint32_t *)(table + 40);
        uint32_t dsdt_length = *(const volatile uint32_t *)(dsdt + 4);
        for (uint32_t j = 36; j + 8 < dsdt_length; j++) {
            if (!same((const volatile char *)dsdt + j, "_S5_", 4) || dsdt[j + 4] != 0x12) continue;
            const volatile uint8_t *element = dsdt + j + 7; /* PackageOp, length, count */
            uint32_t type = *element == 0x0A ? element[1] : *element == 0x01 ? 1 : 0;
            say("foreign-smp: powering off, SLP_TYP ", type);
            outw(control, (uint16_t)(type << 10 | 1u << 13));
            for (;;) __asm__ volatile("hlt");
        }
    }
}

static void start_ap(uint8_t apic_id, uint32_t *expected) {
    ipi(apic_id, 0x4500);
    delay(100000);
    ipi(apic_id, 0x4600 | (TRAMPOLINE >> 12));
    delay(10000);
    ipi(apic_id, 0x4600 | (TRAMPOLINE >> 12));
    ++*expected;
    while (cpus_up < *expected) __asm__ volatile("pause");
}

/* The CPUs the ACPI MADT lists (processor local APIC entries, enabled), as Linux prefers. */
static int start_from_madt(uint8_t self, uint32_t *expected) {
    const volatile uint8_t *madt = acpi_table("APIC");
    if (!madt) return 0;
    uint32_t length = *(const volatile uint32_t *)(madt + 4);
    for (uint32_t at = 44; at + 2 <= length && madt[at + 1] >= 2; at += madt[at + 1])
        if (madt[at] == 0 && (madt[at + 4] & 1) && madt[at + 3] != self) start_ap(madt[at + 3], expected);
    return 1;
}

void bsp_main(void) {
    *lapic(0xF0) = 0x1FF;
    uint8_t self = (uint8_t)(*lapic(0x20) >> 24);
    say("foreign-smp: bootstrap cpu up, APIC id ", self);
    for (const uint8_t *p = trampoline_start; p < trampoline_end; p++)
        ((uint8_t *)TRAMPOLINE)[p - trampoline_start] = *p;
    uint32_t expected = 1;
    if (start_from_madt(self, &expected)) {
        say("foreign-smp: cpus from the ACPI MADT, running ", cpus_up);
        power_off();
        return;
    }
    const volatile uint8_t *mp = find_mp();
    const volatile uint8_t *table = mp ? (const volatile uint8_t *)*(const volatile uint32_t *)(mp + 4) : 0;
    if (!table || !same((const volatile char *)table, "PCMP", 4)) {
        say("foreign-smp: no MP table, cpus ", 1);
        return;
    }
    uint32_t count = *(const volatile uint16_t *)(table + 34);
    const volatile uint8_t *entry = table + 44;
    for (uint32_t i = 0; i < count; i++) {
        if (entry[0] != 0) { /* buses, IOAPICs and interrupt assignments: 8 bytes each */
            entry += 8;
            continue;
        }
        if ((entry[3] & 1) && !(entry[3] & 2)) start_ap(entry[1], &expected); /* enabled, not the BSP */
        entry += 20;
    }
    say("foreign-smp: cpus from the MP table, running ", cpus_up);
    power_off();
}
