/*
 * The network and disk side of the benchmarks: what a benchmark needs from a NIC or a disk,
 * and the data patterns both ends check. The guest implements these with its drivers
 * (drivers/: polling, or interrupt-driven for the -irq variants), the native runner with a host
 * file and a socket or an in-process peer.
 */
#ifndef HVB_IO_H
#define HVB_IO_H
#include <stddef.h>
#include <stdint.h>

#define HVB_SECTOR 512u
#define HVB_ETHERTYPE_HI 0x88
#define HVB_ETHERTYPE_LO 0xB5
#define HVB_FRAME_HEADER 22u
#define HVB_FRAME_MAX 1514u

struct nic_ops {
    const char *name;
    /* Queues one frame (copied); rings the doorbell every few frames. 0 or an error text. */
    const char *(*send)(const uint8_t *frame, uint32_t length);
    /* Rings the doorbell for queued frames and waits until the device has taken them all. */
    const char *(*flush)(void);
    /* Waits for the next received frame and copies it out; sets *length. */
    const char *(*receive)(uint8_t *frame, uint32_t capacity, uint32_t *length);
    /* Nonzero for a kernel UDP socket (the native runner's): it carries only the payload (frame
     * bytes 42 on), the kernel building and checking the Ethernet, IPv4 and UDP headers. */
    int datagrams;
};

struct disk_ops {
    const char *name;
    uint64_t sectors;
    const char *(*read)(uint64_t lba, uint32_t count, void *buffer);
    const char *(*write)(uint64_t lba, uint32_t count, const void *buffer);
};

/* A memory balloon: the guest gives pages back to the host and takes them again (the guest's
 * virtio-balloon; there is none natively). */
struct balloon_ops {
    const char *name;
    /* Gives `pages` 4 KiB pages from `start` (page-aligned) to the host: their frame numbers go
     * to the device, which has taken them (and may have freed their host memory) on return. */
    const char *(*inflate)(void *start, uint32_t pages);
    /* Takes such pages back; the guest may touch them once this returns. */
    const char *(*deflate)(void *start, uint32_t pages);
    /* The pages the host asks the balloon to hold (num_pages). */
    uint32_t (*target)(void);
    /* Interrupt-driven only (0 when polled): sleeps until the target differs from seen_target,
     * or for a while (the caller looks again). */
    void (*await_target_change)(uint32_t seen_target);
};

/* Set by the platform before hvb_run_job when the job asks for a NIC, a disk or a balloon. */
extern const struct nic_ops *hvb_nic;
extern const struct disk_ops *hvb_disk;
extern const struct balloon_ops *hvb_balloon;

/* Frame pattern (shared with hvbench's NetworkPeer): bytes 0-13 Ethernet header, 14-17 sequence,
 * 18-21 length, then byte i = (sequence * 31 + i * 7 + 0x5A) & 0xFF. */
static inline uint8_t hvb_frame_byte(uint32_t sequence, uint32_t index) {
    return (uint8_t)(sequence * 31u + index * 7u + 0x5Au);
}

/* Sector pattern (shared with hvbench's disk verifier): 64 little-endian words per sector. */
static inline uint64_t hvb_sector_word(uint64_t lba, uint32_t word, uint64_t seed) {
    uint64_t x = (lba + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(word + 1) * 0xD1B54A32D192ED03ull ^ seed * 0xA0761D6478BD642Full;
    x ^= x >> 31;
    return x;
}

/* Polls with a time limit, in TSC cycles (so a dead device fails the benchmark, not the VM). */
uint64_t hvb_timeout_cycles(void);
/* Whether a device wait that began at `start` (plat_cycles) has run past the job's timeout. */
static inline int hvb_timed_out(uint64_t start) { return plat_cycles() - start > hvb_timeout_cycles(); }
/* Polls until `done` holds; past the job's timeout the enclosing function returns `reason`.
 * Every driver's busy-wait on a device goes through this, so none can spin forever. */
#define HVB_POLL_UNTIL(done, reason)                                                               \
    do {                                                                                           \
        uint64_t poll_start_ = plat_cycles();                                                      \
        while (!(done))                                                                            \
            if (hvb_timed_out(poll_start_)) return (reason);                                       \
    } while (0)
#endif
