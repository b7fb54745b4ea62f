/*
 * virtio 1.x drivers at CPL3 over the modern PCI transport: capability walk (common, notify,
 * device config; 64-bit BARs as QEMU uses), split virtqueues. virtio-blk: one request (header,
 * data, status) at a time. virtio-net: transmit and receive queues of 256, each buffer =
 * 12-byte header + frame.
 *
 * Polling: notifications batched, VIRTQ_AVAIL_F_NO_INTERRUPT set. Interrupt-driven (virtio-net,
 * as Linux's driver works): VIRTIO_F_EVENT_IDX, an MSI-X vector per queue, a notification only
 * when the device's avail_event asks for one. Receive interrupts stay armed (used_event
 * re-armed after each frame, as NAPI does); transmit buffers are taken back on each send and a
 * transmit interrupt is asked for only when the driver must wait (a full ring, a flush), as
 * Linux's virtio-net does with napi_tx off. The INTx variant leaves MSI-X off, as a driver
 * must where MSI is unavailable (Linux with pci=nomsi): the device's INTA# through the IOAPIC,
 * level-triggered, and the ISR read by the kernel's handler, which clears it and drops the line.
 */
#include "hvb.h"
#include "io.h"
#include "irq.h"
#include "pci.h"
#include "virtio_queue.h"

/* Rings the doorbell for what was made available since the last decision, unless the device
 * said it need not (as Linux's virtqueue_kick_prepare): with event index, only if avail_event
 * lies among the new buffers; without, unless the used ring has VIRTQ_USED_F_NO_NOTIFY (a
 * device polling the ring itself sets either). */
void virtio_notify_if_needed(struct device *d, int index) {
    struct queue *q = &d->queues[index];
    memory_barrier(); /* the new avail.idx before the device's answer is read */
    uint16_t now = q->avail[1], old = q->notified_available;
    q->notified_available = now;
    int needed = d->event_idx ? (uint16_t)(now - *avail_event(q) - 1) < (uint16_t)(now - old)
                              : !(*(volatile uint16_t *)q->used & 1);
    if (needed) virtio_kick(d, index);
}

void virtio_make_available(struct queue *q, uint16_t head) {
    uint16_t index = q->avail[1];
    q->avail[2 + index % q->size] = head;
    barrier();
    q->avail[1] = (uint16_t)(index + 1);
}

/* MSI-X entry `entry` of the table the capability names: `vector` to APIC 0, unmasked. */
static const char *program_msix(int slot, int cap, int entry, uint8_t vector) {
    uint32_t table = pci_read32(slot, cap + 4);
    uint64_t bar = pci_bar(slot, (int)(table & 7));
    if (!bar) return "virtio-msix-bar-unusable";
    volatile uint32_t *words = (volatile uint32_t *)(uintptr_t)(bar + (table & ~7u) + 16u * (uint32_t)entry);
    words[0] = (uint32_t)irq_msi_address();
    words[1] = (uint32_t)(irq_msi_address() >> 32);
    words[2] = irq_msi_data(vector);
    words[3] = 0;
    return 0;
}

/* interrupt_vector: 0 to poll, else the vector every queue's MSI-X entry delivers, or with
 * legacy_intx the vector INTA# is routed to. */
