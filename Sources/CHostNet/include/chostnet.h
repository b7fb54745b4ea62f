/*
 * The thin, unsafe bottom of hvbench's host networking: a private network namespace, TAP
 * devices, and interface configuration through the classic ioctls (no netlink). Every function
 * returns 0 (or a descriptor) on success and -errno on failure; Swift above turns that into
 * typed errors.
 */
#ifndef CHOSTNET_H
#define CHOSTNET_H

#include <stdint.h>

/* The calling thread leaves the process's network namespace for a new, empty one. */
int chn_unshare_network(void);
/* A descriptor of the calling thread's network namespace (/proc/thread-self/ns/net). */
int chn_open_own_network_namespace(void);
/* The calling thread joins the network namespace `fd` refers to. */
int chn_enter_network_namespace(int fd);

/* Opens /dev/net/tun and attaches a TAP interface (IFF_TAP | IFF_NO_PI) called `name`, in the
 * calling thread's namespace; non-blocking. Returns the descriptor. */
int chn_open_tap(const char *name);
/* Keeps the TAP interface of descriptor `fd` after the descriptor closes (1), or not (0), so
 * another process (QEMU) can attach to it by name. */
int chn_set_tap_persistent(int fd, int persistent);
/* The calling thread's kernel thread ID. */
int chn_thread_id(void);
/* Sets or clears IFF_UP on interface `name`. */
int chn_set_interface_up(const char *name, int up);
/* Gives interface `name` the IPv4 address `address` (host byte order) with `prefix_length`. */
int chn_set_interface_ipv4(const char *name, uint32_t address, int prefix_length);
/* The hardware address of interface `name`, into mac[6]. */
int chn_interface_mac(const char *name, uint8_t mac[6]);
/* Whether interface `name` exists in the calling thread's namespace: 1, 0, or -errno. */
int chn_interface_exists(const char *name);
/* A permanent ARP entry: `address` (host byte order) is at `mac` on interface `name`. */
int chn_set_neighbour(const char *name, uint32_t address, const uint8_t mac[6]);
/* Creates the bridge `name`, and adds interface `port` to bridge `name`. */
int chn_add_bridge(const char *name);
int chn_add_bridge_port(const char *name, const char *port);
/* Turns the transmit checksum offload of interface `name` on or off. Off, the kernel finishes
 * every checksum before a frame reaches the device (a TAP reader without a virtio-net header
 * cannot pass a partial checksum on), whatever offloads a later TAP user asks for. */
int chn_set_transmit_checksum_offload(const char *name, int on);
/* Creates the veth pair `name` (in the calling thread's namespace) and `peer_name`, the peer
 * placed in the namespace of descriptor `peer_namespace_fd` (or beside `name` when it is -1). */
int chn_add_veth_pair(const char *name, const char *peer_name, int peer_namespace_fd);

#endif
