/*
 * Interrupts for the guest's drivers: routing an INTx line through the IOAPIC or programming
 * an MSI-X entry, the cause word the kernel's device handler fills in, and waiting for the
 * next interrupt in the kernel's halt service. While a driver runs interrupt-driven, CPL3 code
 * runs with interrupts on, as a kernel's would: they are taken the moment a device raises them.
 */
#ifndef HVB_IRQ_H
#define HVB_IRQ_H
#include <stdint.h>

/* The NIC's device vector (the kernel has handlers for 0x40-0x43). */
#define NIC_VECTOR 0x41
#define DISK_VECTOR 0x42

/* Interrupts on at CPL3, the local APIC timer in TSC-deadline mode for wait time limits. */
void irq_start(void);
/* IOAPIC input `gsi` to `vector`: level-triggered, active-high, fixed delivery to APIC 0 (a
 * PCI INTx line); or edge-triggered (an ISA interrupt such as IDE's IRQ 14). */
void irq_route_line(uint32_t gsi, uint8_t vector);
void irq_route_edge(uint32_t gsi, uint8_t vector);
/* The MSI message (address, data) that delivers `vector` to APIC 0, edge-triggered. */
uint64_t irq_msi_address(void);
uint32_t irq_msi_data(uint8_t vector);
/* The register the handler of `vector` reads on each interrupt: a 1- or 4-byte MMIO register,
 * or (IRQ_CAUSE_PORT8) an I/O port whose number is the "address"; 0: none. */
#define IRQ_CAUSE_PORT8 0x81
void irq_set_cause_register(uint8_t vector, volatile void *reg, int width);
/* Interrupts taken on `vector` so far, and the cause bits gathered since the last take. */
uint64_t irq_count(uint8_t vector);
uint32_t irq_take_causes(uint8_t vector);
/* Waits until `vector` has had more than `seen` interrupts; an error after the I/O time limit. */
const char *irq_wait(uint8_t vector, uint64_t seen);
#endif
