#ifndef HVB_PCI_H
#define HVB_PCI_H
#include <stdint.h>

uint32_t pci_read32(int slot, int offset);
void pci_write32(int slot, int offset, uint32_t value);
/* The first function (devfn) on bus 0 with this vendor and one of the devices (0-terminated),
 * or -1. The other calls take that devfn. */
int pci_find(uint16_t vendor, const uint16_t *devices);
/* The memory address of a BAR, assigning one from the free window if firmware did not; 0 if the
 * BAR is absent or above 4 GiB (outside the guest's identity map). */
uint64_t pci_bar(int slot, int bar);
/* The port base of an I/O BAR, assigning one from 0xC000 up if firmware did not; 0 if absent. */
uint16_t pci_io_bar(int slot, int bar);
/* Enables memory decoding and bus mastering. */
void pci_enable(int slot);
#endif