const char *virtio_setup(struct device *d, uint16_t pci_device, uint16_t transitional, uint64_t extra_features, int queue_count,
                         uint8_t interrupt_vector, int legacy_intx) {
    uint16_t ids[] = {pci_device, transitional, 0};
    int slot = pci_find(0x1AF4, ids);
    if (slot < 0) return "no-virtio-device-on-the-pci-bus";
    uint64_t bars[6] = {0};
    pci_enable(slot);
    d->common = d->notify = d->config = d->isr = 0;
    d->msix = 0;
    for (int cap = pci_read32(slot, 0x34) & 0xFC; cap; cap = (pci_read32(slot, cap) >> 8) & 0xFC) {
        uint32_t header = pci_read32(slot, cap);
        if ((header & 0xFF) == 0x11) d->msix = cap;
        if ((header & 0xFF) != 0x09) continue;
        int type = (header >> 24) & 0xFF;
        int bar = pci_read32(slot, cap + 4) & 0xFF;
        uint32_t offset = pci_read32(slot, cap + 8);
        /* Only common (1), notify (2), ISR (3) and device (4) configuration are used; the PCI
         * configuration access capability (5) names BAR 0 with no region behind it. */
        if (type < 1 || type > 4 || bar > 5) continue;
        if (!bars[bar]) bars[bar] = pci_bar(slot, bar);
        if (!bars[bar]) {
            static char reason[64];
            const char *prefix = "virtio-bar-unusable-bar";
            int n = 0;
            while (prefix[n]) { reason[n] = prefix[n]; n++; }
            reason[n++] = (char)('0' + bar);
            reason[n++] = '-';
            uint32_t raw = pci_read32(slot, 0x10 + 4 * bar);
            for (int shift = 28; shift >= 0; shift -= 4) reason[n++] = "0123456789abcdef"[(raw >> shift) & 15];
            reason[n] = 0;
            return reason;
        }
        volatile uint8_t *base = (volatile uint8_t *)(uintptr_t)(bars[bar] + offset);
        if (type == 1) d->common = base;
        if (type == 2) {
            d->notify = base;
            d->notify_multiplier = pci_read32(slot, cap + 16);
        }
        if (type == 3) d->isr = base;
        if (type == 4) d->config = base;
    }
    pci_enable(slot); /* again: BARs assigned above must decode */
    if (!d->common || !d->notify) return "virtio-capabilities-missing";
    if (interrupt_vector && legacy_intx) {
        if (!d->isr) return "virtio-without-isr";
        if (d->msix) pci_write32(slot, d->msix, pci_read32(slot, d->msix) & ~(1u << 31)); /* MSI-X off */
        irq_set_cause_register(interrupt_vector, d->isr, 1);
        irq_route_line(pci_read32(slot, 0x3C) & 0xFF, interrupt_vector);
        extra_features |= FEATURE_EVENT_IDX;
    } else if (interrupt_vector) {
        if (!d->msix) return "virtio-without-msix";
        for (int i = 0; i < queue_count; i++) {
            const char *error = program_msix(slot, d->msix, i, interrupt_vector);
            if (error) return error;
        }
        pci_enable(slot);
        pci_write32(slot, d->msix, pci_read32(slot, d->msix) | 1u << 31); /* MSI-X enable */
        extra_features |= FEATURE_EVENT_IDX;
    }
    d->event_idx = (extra_features & FEATURE_EVENT_IDX) != 0;
    volatile uint8_t *status = d->common + 0x14;
    *status = 0;
    HVB_POLL_UNTIL(!*status, "virtio-reset-timeout");
    *status = 1 | 2; /* ACKNOWLEDGE | DRIVER */
    *common32(d, 0x00) = 1;
    uint64_t offered = (uint64_t)*common32(d, 0x04) << 32;
    *common32(d, 0x00) = 0;
    offered |= *common32(d, 0x04);
    uint64_t wanted = (1ull << 32) | extra_features;
    if ((offered & wanted) != wanted) return "virtio-features-missing";
    *common32(d, 0x08) = 0;
    *common32(d, 0x0C) = (uint32_t)wanted;
    *common32(d, 0x08) = 1;
    *common32(d, 0x0C) = (uint32_t)(wanted >> 32);
    *status = 1 | 2 | 8;
    if (!(*status & 8)) return "virtio-features-rejected";
    for (int i = 0; i < queue_count; i++) {
        struct queue *q = &d->queues[i];
        *common16(d, 0x16) = (uint16_t)i;
        uint16_t size = *common16(d, 0x18);
        if (!size) return "virtio-queue-missing";
        if (size > 256) size = 256;
        *common16(d, 0x18) = size;
        q->size = size;
        q->last_used = q->notified_available = 0;
        q->desc = plat_alloc(16u * size);
        q->avail = plat_alloc(6u + 2u * size);
        q->used = plat_alloc(6u + 8u * size);
        if (!q->desc || !q->avail || !q->used) return "out-of-memory";
        for (uint32_t k = 0; k < 16u * size; k++) ((volatile uint8_t *)q->desc)[k] = 0;
        for (uint32_t k = 0; k < 3u + size; k++) q->avail[k] = 0;
        for (uint32_t k = 0; k < 6u + 8u * size; k++) q->used[k] = 0;
        q->avail[0] = interrupt_vector ? 0 : 1;                /* VIRTQ_AVAIL_F_NO_INTERRUPT when polling */
        /* used_event: receive interrupts armed from the start, transmit ones off until needed. */
        q->avail[2 + size] = interrupt_vector && i == 1 ? EVENT_OFF : 0;
        if (interrupt_vector && !legacy_intx) {
            *common16(d, 0x1A) = (uint16_t)i; /* queue i: MSI-X entry i */
            if (*common16(d, 0x1A) != (uint16_t)i) return "virtio-msix-vector-refused";
        }
        *common32(d, 0x20) = (uint32_t)(uintptr_t)q->desc;
        *common32(d, 0x24) = 0;
        *common32(d, 0x28) = (uint32_t)(uintptr_t)q->avail;
        *common32(d, 0x2C) = 0;
        *common32(d, 0x30) = (uint32_t)(uintptr_t)q->used;
        *common32(d, 0x34) = 0;
        q->notify_off = *common16(d, 0x1E);
        *common16(d, 0x1C) = 1;
    }
    *status = 1 | 2 | 8 | 4; /* DRIVER_OK */
    if (*status & 0x40) return "virtio-device-needs-reset";
    return 0;
}

