/* PCI configuration access through ports 0xCF8/0xCFC (type 1), bus 0. A function is named by
 * its devfn (slot << 3 | function): QEMU's PIIX IDE is function 1 of the ISA bridge's slot. */
#include "pci.h"
#include "port_io.h"

static uint32_t address_of(int devfn, int offset) { return 0x80000000u | (uint32_t)devfn << 8 | (uint32_t)(offset & 0xFC); }

uint32_t pci_read32(int slot, int offset) {
    outl(0xCF8, address_of(slot, offset));
    return inl(0xCFC);
}

void pci_write32(int slot, int offset, uint32_t value) {
    outl(0xCF8, address_of(slot, offset));
    outl(0xCFC, value);
}

int pci_find(uint16_t vendor, const uint16_t *devices) {
    for (int slot = 0; slot < 32; slot++) {
        /* Functions 1-7 exist only where function 0 says it is a multi-function device. */
        int functions = (pci_read32(slot << 3, 0x0C) >> 16) & 0x80 ? 8 : 1;
        for (int function = 0; function < functions; function++) {
            int devfn = slot << 3 | function;
            uint32_t id = pci_read32(devfn, 0);
            if ((id & 0xFFFF) != vendor) continue;
            for (const uint16_t *d = devices; *d; d++)
                if ((id >> 16) == *d) return devfn;
        }
    }
    return -1;
}

/* BARs the firmware left unassigned are placed from here up (below the guest's uncached
 * cpu.mmio probe page at 0xD0000000 would collide, so start at 0xE0000000). */
static uint64_t next_free = 0xE0000000ull;

uint64_t pci_bar(int slot, int bar) {
    int offset = 0x10 + 4 * bar;
    uint32_t low = pci_read32(slot, offset);
    if (low & 1) return 0; /* I/O BAR */
    int is64 = ((low >> 1) & 3) == 2;
    uint64_t address = low & ~0xFull;
    if (is64) address |= (uint64_t)pci_read32(slot, offset + 4) << 32;
    if (address && !(address >> 32)) return address;
    /* Unassigned, or placed above 4 GiB (SeaBIOS puts 64-bit BARs there), where the guest's
     * identity map does not reach: size it and place it in the window below 4 GiB, with memory
     * decoding off while the BAR moves. */
    uint32_t command = pci_read32(slot, 4);
    pci_write32(slot, 4, command & ~2u);
    pci_write32(slot, offset, 0xFFFFFFFFu);
    uint32_t mask = pci_read32(slot, offset) & ~0xFu;
    if (!mask) return 0;
    uint64_t size = (uint64_t)(~mask) + 1;
    next_free = (next_free + size - 1) & ~(size - 1);
    address = next_free;
    next_free += size;
    pci_write32(slot, offset, (uint32_t)address);
    if (is64) pci_write32(slot, offset + 4, 0);
    pci_write32(slot, 4, command);
    return address;
}

/* I/O BARs the firmware left unassigned are placed from here up. */
static uint32_t next_free_port = 0xC000;

uint16_t pci_io_bar(int slot, int bar) {
    int offset = 0x10 + 4 * bar;
    uint32_t low = pci_read32(slot, offset);
    if (!(low & 1)) return 0; /* a memory BAR */
    if (low & 0xFFFC) return (uint16_t)(low & 0xFFFC);
    uint32_t command = pci_read32(slot, 4);
    pci_write32(slot, 4, command & ~1u);
    pci_write32(slot, offset, 0xFFFFFFFFu);
    uint32_t mask = pci_read32(slot, offset) & 0xFFFC;
    if (!mask) return 0;
    uint32_t size = (~mask & 0xFFFF) + 1;
    next_free_port = (next_free_port + size - 1) & ~(size - 1);
    uint32_t port = next_free_port;
    next_free_port += size;
    pci_write32(slot, offset, port);
    pci_write32(slot, 4, command);
    return (uint16_t)port;
}

void pci_enable(int slot) {
    uint32_t command = pci_read32(slot, 4);
    pci_write32(slot, 4, (command & 0xFFFF0000u) | (command & 0xFFFF) | 0x6);
}
