/*
 * e1000 (82540EM) driver at CPL3: legacy descriptor rings, the BAR mapped into user space.
 * Polling: doorbells (tail writes) batched, completions found by polling descriptor status.
 * Interrupt-driven, as an OS driver without transmit batching works: a tail write per frame,
 * INTA# through the IOAPIC with TXDW and RXT0 unmasked, the kernel's handler reading ICR, and
 * completions taken back only after an interrupt says so. Throttling is off (ITR 0), or, for the
 * moderated variant, ITR at 4000 interrupts/s: where Linux's adaptive moderation
 * (InterruptThrottleRate=3, the default) settles for bulk traffic.
 * Works with hvbench's model and with QEMU's e1000.
 */
#include "hvb.h"
#include "io.h"
#include "irq.h"
#include "pci.h"

#define STATUS 0x0008
#define ICR 0x00C0
#define ITR 0x00C4
#define IMS 0x00D0
#define IMC 0x00D8
#define TDT 0x3818
#define RDT 0x2818
#define CAUSE_TXDW 0x01u
#define CAUSE_RXT0 0x80u
/* ITR counts 256 ns units: 10^9 / (4000 * 256). */
#define ITR_4000_PER_SECOND 976u

#define RING 256
#define BATCH 32
#define BUFFER 2048

struct descriptor {
    uint64_t address;
    uint16_t length;
    uint8_t checksum_offset, command, status, checksum_start;
    uint16_t special;
};

static volatile uint32_t *registers;
static struct descriptor *tx_ring, *rx_ring;
static uint8_t *tx_buffers, *rx_buffers;
static uint32_t tx_tail, tx_clean, tx_pending, rx_next, rx_unposted;
/* The last receive tail written, and the last one known to have reached the device, or
 * TAIL_UNKNOWN (see flush_rx_tail). */
static uint32_t rx_tail_written, rx_tail_seen;
#define TAIL_UNKNOWN RING

static inline uint32_t reg(int offset) { return registers[offset / 4]; }
static inline void set_reg(int offset, uint32_t value) { registers[offset / 4] = value; }
static inline void barrier(void) { __asm__ volatile("" : : : "memory"); }

static const char *wait_for(volatile uint8_t *status) {
    HVB_POLL_UNTIL(*status & 1, "e1000-timeout");
    return 0;
}

/* Copies a frame into the slot at tx_tail and hands its descriptor to the device (EOP, insert
 * FCS, report status: the write-back raises TXDW); the caller rings the tail. */
static void queue_frame(const uint8_t *frame, uint32_t length) {
    uint8_t *buffer = tx_buffers + tx_tail * BUFFER;
    for (uint32_t i = 0; i < length; i++) buffer[i] = frame[i];
    struct descriptor *d = &tx_ring[tx_tail];
    d->address = (uint64_t)(uintptr_t)buffer;
    d->length = (uint16_t)length;
    d->status = 0;
    d->command = 0x01 | 0x02 | 0x08;
    tx_tail = (tx_tail + 1) % RING;
}

static const char *e1000_send(const uint8_t *frame, uint32_t length) {
    if (length > BUFFER) return "frame-too-long";
    /* Keep one slot free so a full ring is distinguishable from an empty one. When full, ring
     * the doorbell for what is queued, wait for the oldest frame, then take back every completed
     * descriptor at once: taking back one at a time would ring the doorbell for every frame. */
    if ((tx_tail + 1) % RING == tx_clean) {
        if (tx_pending) {
            barrier();
            set_reg(TDT, tx_tail);
            tx_pending = 0;
        }
        const char *error = wait_for(&tx_ring[tx_clean].status);
        if (error) return error;
        while (tx_clean != tx_tail && (tx_ring[tx_clean].status & 1)) tx_clean = (tx_clean + 1) % RING;
    }
    queue_frame(frame, length);
    if (++tx_pending == BATCH) {
        barrier();
        set_reg(TDT, tx_tail);
        tx_pending = 0;
    }
    return 0;
}

static const char *e1000_flush(void) {
    if (tx_pending) {
        barrier();
        set_reg(TDT, tx_tail);
        tx_pending = 0;
    }
    while (tx_clean != tx_tail) {
        const char *error = wait_for(&tx_ring[tx_clean].status);
        if (error) return error;
        tx_clean = (tx_clean + 1) % RING;
    }
    return 0;
}

