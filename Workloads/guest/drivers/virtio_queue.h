/*
 * The modern virtio PCI transport and split virtqueues the guest's virtio drivers share
 * (virtio.c: the transport, virtio-blk and virtio-net; virtio_balloon.c).
 */
#ifndef HVB_VIRTIO_QUEUE_H
#define HVB_VIRTIO_QUEUE_H
#include <stdint.h>

#define FEATURE_EVENT_IDX (1ull << 29)
/* used_event this far ahead of the used index: no interrupt until the driver asks again. */
#define EVENT_OFF 0x8000u

struct virtq_desc {
    uint64_t address;
    uint32_t length;
    uint16_t flags, next;
};

struct queue {
    uint16_t size, last_used, notify_off;
    uint16_t notified_available; /* avail.idx when the driver last decided whether to ring */
    struct virtq_desc *desc;
    volatile uint16_t *avail; /* flags, idx, ring[size] */
    volatile uint8_t *used;   /* flags, idx, {id, len}[size] */
};

struct device {
    volatile uint8_t *common, *notify, *config, *isr;
    uint32_t notify_multiplier;
    int msix; /* configuration offset of the MSI-X capability, 0 if none */
    int event_idx;
    struct queue queues[2];
};

static inline void barrier(void) { __asm__ volatile("" : : : "memory"); }
static inline volatile uint32_t *common32(struct device *d, int offset) { return (volatile uint32_t *)(d->common + offset); }
static inline volatile uint16_t *common16(struct device *d, int offset) { return (volatile uint16_t *)(d->common + offset); }

static inline uint16_t used_index(struct queue *q) { return *(volatile uint16_t *)(q->used + 2); }

static inline void virtio_kick(struct device *d, int index) {
    barrier();
    *(volatile uint16_t *)(d->notify + d->queues[index].notify_off * d->notify_multiplier) = (uint16_t)index;
}

static inline void memory_barrier(void) { __sync_synchronize(); }
static inline volatile uint16_t *used_event(struct queue *q) { return &q->avail[2 + q->size]; }
static inline volatile uint16_t *avail_event(struct queue *q) { return (volatile uint16_t *)(q->used + 4 + 8 * q->size); }

/* Finds the device (modern id, or its transitional one), negotiates VIRTIO_F_VERSION_1 and
 * extra_features, and sets up queue_count queues (at most 2). interrupt_vector: 0 to poll,
 * else the vector every queue's MSI-X entry delivers, or with legacy_intx the vector INTA# is
 * routed to. 0 or an error text. */
const char *virtio_setup(struct device *d, uint16_t pci_device, uint16_t transitional, uint64_t extra_features, int queue_count,
                         uint8_t interrupt_vector, int legacy_intx);
/* Puts a chain whose head is `head` in the available ring. */
void virtio_make_available(struct queue *q, uint16_t head);
/* Rings the doorbell for what was made available since the last decision, unless the device
 * said it need not. */
void virtio_notify_if_needed(struct device *d, int index);
/* Waits for the device to return one chain; sets *id and *length. */
const char *virtio_wait_used(struct queue *q, uint32_t *id, uint32_t *length);
#endif
