/*
 * ATA driver for the primary IDE channel at CPL3. Polling: LBA48 READ/WRITE SECTORS EXT, data
 * moved with rep insw/outsw, nIEN set. Interrupt-driven, as an OS driver works: READ/WRITE DMA
 * EXT through the PIIX bus master (a PRD table per request), IRQ 14 through the IOAPIC (edge,
 * as ISA interrupts are), the kernel's handler reading the status register (which acknowledges
 * INTRQ), and the driver checking the bus master's status after the interrupt.
 * Works with hvbench's model and with QEMU's PIIX IDE.
 */
#include "hvb.h"
#include "io.h"
#include "irq.h"
#include "port_io.h"
#include "pci.h"

#define DATA 0x1F0
#define STATUS 0x1F7
#define BSY 0x80
#define DRDY 0x40
#define DRQ 0x08
#define ERR 0x01

static const char *wait_status(uint8_t mask, uint8_t want) {
    uint64_t start = plat_cycles();
    for (;;) {
        uint8_t status = inb(STATUS);
        if (status & ERR) return "ide-device-error";
        if ((status & (BSY | mask)) == want) return 0;
        if (hvb_timed_out(start)) return "ide-timeout";
    }
}

static const char *issue(uint64_t lba, uint32_t count, uint8_t command) {
    const char *error = wait_status(0, 0);
    if (error) return error;
    outb(0x1F6, 0x40); /* LBA, master */
    outb(0x1F2, (uint8_t)(count >> 8));
    outb(0x1F3, (uint8_t)(lba >> 24));
    outb(0x1F4, (uint8_t)(lba >> 32));
    outb(0x1F5, (uint8_t)(lba >> 40));
    outb(0x1F2, (uint8_t)count);
    outb(0x1F3, (uint8_t)lba);
    outb(0x1F4, (uint8_t)(lba >> 8));
    outb(0x1F5, (uint8_t)(lba >> 16));
    outb(STATUS, command);
    return 0;
}

static const char *ide_read(uint64_t lba, uint32_t count, void *buffer) {
    const char *error = issue(lba, count, 0x24);
    uint16_t *words = buffer;
    for (uint32_t s = 0; !error && s < count; s++) {
        error = wait_status(DRQ, DRQ);
        if (error) break;
        void *destination = words + 256 * s;
        uint64_t n = 256;
        __asm__ volatile("rep insw" : "+D"(destination), "+c"(n) : "d"(DATA) : "memory");
    }
    return error;
}

static const char *ide_write(uint64_t lba, uint32_t count, const void *buffer) {
    const char *error = issue(lba, count, 0x34);
    const uint16_t *words = buffer;
    for (uint32_t s = 0; !error && s < count; s++) {
        error = wait_status(DRQ, DRQ);
        if (error) break;
        const void *source = words + 256 * s;
        uint64_t n = 256;
        __asm__ volatile("rep outsw" : "+S"(source), "+c"(n) : "d"(DATA) : "memory");
    }
    return error ? error : wait_status(0, 0);
}

static struct disk_ops ops = {"ide", 0, ide_read, ide_write};

/* ---- interrupt-driven, with bus-master DMA */

#define BM_COMMAND 0
#define BM_STATUS 2
#define BM_TABLE 4
#define BM_START 0x01
#define BM_TO_MEMORY 0x08
#define BM_ERROR 0x02
#define BM_INTERRUPT 0x04

struct prd {
    uint32_t address;
    uint16_t bytes; /* 0 = 64 KiB */
    uint16_t flags; /* bit 15: end of table */
};

static uint16_t bus_master;
static struct prd *table;


/* One entry per piece of the buffer that does not cross a 64 KiB boundary. */
static void build_table(void *buffer, uint32_t bytes) {
    uint32_t address = (uint32_t)(uintptr_t)buffer, n = 0;
    while (bytes) {
        uint32_t room = 0x10000 - (address & 0xFFFF), piece = bytes < room ? bytes : room;
        table[n] = (struct prd){address, (uint16_t)piece, 0};
        address += piece;
        bytes -= piece;
        n++;
    }
    table[n - 1].flags = 0x8000;
}

