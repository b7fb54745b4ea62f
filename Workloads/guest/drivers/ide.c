/*
 * Polling ATA PIO driver for the primary IDE channel at CPL3: LBA48 READ/WRITE SECTORS EXT,
 * data moved with rep insw/outsw. Works with hvbench's model and with QEMU's PIIX IDE.
 */
#include "hvb.h"
#include "io.h"
#include "kernel.h"

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
        if (plat_cycles() - start > hvb_timeout_cycles()) return "ide-timeout";
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

const char *ide_init(const struct disk_ops **out) {
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
    return 0;
}
