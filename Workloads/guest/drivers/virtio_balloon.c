/*
 * virtio-balloon (virtio 1.x §5.5) at CPL3, polled: the inflate and deflate queues, each page
 * list a device-readable array of le32 page frame numbers (4 KiB units). As Linux's
 * virtio_balloon does, at most 256 frame numbers go in one buffer and the driver waits for the
 * device to take each before it sends the next, then reports the pages it holds in `actual`.
 * The statistics queue is not negotiated.
 *
 * Interrupt-driven (the host-driven benchmarks): MSI-X entry 0 carries the queues' and the
 * configuration-change interrupts on BALLOON_VECTOR (or INTx and the ISR where the device has
 * no MSI-X), so a driver waiting for a new target sleeps in hlt and wakes the moment the host
 * sets num_pages, as Linux's driver does.
 */
#include "hvb.h"
#include "io.h"
#include "drivers.h"
#include "irq.h"
#include "virtio_queue.h"

#define PFNS_PER_BUFFER 256u
#define INFLATE_QUEUE 0
#define DEFLATE_QUEUE 1
#define BALLOON_VECTOR 0x43

static struct device balloon;
static uint32_t *pfns;
static uint32_t held; /* pages in the balloon, as told to the device */

/* Tells the device about `pages` pages from `start`, a buffer at a time, on `queue`. */
static const char *tell_host(int queue, void *start, uint32_t pages) {
    struct queue *q = &balloon.queues[queue];
    uint64_t first = (uint64_t)(uintptr_t)start >> 12;
    if ((uintptr_t)start & 4095) return "balloon-pages-not-aligned";
    for (uint32_t done = 0; done < pages;) {
        uint32_t count = pages - done < PFNS_PER_BUFFER ? pages - done : PFNS_PER_BUFFER;
        for (uint32_t i = 0; i < count; i++) pfns[i] = (uint32_t)(first + done + i);
        q->desc[0] = (struct virtq_desc){(uint64_t)(uintptr_t)pfns, 4 * count, 0, 0};
        virtio_make_available(q, 0);
        virtio_notify_if_needed(&balloon, queue);
        uint32_t id, length;
        const char *error = virtio_wait_used(q, &id, &length);
        if (error) return error;
        if (id != 0) return "balloon-device-returned-a-foreign-buffer";
        done += count;
    }
    held = queue == INFLATE_QUEUE ? held + pages : held - pages;
    *(volatile uint32_t *)(balloon.config + 4) = held; /* actual */
    return 0;
}

static const char *inflate(void *start, uint32_t pages) { return tell_host(INFLATE_QUEUE, start, pages); }

static const char *deflate(void *start, uint32_t pages) {
    if (pages > held) return "balloon-deflating-more-than-it-holds";
    return tell_host(DEFLATE_QUEUE, start, pages);
}

static int text_is(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static uint32_t target(void) { return *(volatile uint32_t *)balloon.config; }

/* Sleeps until the configuration-change interrupt (or the I/O time limit) unless the target
 * already differs from `seen_target`; the count is taken first, so a change that comes while
 * the target is read wakes the wait at once. */
static void await_target_change(uint32_t seen_target) {
    uint64_t seen = irq_count(BALLOON_VECTOR);
    if (target() != seen_target) return;
    irq_wait(BALLOON_VECTOR, seen);
}

static const struct balloon_ops balloon_ops = {"virtio-balloon", inflate, deflate, target, 0};
static const struct balloon_ops balloon_irq_ops = {"virtio-balloon", inflate, deflate, target, await_target_change};

const char *virtio_balloon_init(const struct balloon_ops **out, int interrupt_driven) {
    const char *error = virtio_setup(&balloon, 0x1045, 0x1002, 0, 2, interrupt_driven ? BALLOON_VECTOR : 0, 0);
    /* A device without MSI-X (QEMU gives virtio-balloon-pci none unless asked): its INTx line
     * and ISR carry the configuration change instead. */
    int intx = interrupt_driven && error && text_is(error, "virtio-without-msix");
    if (intx) error = virtio_setup(&balloon, 0x1045, 0x1002, 0, 2, BALLOON_VECTOR, 1);
    if (error) return error;
    if (intx) {
        irq_start();
    } else if (interrupt_driven) {
        *(volatile uint16_t *)(balloon.common + 0x10) = 0; /* configuration changes: MSI-X entry 0 */
        if (*(volatile uint16_t *)(balloon.common + 0x10) != 0) return "virtio-msix-vector-refused";
        irq_start();
    }
    if (!balloon.config) return "virtio-balloon-without-config";
    pfns = plat_alloc(4 * PFNS_PER_BUFFER);
    if (!pfns) return "out-of-memory";
    held = 0;
    *out = interrupt_driven ? &balloon_irq_ops : &balloon_ops;
    return 0;
}
