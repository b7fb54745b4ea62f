/*
 * virtio-balloon (virtio 1.x §5.5) at CPL3, polled: the inflate and deflate queues, each page
 * list a device-readable array of le32 page frame numbers (4 KiB units). As Linux's
 * virtio_balloon does, at most 256 frame numbers go in one buffer and the driver waits for the
 * device to take each before it sends the next, then reports the pages it holds in `actual`.
 * The statistics queue is not negotiated.
 */
#include "hvb.h"
#include "io.h"
#include "drivers.h"
#include "virtio_queue.h"

#define PFNS_PER_BUFFER 256u
#define INFLATE_QUEUE 0
#define DEFLATE_QUEUE 1

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

static uint32_t target(void) { return *(volatile uint32_t *)balloon.config; }

static const struct balloon_ops balloon_ops = {"virtio-balloon", inflate, deflate, target};

const char *virtio_balloon_init(const struct balloon_ops **out) {
    const char *error = virtio_setup(&balloon, 0x1045, 0x1002, 0, 2, 0, 0);
    if (error) return error;
    if (!balloon.config) return "virtio-balloon-without-config";
    pfns = plat_alloc(4 * PFNS_PER_BUFFER);
    if (!pfns) return "out-of-memory";
    held = 0;
    *out = &balloon_ops;
    return 0;
}
