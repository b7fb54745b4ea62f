/* Interrupt plumbing for drivers (see irq.h). */
#include "irq.h"
#include "hvb.h"
#include "io.h"
#include "interrupts.h"

#define IOAPIC_BASE 0xFEC00000ull

static int has_deadline_timer;

static void ioapic_write(uint32_t index, uint32_t value) {
    *(volatile uint32_t *)IOAPIC_BASE = index;
    *(volatile uint32_t *)(IOAPIC_BASE + 0x10) = value;
}

void irq_start(void) {
    uint32_t eax = 1, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    has_deadline_timer = (ecx >> 24) & 1;
    if (has_deadline_timer) *lapic_register(LAPIC_LVT_TIMER) = TIMER_VECTOR | (2u << 17);
    __asm__ volatile("ud2" : : "a"(IRQ_ENABLE_SERVICE) : "memory");
}

void irq_route_line(uint32_t gsi, uint8_t vector) {
    ioapic_write(0x11 + 2 * gsi, 0);              /* destination: APIC 0 */
    ioapic_write(0x10 + 2 * gsi, vector | 1u << 15); /* level-triggered, unmasked, fixed */
}

void irq_route_edge(uint32_t gsi, uint8_t vector) {
    ioapic_write(0x11 + 2 * gsi, 0);
    ioapic_write(0x10 + 2 * gsi, vector); /* edge-triggered, active-high, unmasked, fixed */
}

uint64_t irq_msi_address(void) { return 0xFEE00000ull; }
uint32_t irq_msi_data(uint8_t vector) { return vector; }

void irq_set_cause_register(uint8_t vector, volatile void *reg, int width) {
    int slot = vector - FIRST_DEVICE_VECTOR;
    hvb_device_cause_width[slot] = (uint8_t)width;
    hvb_device_cause_register[slot] = reg;
}

uint64_t irq_count(uint8_t vector) { return hvb_device_interrupts[vector - FIRST_DEVICE_VECTOR]; }

uint32_t irq_take_causes(uint8_t vector) {
    /* An exchange is atomic against the handler on this CPU. */
    return __atomic_exchange_n(&hvb_device_causes[vector - FIRST_DEVICE_VECTOR], 0, __ATOMIC_SEQ_CST);
}

const char *irq_wait(uint8_t vector, uint64_t seen) {
    volatile uint64_t *count = &hvb_device_interrupts[vector - FIRST_DEVICE_VECTOR];
    uint64_t start = plat_cycles();
    while (*count == seen) {
        uint64_t now = plat_cycles();
        if (now - start > hvb_timeout_cycles()) return "device-interrupt-not-delivered";
        if (has_deadline_timer) {
            uint64_t deadline = start + hvb_timeout_cycles();
            __asm__ volatile("ud2" : : "a"(WAIT_INTERRUPT_SERVICE), "D"(deadline), "S"(count), "d"(seen) : "memory");
        } else {
            __asm__ volatile("pause"); /* no timer to bound a hlt (QEMU's TCG): spin, interrupts on */
        }
    }
    return 0;
}