static const char *dma(uint64_t lba, uint32_t count, void *buffer, int to_memory) {
    build_table(buffer, count * HVB_SECTOR);
    outb(bus_master + BM_COMMAND, to_memory ? BM_TO_MEMORY : 0);
    outb(bus_master + BM_STATUS, BM_ERROR | BM_INTERRUPT);
    outl(bus_master + BM_TABLE, (uint32_t)(uintptr_t)table);
    const char *error = issue(lba, count, to_memory ? 0x25 : 0x35); /* READ/WRITE DMA EXT */
    if (error) return error;
    uint64_t seen = irq_count(DISK_VECTOR);
    outb(bus_master + BM_COMMAND, (to_memory ? BM_TO_MEMORY : 0) | BM_START);
    error = irq_wait(DISK_VECTOR, seen);
    uint8_t status = inb(bus_master + BM_STATUS);
    outb(bus_master + BM_COMMAND, 0);
    outb(bus_master + BM_STATUS, BM_ERROR | BM_INTERRUPT);
    if (error) return error;
    if (status & BM_ERROR) return "ide-dma-error";
    if (irq_take_causes(DISK_VECTOR) & ERR) return "ide-device-error";
    return 0;
}

static const char *ide_read_dma(uint64_t lba, uint32_t count, void *buffer) { return dma(lba, count, buffer, 1); }
static const char *ide_write_dma(uint64_t lba, uint32_t count, const void *buffer) {
    return dma(lba, count, (void *)buffer, 0);
}

static struct disk_ops dma_ops = {"ide", 0, ide_read_dma, ide_write_dma};

static const char *use_interrupts(void) {
    static const uint16_t piix[] = {0x7010, 0x7111, 0}; /* PIIX3, PIIX4 */
    int devfn = pci_find(0x8086, piix);
    if (devfn < 0) return "no-piix-ide-bus-master";
    bus_master = pci_io_bar(devfn, 4);
    if (!bus_master) return "ide-bus-master-bar-unusable";
    pci_write32(devfn, 4, (pci_read32(devfn, 4) & 0xFFFF) | 0x5); /* I/O decoding, bus master */
    table = plat_alloc(4096);
    if (!table) return "out-of-memory";
    irq_set_cause_register(DISK_VECTOR, (volatile void *)(uintptr_t)STATUS, IRQ_CAUSE_PORT8);
    irq_route_edge(14, DISK_VECTOR); /* ISA IRQ 14 */
    (void)inb(STATUS);
    irq_start();
    outb(0x3F6, 0x00); /* nIEN clear: interrupts on */
    return 0;
}

const char *ide_init(const struct disk_ops **out, int interrupt_driven) {
    outb(0x3F6, 0x02); /* no interrupts */
    outb(0x1F6, 0xA0);
    uint8_t status = inb(STATUS);
    if (status == 0 || status == 0xFF) return "no-ide-disk";
    outb(STATUS, 0xEC); /* IDENTIFY */
    const char *error = wait_status(DRQ, DRQ);
    if (error) return error;
    uint16_t identify[256];
    void *destination = identify;
    uint64_t n = 256;
    __asm__ volatile("rep insw" : "+D"(destination), "+c"(n) : "d"(DATA) : "memory");
    if (!(identify[83] & (1u << 10))) return "ide-disk-without-lba48";
    ops.sectors = (uint64_t)identify[100] | (uint64_t)identify[101] << 16 | (uint64_t)identify[102] << 32 |
                  (uint64_t)identify[103] << 48;
    *out = &ops;
    if (interrupt_driven) {
        const char *failure = use_interrupts();
        if (failure) return failure;
        dma_ops.sectors = ops.sectors;
        *out = &dma_ops;
    }
    return 0;
}
