/*
 * Network and disk benchmarks. Every frame and sector carries a pattern that is checked at the
 * other end (frames by the peer or by this code, sectors by this code on reads and by hvbench
 * after writes), so a device model that corrupts data fails the benchmark instead of looking fast.
 */
#include "hvb.h"
#include "io.h"
#include "io_bench.h"
#include "udp_frames.h"

const struct nic_ops *hvb_nic;
const struct disk_ops *hvb_disk;

static uint64_t timeout_cycles = 4000000000ull;
uint64_t hvb_timeout_cycles(void) { return timeout_cycles; }

static uint8_t guest_mac[6]; /* the job's guest_mac (02:68:76:62:00:02 unless a VM pair's second) */
static uint8_t *templates; /* 256 frames of HVB_FRAME_MAX bytes: the pattern by sequence & 0xFF */
static uint8_t *frame;
static uint8_t *sector_buffer;
static uint32_t tx_sequence, rx_expected, rr_sequence;
static int rx_synchronised;
static uint64_t region_sectors, sequential_position, rng = 0x9E3779B97F4A7C15ull;
static int verify_reads = 1; /* 0 on a user's image: its data is not hvbench's pattern */
static int over_udp;         /* the job's udp=1: IPv4/UDP frames to a kernel peer */
static struct udp_link link;
static uint64_t frames_skipped; /* frames on a TAP link that were not for this benchmark */
static uint64_t frames_lost;    /* sequence numbers a TAP link's source sent that never arrived */

static void build_frame(uint8_t *out, uint32_t sequence, uint32_t length) {
    if (over_udp) return udp_build_frame(&link, templates, out, sequence, length);
    const uint8_t *template = templates + (sequence & 0xFF) * HVB_FRAME_MAX;
    for (uint32_t i = HVB_FRAME_HEADER; i < length; i++) out[i] = template[i];
    for (int i = 0; i < 6; i++) out[i] = 0xFF; /* broadcast: every NIC model accepts it */
    for (int i = 0; i < 6; i++) out[6 + i] = guest_mac[i];
    out[12] = HVB_ETHERTYPE_HI;
    out[13] = HVB_ETHERTYPE_LO;
    for (int i = 0; i < 4; i++) out[14 + i] = (uint8_t)(sequence >> (8 * i));
    for (int i = 0; i < 4; i++) out[18 + i] = (uint8_t)(length >> (8 * i));
}

/* Checks a received frame; returns its sequence number through *sequence. */
static const char *check_frame(const uint8_t *in, uint32_t length, uint32_t *sequence) {
    if (over_udp && hvb_nic->datagrams) return udp_check_payload(templates, in, length, sequence);
    if (over_udp) return udp_check_frame(&link, templates, in, length, sequence);
    if (length < HVB_FRAME_HEADER || in[12] != HVB_ETHERTYPE_HI || in[13] != HVB_ETHERTYPE_LO) return "received-foreign-frame";
    uint32_t s = 0, l = 0;
    for (int i = 0; i < 4; i++) s |= (uint32_t)in[14 + i] << (8 * i);
    for (int i = 0; i < 4; i++) l |= (uint32_t)in[18 + i] << (8 * i);
    if (l != length) return "received-frame-length-mismatch";
    const uint8_t *template = templates + (s & 0xFF) * HVB_FRAME_MAX;
    for (uint32_t i = HVB_FRAME_HEADER; i < length; i++)
        if (in[i] != template[i]) return "received-frame-corrupt";
    *sequence = s;
    return 0;
}