/* Waits for the device to return one chain; sets *id and *length. */
const char *virtio_wait_used(struct queue *q, uint32_t *id, uint32_t *length) {
    HVB_POLL_UNTIL(used_index(q) != q->last_used, "virtio-timeout");
    barrier();
    volatile uint32_t *element = (volatile uint32_t *)(q->used + 4 + 8 * (q->last_used % q->size));
    *id = element[0];
    *length = element[1];
    q->last_used++;
    return 0;
}

/* ---------------------------------------------------------------- virtio-blk */

static struct device blk;
static struct {
    uint32_t type, reserved;
    uint64_t sector;
} *blk_header;
static volatile uint8_t *blk_status;
static int blk_interrupts;

static const char *blk_request(uint32_t type, uint64_t lba, uint32_t count, void *buffer) {
    struct queue *q = &blk.queues[0];
    blk_header->type = type;
    blk_header->reserved = 0;
    blk_header->sector = lba;
    *blk_status = 0xFF;
    q->desc[0] = (struct virtq_desc){(uint64_t)(uintptr_t)blk_header, 16, 1, 1};
    q->desc[1] = (struct virtq_desc){(uint64_t)(uintptr_t)buffer, count * HVB_SECTOR, (uint16_t)(1 | (type == 0 ? 2 : 0)), 2};
    q->desc[2] = (struct virtq_desc){(uint64_t)(uintptr_t)blk_status, 1, 2, 0};
    virtio_make_available(q, 0);
    uint64_t seen = irq_count(DISK_VECTOR);
    virtio_notify_if_needed(&blk, 0);
    if (blk_interrupts) {
        /* The completion interrupts (used_event is kept armed); sleep until it has. */
        while (used_index(q) == q->last_used) {
            const char *error = irq_wait(DISK_VECTOR, seen);
            if (error) return error;
            seen = irq_count(DISK_VECTOR);
        }
    }
    uint32_t id, length;
    const char *error = virtio_wait_used(q, &id, &length);
    if (error) return error;
    if (blk_interrupts) *(volatile uint16_t *)&q->avail[2 + q->size] = q->last_used; /* re-armed */
    return *blk_status == 0 ? 0 : "virtio-blk-request-failed";
}

static const char *blk_read(uint64_t lba, uint32_t count, void *buffer) { return blk_request(0, lba, count, buffer); }
static const char *blk_write(uint64_t lba, uint32_t count, const void *buffer) { return blk_request(1, lba, count, (void *)buffer); }

static struct disk_ops blk_ops = {"virtio-blk", 0, blk_read, blk_write};

