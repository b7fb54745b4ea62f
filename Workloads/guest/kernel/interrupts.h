/* What the kernel offers the drivers for interrupts: the local APIC, the vectors device
 * interrupts arrive on, the counters its handlers keep (entry.S), and the services user-mode
 * drivers call with ud2 (rax = the service). The drivers include this, not kernel.h. */
#ifndef HVB_INTERRUPTS_H
#define HVB_INTERRUPTS_H
#include <stdint.h>

/* Kernel services requested with ud2 (rax = the service): interrupts on or off for the
 * caller (its saved RFLAGS.IF), and "halt until the TSC deadline in rdi" (see entry.S). */
#define IRQ_ENABLE_SERVICE 0x1a7f
#define IRQ_DISABLE_SERVICE 0x1a80
#define HALT_UNTIL_SERVICE 0x1a81
/* Sleep until the counter at rsi differs from rdx, or the TSC deadline in rdi passes. */
#define WAIT_INTERRUPT_SERVICE 0x1a82

/* The local APIC's xAPIC page (identity-mapped, uncached, user-accessible like all MMIO). */
#define LAPIC_BASE 0xFEE00000ull
#define LAPIC_SPURIOUS 0xF0
#define LAPIC_EOI 0xB0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_SELF (1u << 18) /* destination shorthand: self */
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_DIVIDE 0x3E0
#define TIMER_VECTOR 0xEF
/* Vectors for device interrupts (one per device a job uses): see drivers/irq.h. */
#define FIRST_DEVICE_VECTOR 0x40
#define DEVICE_VECTORS 4
#define SPURIOUS_VECTOR 0xFF
static inline volatile uint32_t *lapic_register(uint32_t offset) {
    return (volatile uint32_t *)(LAPIC_BASE + offset);
}

/* Written by the timer interrupt handler and the halt service (entry.S). */
extern volatile uint64_t hvb_irq_count, hvb_irq_tsc, hvb_wake_tsc;
/* Per device vector, written by its handler: interrupts taken, those whose cause register read
 * 0 (spurious), and the cause bits it read. */
extern volatile uint64_t hvb_device_interrupts[DEVICE_VECTORS], hvb_device_spurious[DEVICE_VECTORS];
extern volatile uint32_t hvb_device_causes[DEVICE_VECTORS];
extern volatile void *volatile hvb_device_cause_register[DEVICE_VECTORS];
extern volatile uint8_t hvb_device_cause_width[DEVICE_VECTORS];
#endif
