/*
 * Frames for a link into the host kernel (the TAP backend): Ethernet + IPv4 + UDP with valid
 * header and UDP checksums, to the peer's MAC and address the job names (hvbench sets a static
 * neighbour entry for the guest's address, so neither side needs ARP). The payload carries the
 * same pattern as the in-VMM peer's frames at the same frame offsets: bytes 42-45 sequence,
 * 46-49 payload length (little-endian), then byte i = hvb_frame_byte(sequence, i) from 50 on,
 * which the kernel peer checks (hvbench's KernelUDPPeer).
 */
#include "hvb.h"
#include "io.h"
#include "udp_frames.h"

#define UDP_PAYLOAD 42u
#define UDP_PATTERN 50u

static uint32_t sums[256];    /* the pattern's 16-bit word sum from offset 50 to sum_length */
static uint32_t sum_length;

static uint32_t add_words(const uint8_t *bytes, uint32_t start, uint32_t end) {
    uint32_t sum = 0;
    for (uint32_t i = start; i + 1 < end; i += 2) sum += (uint32_t)bytes[i] << 8 | bytes[i + 1];
    if ((end - start) & 1) sum += (uint32_t)bytes[end - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

static void put16(uint8_t *out, uint32_t offset, uint32_t value) {
    out[offset] = (uint8_t)(value >> 8);
    out[offset + 1] = (uint8_t)value;
}

static void put_address(uint8_t *out, uint32_t offset, uint32_t address) {
    for (int i = 0; i < 4; i++) out[offset + i] = (uint8_t)(address >> (24 - 8 * i));
}

void udp_build_frame(const struct udp_link *link, const uint8_t *templates, uint8_t *out, uint32_t sequence,
                     uint32_t length) {
    const uint8_t *template = templates + (sequence & 0xFF) * HVB_FRAME_MAX;
    if (sum_length != length) {
        for (uint32_t s = 0; s < 256; s++) sums[s] = add_words(templates + s * HVB_FRAME_MAX, UDP_PATTERN, length);
        sum_length = length;
    }
    for (uint32_t i = UDP_PATTERN; i < length; i++) out[i] = template[i];
    for (int i = 0; i < 6; i++) out[i] = link->peer_mac[i];
    for (int i = 0; i < 6; i++) out[6 + i] = link->guest_mac[i];
    out[12] = 0x08;
    out[13] = 0x00;
    /* IPv4: no options, DF, TTL 64, UDP */
    out[14] = 0x45;
    out[15] = 0;
    put16(out, 16, length - 14);
    put16(out, 18, sequence & 0xFFFF);
    put16(out, 20, 0x4000);
    out[22] = 64;
    out[23] = 17;
    put16(out, 24, 0);
    put_address(out, 26, link->guest_ip);
    put_address(out, 30, link->peer_ip);
    put16(out, 24, fold(add_words(out, 14, 34)));
    /* UDP */
    uint32_t udp_length = length - 34;
    put16(out, 34, link->guest_port);
    put16(out, 36, link->peer_port);
    put16(out, 38, udp_length);
    put16(out, 40, 0);
    for (int i = 0; i < 4; i++) out[UDP_PAYLOAD + i] = (uint8_t)(sequence >> (8 * i));
    for (int i = 0; i < 4; i++) out[UDP_PAYLOAD + 4 + i] = (uint8_t)((length - UDP_PAYLOAD) >> (8 * i));
    uint32_t sum = (link->guest_ip >> 16) + (link->guest_ip & 0xFFFF) + (link->peer_ip >> 16) + (link->peer_ip & 0xFFFF) +
                   17 + udp_length;
    sum += add_words(out, 34, UDP_PATTERN) + sums[sequence & 0xFF];
    uint16_t checksum = fold(sum);
    put16(out, 40, checksum ? checksum : 0xFFFF);
}

const char *udp_check_frame(const struct udp_link *link, const uint8_t *templates, const uint8_t *in, uint32_t length,
                            uint32_t *sequence) {
    if (length < UDP_PATTERN || in[12] != 0x08 || in[13] != 0x00 || in[14] != 0x45 || in[23] != 17) return UDP_NOT_OURS;
    uint32_t udp_length = (uint32_t)in[38] << 8 | in[39];
    uint32_t destination_port = (uint32_t)in[36] << 8 | in[37];
    if (destination_port != link->guest_port) return UDP_NOT_OURS;
    if (udp_length + 34 != length) return "received-udp-length-mismatch";
    if (fold(add_words(in, 14, 34)) != 0) return "received-bad-ip-checksum";
    uint32_t source = 0, destination = 0;
    for (int i = 0; i < 4; i++) source = source << 8 | in[26 + i];
    for (int i = 0; i < 4; i++) destination = destination << 8 | in[30 + i];
    if (source != link->peer_ip || destination != link->guest_ip) return "received-udp-from-another-address";
    if (in[40] | in[41]) {
        uint32_t sum = (source >> 16) + (source & 0xFFFF) + (destination >> 16) + (destination & 0xFFFF) + 17 + udp_length;
        if (fold(sum + add_words(in, 34, length)) != 0) return "received-bad-udp-checksum";
    }
    return udp_check_payload(templates, in, length, sequence);
}

const char *udp_check_payload(const uint8_t *templates, const uint8_t *in, uint32_t length, uint32_t *sequence) {
    if (length < UDP_PATTERN) return "received-runt-datagram";
    uint32_t s = 0, l = 0;
    for (int i = 0; i < 4; i++) s |= (uint32_t)in[UDP_PAYLOAD + i] << (8 * i);
    for (int i = 0; i < 4; i++) l |= (uint32_t)in[UDP_PAYLOAD + 4 + i] << (8 * i);
    if (l + UDP_PAYLOAD != length) return "received-frame-length-mismatch";
    const uint8_t *template = templates + (s & 0xFF) * HVB_FRAME_MAX;
    for (uint32_t i = UDP_PATTERN; i < length; i++)
        if (in[i] != template[i]) return "received-frame-corrupt";
    *sequence = s;
    return 0;
}