const char *virtio_blk_init(const struct disk_ops **out, int interrupt_driven) {
    const char *error = virtio_setup(&blk, 0x1042, 0x1001, 0, 1, interrupt_driven ? DISK_VECTOR : 0, interrupt_driven == 3);
    if (error) return error;
    if (!blk.config) return "virtio-blk-without-config";
    blk_ops.sectors = *(volatile uint32_t *)blk.config | (uint64_t) * (volatile uint32_t *)(blk.config + 4) << 32;
    blk_header = plat_alloc(4096);
    blk_status = (volatile uint8_t *)blk_header + 64;
    if (!blk_header) return "out-of-memory";
    blk_interrupts = interrupt_driven;
    if (interrupt_driven) irq_start();
    *out = &blk_ops;
    return 0;
}

/* ---------------------------------------------------------------- virtio-net */

#define NET_HEADER 12u
#define NET_BUFFER 2048u
#define NET_BATCH 32u
static struct device net;
static uint8_t *tx_buffers, *rx_buffers;
static uint16_t tx_in_flight, tx_pending, rx_unposted;

static const char *net_reclaim(void) {
    uint32_t id, length;
    const char *error = virtio_wait_used(&net.queues[1], &id, &length);
    if (!error) tx_in_flight--;
    return error;
}

static const char *net_send(const uint8_t *frame, uint32_t length) {
    struct queue *q = &net.queues[1];
    if (length + NET_HEADER > NET_BUFFER) return "frame-too-long";
    if (tx_in_flight + tx_pending >= q->size) {
        /* Full: notify for what is queued, wait for one buffer, then take back every used one
         * (one at a time would mean a notification for every frame from here on). */
        if (tx_pending) {
            virtio_notify_if_needed(&net, 1);
            tx_in_flight += tx_pending;
            tx_pending = 0;
        }
        const char *error = net_reclaim();
        if (error) return error;
        while (tx_in_flight && used_index(&net.queues[1]) != net.queues[1].last_used) {
            error = net_reclaim();
            if (error) return error;
        }
    }
    uint16_t slot = (uint16_t)(q->avail[1] % q->size);
    uint8_t *buffer = tx_buffers + slot * NET_BUFFER;
    for (uint32_t i = 0; i < NET_HEADER; i++) buffer[i] = 0;
    for (uint32_t i = 0; i < length; i++) buffer[NET_HEADER + i] = frame[i];
    q->desc[slot] = (struct virtq_desc){(uint64_t)(uintptr_t)buffer, NET_HEADER + length, 0, 0};
    virtio_make_available(q, slot);
    if (++tx_pending == NET_BATCH) {
        virtio_notify_if_needed(&net, 1);
        tx_in_flight += tx_pending;
        tx_pending = 0;
    }
    return 0;
}

static const char *net_flush(void) {
    if (tx_pending) {
        virtio_notify_if_needed(&net, 1);
        tx_in_flight += tx_pending;
        tx_pending = 0;
    }
    while (tx_in_flight) {
        const char *error = net_reclaim();
        if (error) return error;
    }
    return 0;
}

static const char *net_receive(uint8_t *frame, uint32_t capacity, uint32_t *length) {
    struct queue *q = &net.queues[0];
    uint64_t start = plat_cycles();
    while (used_index(q) == q->last_used) {
        if (rx_unposted) {
            virtio_notify_if_needed(&net, 0);
            rx_unposted = 0;
        }
        if (hvb_timed_out(start)) return "virtio-net-receive-timeout";
    }
    uint32_t id, total;
    const char *error = virtio_wait_used(q, &id, &total);
    if (error) return error;
    if (id >= q->size || total < NET_HEADER || total - NET_HEADER > capacity) return "virtio-net-bad-receive";
    const uint8_t *buffer = rx_buffers + id * NET_BUFFER + NET_HEADER;
    for (uint32_t i = 0; i < total - NET_HEADER; i++) frame[i] = buffer[i];
    *length = total - NET_HEADER;
    virtio_make_available(q, (uint16_t)id);
    if (++rx_unposted == NET_BATCH) {
        virtio_notify_if_needed(&net, 0);
        rx_unposted = 0;
    }
    return 0;
}

static const struct nic_ops net_ops = {"virtio-net", net_send, net_flush, net_receive};