const char *io_prepare(const struct hvb_job *job, int needs_nic, int needs_disk) {
    if (job->tsc_khz) timeout_cycles = job->tsc_khz * 2000; /* two seconds */
    if (needs_nic) {
        if (!hvb_nic) return "no-nic-for-this-benchmark";
        for (int i = 0; i < 6; i++) guest_mac[i] = job->guest_mac[i];
        over_udp = job->udp != 0;
        if (hvb_nic->datagrams && !job->udp) return "a-socket-nic-needs-udp";
        if (over_udp) {
            if (!job->guest_ip || !job->peer_ip) return "udp-needs-guest-ip-and-peer-ip";
            for (int i = 0; i < 6; i++) link.guest_mac[i] = guest_mac[i];
            for (int i = 0; i < 6; i++) link.peer_mac[i] = job->peer_mac[i];
            link.guest_ip = (uint32_t)job->guest_ip;
            link.peer_ip = (uint32_t)job->peer_ip;
            link.guest_port = (uint32_t)job->guest_port;
            link.peer_port = (uint32_t)job->peer_port;
        }
        templates = plat_alloc(256 * HVB_FRAME_MAX);
        frame = plat_alloc(4096);
        if (!templates || !frame) return "out-of-memory";
        for (uint32_t s = 0; s < 256; s++)
            for (uint32_t i = 0; i < HVB_FRAME_MAX; i++) templates[s * HVB_FRAME_MAX + i] = hvb_frame_byte(s, i);
    }
    if (needs_disk) {
        if (!hvb_disk) return "no-disk-for-this-benchmark";
        region_sectors = job->region_sectors ? job->region_sectors : 131072;
        verify_reads = job->disk_verify != 0;
        if (region_sectors > hvb_disk->sectors) region_sectors = hvb_disk->sectors & ~127ull;
        if (region_sectors < 128) return "disk-too-small";
        sector_buffer = plat_alloc(65536);
        if (!sector_buffer) return "out-of-memory";
    }
    return 0;
}

/* The next frame of this benchmark: on a TAP link the host kernel also sends frames of its own
 * (IPv6 neighbour discovery, ARP), which are skipped and counted. */
static const char *receive_checked(uint32_t *length, uint32_t *sequence) {
    for (;;) {
        const char *error = hvb_nic->receive(frame, 4096, length);
        if (!error) error = check_frame(frame, *length, sequence);
        if (error != UDP_NOT_OURS) return error;
        frames_skipped++;
    }
}

const char *net_transmit(uint64_t count, uint32_t length) {
    for (uint64_t i = 0; i < count; i++) {
        build_frame(frame, tx_sequence++, length);
        const char *error = hvb_nic->send(frame, length);
        if (error) return error;
    }
    return hvb_nic->flush();
}

const char *net_receive(uint64_t count, uint64_t *bytes) {
    for (uint64_t i = 0; i < count; i++) {
        uint32_t length, sequence;
        const char *error = receive_checked(&length, &sequence);
        if (error) return error;
        /* The in-VMM source loses nothing. Through a TAP the kernel drops what the guest does not
         * take in time (tun has no back-pressure towards a UDP sender), as a real link does: a
         * gap is loss, counted; a number going back is reordering or duplication, an error. */
        if (rx_synchronised && sequence != rx_expected) {
            if (!over_udp || sequence < rx_expected) return "received-frame-out-of-sequence";
            frames_lost += sequence - rx_expected;
        }
        rx_synchronised = 1;
        rx_expected = sequence + 1;
        *bytes += length;
    }
    return 0;
}

/* A driver's "nothing arrived within the time limit": its timeout, or an interrupt that never came. */
static int wait_expired(const char *error) {
    const char *irq = "device-interrupt-not-delivered", *tail = "timeout";
    size_t i = 0, n = 0;
    while (irq[i] && error[i] == irq[i]) i++;
    if (!irq[i] && !error[i]) return 1;
    while (error[n]) n++;
    if (n < 7) return 0;
    for (i = 0; i < 7; i++)
        if (error[n - 7 + i] != tail[i]) return 0;
    return 1;
}

static const char *send_request(uint32_t sequence) {
    build_frame(frame, sequence, 64);
    const char *error = hvb_nic->send(frame, 64);
    return error ? error : hvb_nic->flush();
}