/* Hands the device every buffer taken since the last tail write. */
static void return_rx_buffers(void) {
    barrier();
    rx_tail_written = (rx_next + RING - 1) % RING;
    set_reg(RDT, rx_tail_written);
    rx_unposted = 0;
}

/* Makes sure the device has buffers before the driver waits at rx_next, by flushing the posted
 * tail write with a register read, as PCI drivers flush posted writes. Not a formality under
 * QEMU: its e1000 registers everything below TDT but the interrupt registers as coalesced MMIO,
 * so KVM buffers an RDT write in the kernel and QEMU applies it only at the vCPU's next exit. A
 * polling driver that hands back buffers and then spins on a descriptor never exits, and QEMU,
 * its ring full, waits for that RDT forever (measured: every net.rx-1500 run stalled within its
 * first 256 frames). The device, at rx_next since it has not filled it, lacks buffers only if
 * the tail it has seen is rx_next too; every write since the last flush is closer behind
 * rx_next. So the read is needed only then, or once the driver has taken the descriptor at the
 * tail it knew (some exit delivered a later tail, which one is unknown): about once a lap, not an
 * exit per wait (which cost net.rr +73% in hvbench's own VMM). */
static void flush_rx_tail(void) {
    if (rx_tail_seen != rx_next && rx_tail_seen != TAIL_UNKNOWN) return;
    (void)reg(STATUS);
    rx_tail_seen = rx_tail_written;
}

static const char *e1000_receive(uint8_t *frame, uint32_t capacity, uint32_t *length) {
    struct descriptor *d = &rx_ring[rx_next];
    uint64_t start = plat_cycles();
    while (!(d->status & 1)) {
        /* hand back buffers before waiting, or the device may have none */
        if (rx_unposted) return_rx_buffers();
        flush_rx_tail();
        if (hvb_timed_out(start)) return "e1000-receive-timeout";
    }
    barrier();
    uint32_t n = d->length;
    if (n > capacity) return "received-frame-too-long";
    const uint8_t *buffer = rx_buffers + rx_next * BUFFER;
    for (uint32_t i = 0; i < n; i++) frame[i] = buffer[i];
    *length = n;
    d->status = 0;
    if (rx_next == rx_tail_seen) rx_tail_seen = TAIL_UNKNOWN;
    rx_next = (rx_next + 1) % RING;
    if (++rx_unposted == BATCH) return_rx_buffers();
    return 0;
}

static const struct nic_ops ops = {"e1000", e1000_send, e1000_flush, e1000_receive};

/* ---- interrupt-driven */

static uint64_t interrupts_seen;

/* The bottom half: after an interrupt, take back every descriptor the device wrote back. */
static void after_interrupts(void) {
    uint64_t count = irq_count(NIC_VECTOR);
    if (count == interrupts_seen) return;
    interrupts_seen = count;
    if (irq_take_causes(NIC_VECTOR) & CAUSE_TXDW)
        while (tx_clean != tx_tail && (tx_ring[tx_clean].status & 1)) tx_clean = (tx_clean + 1) % RING;
}

/* Sleeps until an interrupt, then runs the bottom half. */
static const char *wait_interrupt(void) {
    const char *error = irq_wait(NIC_VECTOR, interrupts_seen);
    if (!error) after_interrupts();
    return error;
}

static const char *e1000_send_irq(const uint8_t *frame, uint32_t length) {
    if (length > BUFFER) return "frame-too-long";
    after_interrupts();
    while ((tx_tail + 1) % RING == tx_clean) {
        const char *error = wait_interrupt();
        if (error) return error;
    }
    queue_frame(frame, length);
    barrier();
    set_reg(TDT, tx_tail);
    return 0;
}

static const char *e1000_flush_irq(void) {
    after_interrupts();
    while (tx_clean != tx_tail) {
        const char *error = wait_interrupt();
        if (error) return error;
    }
    return 0;
}

static const char *e1000_receive_irq(uint8_t *frame, uint32_t capacity, uint32_t *length) {
    struct descriptor *d = &rx_ring[rx_next];
    while (!(d->status & 1)) {
        if (rx_unposted) return_rx_buffers();
        uint64_t seen = irq_count(NIC_VECTOR);
        if (d->status & 1) break; /* arrived while the buffers were handed back */
        const char *error = irq_wait(NIC_VECTOR, seen);
        if (error) return error;
        rx_tail_seen = rx_tail_written; /* the wait exited, which flushed it */
    }
    after_interrupts();
    return e1000_receive(frame, capacity, length);
}