/* ---- interrupt-driven virtio-net */

/* Takes back every transmit buffer the device has used (as a send does before queueing). */
static void take_back_sent(void) {
    struct queue *q = &net.queues[1];
    while (used_index(q) != q->last_used) {
        q->last_used++;
        tx_in_flight--;
    }
}

/* Asks for an interrupt once the transmit queue has `left` buffers in flight or fewer, and
 * waits for it unless they are back already. */
static const char *wait_for_transmit(uint16_t left) {
    struct queue *q = &net.queues[1];
    while (tx_in_flight > left) {
        uint64_t seen = irq_count(NIC_VECTOR);
        *used_event(q) = (uint16_t)(q->last_used + (tx_in_flight - left) - 1);
        memory_barrier();
        take_back_sent();
        if (tx_in_flight <= left) break;
        const char *error = irq_wait(NIC_VECTOR, seen);
        if (error) return error;
        take_back_sent();
    }
    *used_event(q) = (uint16_t)(q->last_used + EVENT_OFF);
    return 0;
}

static const char *net_send_irq(const uint8_t *frame, uint32_t length) {
    struct queue *q = &net.queues[1];
    if (length + NET_HEADER > NET_BUFFER) return "frame-too-long";
    take_back_sent();
    if (tx_in_flight >= q->size) {
        const char *error = wait_for_transmit((uint16_t)(q->size / 4)); /* interrupt at 3/4 used */
        if (error) return error;
    }
    uint16_t slot = (uint16_t)(q->avail[1] % q->size);
    uint8_t *buffer = tx_buffers + slot * NET_BUFFER;
    for (uint32_t i = 0; i < NET_HEADER; i++) buffer[i] = 0;
    for (uint32_t i = 0; i < length; i++) buffer[NET_HEADER + i] = frame[i];
    q->desc[slot] = (struct virtq_desc){(uint64_t)(uintptr_t)buffer, NET_HEADER + length, 0, 0};
    virtio_make_available(q, slot);
    tx_in_flight++;
    virtio_notify_if_needed(&net, 1);
    return 0;
}

static const char *net_flush_irq(void) { return wait_for_transmit(0); }

static const char *net_receive_irq(uint8_t *frame, uint32_t capacity, uint32_t *length) {
    struct queue *q = &net.queues[0];
    while (used_index(q) == q->last_used) {
        if (rx_unposted) {
            virtio_notify_if_needed(&net, 0);
            rx_unposted = 0;
        }
        uint64_t seen = irq_count(NIC_VECTOR);
        if (used_index(q) != q->last_used) break;
        const char *error = irq_wait(NIC_VECTOR, seen);
        if (error) return error;
    }
    const char *error = net_receive(frame, capacity, length);
    *used_event(q) = q->last_used; /* re-armed, as NAPI does when a poll completes: the next frame interrupts */
    return error;
}

static const struct nic_ops net_irq_ops = {"virtio-net", net_send_irq, net_flush_irq, net_receive_irq};

const char *virtio_net_init(const struct nic_ops **out, int interrupt_driven) {
    const char *error = virtio_setup(&net, 0x1041, 0x1000, 1ull << 5, 2, interrupt_driven ? NIC_VECTOR : 0, interrupt_driven == 3);
    if (error) return error;
    struct queue *rx = &net.queues[0];
    tx_buffers = plat_alloc(net.queues[1].size * NET_BUFFER);
    rx_buffers = plat_alloc(rx->size * NET_BUFFER);
    if (!tx_buffers || !rx_buffers) return "out-of-memory";
    for (uint16_t i = 0; i < rx->size; i++) {
        rx->desc[i] = (struct virtq_desc){(uint64_t)(uintptr_t)(rx_buffers + i * NET_BUFFER), NET_BUFFER, 2, 0};
        virtio_make_available(rx, i);
    }
    rx->notified_available = rx->avail[1];
    virtio_kick(&net, 0);
    tx_in_flight = tx_pending = rx_unposted = 0;
    if (interrupt_driven) irq_start();
    *out = interrupt_driven ? &net_irq_ops : &net_ops;
    return 0;
}