/* A TAP link's first request is resent every 100 ms, for up to the usual limit, until it is
 * answered: a bridge port comes up as much as a second after its TAP gets a reader (the kernel's
 * link watch), and QEMU attaches to its TAP only as it starts. */
static const char *first_answer(uint32_t sequence) {
    uint64_t limit = timeout_cycles;
    const char *error = 0;
    timeout_cycles = limit / 20;
    for (int attempt = 0; attempt < 20; attempt++) {
        uint32_t length, answered;
        if (attempt) error = send_request(sequence);
        if (!error) error = receive_checked(&length, &answered);
        if (!error) error = answered == sequence ? 0 : "response-for-another-request";
        if (!error || !wait_expired(error)) break;
    }
    timeout_cycles = limit;
    return error;
}

const char *net_request_response(uint64_t count) {
    for (uint64_t i = 0; i < count; i++) {
        uint32_t sequence = rr_sequence++, answered, length;
        const char *error = send_request(sequence);
        if (!error && over_udp && sequence == 0) {
            if ((error = first_answer(sequence))) return error;
            continue;
        }
        /* A resent first request may be answered more than once: the extra answers are skipped. */
        do {
            if (!error) error = receive_checked(&length, &answered);
        } while (!error && over_udp && answered == 0 && sequence != 0);
        if (error) return error;
        if (answered != sequence) return "response-for-another-request";
    }
    return 0;
}

/* The far end of a VM-to-VM benchmark, until hvbench stops the VM: an echo answers each
 * datagram from its own address (mode 1), a source streams numbered 1514-byte frames (mode 2).
 * Every datagram is checked as the measured guest's are; a bad one ends the guest with a reason.
 * Waiting is no error: the measured guest starts when it starts. */
const char *net_serve(uint64_t mode) {
    if (!over_udp) return "serve-needs-a-udp-link";
    uint32_t sequence = 0;
    for (;;) {
        if (mode == 2) {
            build_frame(frame, sequence++, HVB_FRAME_MAX);
            const char *error = hvb_nic->send(frame, HVB_FRAME_MAX);
            if (!error && (sequence & 15) == 0) error = hvb_nic->flush();
            if (error) return error;
            continue;
        }
        uint32_t length, received;
        const char *error = receive_checked(&length, &received);
        if (error && wait_expired(error)) continue;
        if (error) return error;
        build_frame(frame, received, length);
        error = hvb_nic->send(frame, length);
        if (!error) error = hvb_nic->flush();
        if (error) return error;
    }
}

static void fill_sectors(uint64_t lba, uint32_t count, uint64_t seed) {
    uint64_t *words = (uint64_t *)sector_buffer;
    for (uint32_t s = 0; s < count; s++)
        for (uint32_t w = 0; w < 64; w++) words[s * 64 + w] = hvb_sector_word(lba + s, w, seed);
}

static const char *check_sectors(uint64_t lba, uint32_t count) {
    const uint64_t *words = (const uint64_t *)sector_buffer;
    for (uint32_t s = 0; s < count; s++)
        for (uint32_t w = 0; w < 64; w++)
            if (words[s * 64 + w] != hvb_sector_word(lba + s, w, 0)) return "disk-read-returned-wrong-data";
    return 0;
}

static uint64_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* One request of `sectors` at the next sequential or random position of the benchmark region. */
const char *disk_operations(uint64_t count, int write, int random, uint32_t sectors, uint64_t *bytes) {
    for (uint64_t i = 0; i < count; i++) {
        uint64_t slots = region_sectors / sectors;
        uint64_t lba = (random ? next_random() % slots : sequential_position++ % slots) * sectors;
        const char *error;
        if (write) {
            fill_sectors(lba, sectors, 1);
            error = hvb_disk->write(lba, sectors, sector_buffer);
        } else {
            error = hvb_disk->read(lba, sectors, sector_buffer);
            if (!error && verify_reads) error = check_sectors(lba, sectors);
        }
        if (error) return error;
        *bytes += (uint64_t)sectors * HVB_SECTOR;
    }
    return 0;
}