static const struct nic_ops irq_ops = {"e1000", e1000_send_irq, e1000_flush_irq, e1000_receive_irq};

/* INTA# as the interrupt line register says (hvbench: its IOAPIC input; QEMU: the firmware's
 * routing), ICR as the cause register the kernel's handler reads, TXDW and RXT0 unmasked. */
static void use_interrupts(int slot, uint32_t throttle) {
    uint32_t gsi = pci_read32(slot, 0x3C) & 0xFF;
    irq_set_cause_register(NIC_VECTOR, &registers[ICR / 4], 4);
    irq_route_line(gsi, NIC_VECTOR);
    set_reg(ITR, throttle);
    (void)reg(ICR);
    interrupts_seen = irq_count(NIC_VECTOR);
    irq_start();
    set_reg(IMS, CAUSE_TXDW | CAUSE_RXT0);
}

const char *e1000_init(const struct nic_ops **out, int interrupt_driven) {
    static const uint16_t ids[] = {0x100E, 0};
    int slot = pci_find(0x8086, ids);
    if (slot < 0) return "no-e1000-on-the-pci-bus";
    uint64_t bar = pci_bar(slot, 0);
    if (!bar) return "e1000-bar0-unusable";
    pci_enable(slot);
    registers = (volatile uint32_t *)(uintptr_t)bar;
    set_reg(0x00D8, 0xFFFFFFFFu);       /* mask all interrupts */
    set_reg(0x0000, reg(0) | (1u << 26)); /* reset */
    HVB_POLL_UNTIL(!(reg(0) & (1u << 26)), "e1000-reset-timeout");
    set_reg(0x00D8, 0xFFFFFFFFu);
    set_reg(0x0000, reg(0) | 0x40); /* set link up */
    /* Wait for the link (STATUS.LU), as Linux's driver does before it takes traffic: QEMU's e1000
     * negotiates for about half a second after a reset, and a frame that arrives before then is
     * held until the driver next writes RDT, which a polling driver waiting for its first frame
     * never does. */
    HVB_POLL_UNTIL(reg(0x0008) & 2, "e1000-link-down");
    tx_ring = plat_alloc(RING * sizeof *tx_ring);
    rx_ring = plat_alloc(RING * sizeof *rx_ring);
    tx_buffers = plat_alloc(RING * BUFFER);
    rx_buffers = plat_alloc(RING * BUFFER);
    if (!tx_ring || !rx_ring || !tx_buffers || !rx_buffers) return "out-of-memory";
    for (int i = 0; i < RING; i++) {
        tx_ring[i] = (struct descriptor){0};
        rx_ring[i] = (struct descriptor){.address = (uint64_t)(uintptr_t)(rx_buffers + i * BUFFER)};
    }
    for (int i = 0; i < 128; i++) set_reg(0x5200 + 4 * i, 0); /* multicast table */
    set_reg(0x3800, (uint32_t)(uintptr_t)tx_ring);
    set_reg(0x3804, 0);
    set_reg(0x3808, RING * sizeof *tx_ring);
    set_reg(0x3810, 0);
    set_reg(TDT, 0);
    set_reg(0x0410, 10 | 8 << 10 | 6 << 20);                 /* TIPG */
    set_reg(0x0400, 1u << 1 | 1u << 3 | 0x10u << 4 | 0x40u << 12); /* TCTL: EN, PSP, CT, COLD */
    set_reg(0x2800, (uint32_t)(uintptr_t)rx_ring);
    set_reg(0x2804, 0);
    set_reg(0x2808, RING * sizeof *rx_ring);
    set_reg(0x2810, 0);
    set_reg(0x2818, RING - 1);
    /* RCTL: EN, unicast/multicast promiscuous, broadcast accept, strip CRC, 2 KiB buffers. */
    set_reg(0x0100, 1u << 1 | 1u << 3 | 1u << 4 | 1u << 15 | 1u << 26);
    tx_tail = tx_clean = tx_pending = rx_next = rx_unposted = 0;
    (void)reg(STATUS); /* flushes RDT and RCTL */
    rx_tail_written = rx_tail_seen = RING - 1;
    if (interrupt_driven) use_interrupts(slot, interrupt_driven == 2 ? ITR_4000_PER_SECOND : 0);
    *out = interrupt_driven ? &irq_ops : &ops;
    return 0;
}
