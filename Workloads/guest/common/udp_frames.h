/* IPv4/UDP frames for the TAP backend (udp_frames.c). */
#ifndef HVB_UDP_FRAMES_H
#define HVB_UDP_FRAMES_H
#include <stdint.h>

/* The two ends of the link, from the job (udp=1 guest_ip= peer_ip= peer_mac= ...). */
struct udp_link {
    uint8_t guest_mac[6], peer_mac[6];
    uint32_t guest_ip, peer_ip; /* host byte order */
    uint32_t guest_port, peer_port;
};

/* A frame that is not a UDP datagram to the guest's port (ARP, IPv6 neighbour discovery...):
 * the receiver skips it. */
#define UDP_NOT_OURS "not-ours"

void udp_build_frame(const struct udp_link *link, const uint8_t *templates, uint8_t *out, uint32_t sequence,
                     uint32_t length);
const char *udp_check_frame(const struct udp_link *link, const uint8_t *templates, const uint8_t *in, uint32_t length,
                            uint32_t *sequence);
/* Checks only a datagram's payload (frame bytes 42 on; the kernel checked the headers). */
const char *udp_check_payload(const uint8_t *templates, const uint8_t *in, uint32_t length, uint32_t *sequence);
#endif
