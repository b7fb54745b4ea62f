#define _GNU_SOURCE
#include "chostnet.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <linux/sockios.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int chn_unshare_network(void) { return unshare(CLONE_NEWNET) == 0 ? 0 : -errno; }

int chn_open_own_network_namespace(void) {
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int chn_enter_network_namespace(int fd) { return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno; }

static int copy_name(struct ifreq *request, const char *name) {
    memset(request, 0, sizeof *request);
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(request->ifr_name, name, IFNAMSIZ - 1);
    return 0;
}

int chn_open_tap(const char *name) {
    struct ifreq request;
    int error = copy_name(&request, name);
    if (error) return error;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &request) != 0) {
        error = -errno;
        close(fd);
        return error;
    }
    return fd;
}

int chn_set_tap_persistent(int fd, int persistent) {
    return ioctl(fd, TUNSETPERSIST, persistent ? 1 : 0) == 0 ? 0 : -errno;
}

int chn_thread_id(void) { return (int)gettid(); }

/* An ioctl on a throwaway datagram socket of the calling thread's namespace. */
static int socket_ioctl(int family, unsigned long request, void *argument) {
    int s = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    int result = ioctl(s, request, argument) == 0 ? 0 : -errno;
    close(s);
    return result;
}

int chn_set_interface_up(const char *name, int up) {
    struct ifreq request;
    int error = copy_name(&request, name);
    if (error) return error;
    if ((error = socket_ioctl(AF_INET, SIOCGIFFLAGS, &request))) return error;
    if (up) request.ifr_flags |= IFF_UP;
    else request.ifr_flags &= ~IFF_UP;
    return socket_ioctl(AF_INET, SIOCSIFFLAGS, &request);
}

int chn_set_interface_ipv4(const char *name, uint32_t address, int prefix_length) {
    if (prefix_length < 0 || prefix_length > 32) return -EINVAL;
    struct ifreq request;
    int error = copy_name(&request, name);
    if (error) return error;
    struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(address);
    if ((error = socket_ioctl(AF_INET, SIOCSIFADDR, &request))) return error;
    in->sin_addr.s_addr = htonl(prefix_length == 0 ? 0 : 0xFFFFFFFFu << (32 - prefix_length));
    return socket_ioctl(AF_INET, SIOCSIFNETMASK, &request);
}

int chn_interface_mac(const char *name, uint8_t mac[6]) {
    struct ifreq request;
    int error = copy_name(&request, name);
    if (error) return error;
    if ((error = socket_ioctl(AF_INET, SIOCGIFHWADDR, &request))) return error;
    memcpy(mac, request.ifr_hwaddr.sa_data, 6);
    return 0;
}

int chn_interface_exists(const char *name) {
    struct ifreq request;
    int error = copy_name(&request, name);
    if (error) return error;
    error = socket_ioctl(AF_INET, SIOCGIFINDEX, &request);
    if (error == -ENODEV) return 0;
    return error ? error : 1;
}

int chn_set_neighbour(const char *name, uint32_t address, const uint8_t mac[6]) {
    struct arpreq request;
    memset(&request, 0, sizeof request);
    if (strlen(name) >= sizeof request.arp_dev) return -ENAMETOOLONG;
    struct sockaddr_in *in = (struct sockaddr_in *)&request.arp_pa;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(address);
    request.arp_ha.sa_family = ARPHRD_ETHER;
    memcpy(request.arp_ha.sa_data, mac, 6);
    request.arp_flags = ATF_PERM | ATF_COM;
    strncpy(request.arp_dev, name, sizeof request.arp_dev - 1);
    return socket_ioctl(AF_INET, SIOCSARP, &request);
}

int chn_add_bridge(const char *name) {
    char copy[IFNAMSIZ];
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(copy, name, IFNAMSIZ);
    return socket_ioctl(AF_LOCAL, SIOCBRADDBR, copy);
}

int chn_add_bridge_port(const char *name, const char *port) {
    struct ifreq request;
    int error = copy_name(&request, port);
    if (error) return error;
    if ((error = socket_ioctl(AF_INET, SIOCGIFINDEX, &request))) return error;
    int index = request.ifr_ifindex;
    if ((error = copy_name(&request, name))) return error;
    request.ifr_ifindex = index;
    return socket_ioctl(AF_LOCAL, SIOCBRADDIF, &request);
}

int chn_set_transmit_checksum_offload(const char *name, int on) {
    struct ifreq request;
    int error = copy_name(&request, name);
    if (error) return error;
    struct ethtool_value value = {.cmd = ETHTOOL_STXCSUM, .data = on ? 1 : 0};
    request.ifr_data = (void *)&value;
    return socket_ioctl(AF_INET, SIOCETHTOOL, &request);
}

/* ---- a veth pair: the one interface the classic ioctls cannot create (rtnetlink) ---- */

struct link_request {
    struct nlmsghdr header;
    struct ifinfomsg info;
    char attributes[512];
};

/* Appends attribute `type` with `length` bytes of `data` at the end of the message; returns
 * it (so nested attributes can grow it later) or NULL when the buffer is full. */
static struct rtattr *append_attribute(struct link_request *message, unsigned short type, const void *data, size_t length) {
    size_t at = NLMSG_ALIGN(message->header.nlmsg_len), size = RTA_LENGTH(length);
    if (at + RTA_ALIGN(size) > sizeof *message) return NULL;
    struct rtattr *attribute = (struct rtattr *)((char *)message + at);
    attribute->rta_type = type;
    attribute->rta_len = (unsigned short)size;
    if (length) memcpy(RTA_DATA(attribute), data, length);
    message->header.nlmsg_len = (uint32_t)(at + RTA_ALIGN(size));
    return attribute;
}

/* Closes a nested attribute opened by append_attribute(..., NULL, 0): it spans to the end. */
static void close_nest(struct link_request *message, struct rtattr *nest) {
    nest->rta_len = (unsigned short)((char *)message + message->header.nlmsg_len - (char *)nest);
}

int chn_add_veth_pair(const char *name, const char *peer_name, int peer_namespace_fd) {
    if (strlen(name) >= IFNAMSIZ || strlen(peer_name) >= IFNAMSIZ) return -ENAMETOOLONG;
    struct link_request message;
    memset(&message, 0, sizeof message);
    message.header.nlmsg_len = NLMSG_LENGTH(sizeof message.info);
    message.header.nlmsg_type = RTM_NEWLINK;
    message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    message.header.nlmsg_seq = 1;
    message.info.ifi_family = AF_UNSPEC;
    struct rtattr *link_info, *info_data, *peer;
    if (!append_attribute(&message, IFLA_IFNAME, name, strlen(name) + 1)) return -ENOBUFS;
    if (!(link_info = append_attribute(&message, IFLA_LINKINFO, NULL, 0))) return -ENOBUFS;
    if (!append_attribute(&message, IFLA_INFO_KIND, "veth", 5)) return -ENOBUFS;
    if (!(info_data = append_attribute(&message, IFLA_INFO_DATA, NULL, 0))) return -ENOBUFS;
    /* The peer's attributes follow an ifinfomsg of its own. */
    struct ifinfomsg peer_info = {.ifi_family = AF_UNSPEC};
    if (!(peer = append_attribute(&message, VETH_INFO_PEER, &peer_info, sizeof peer_info))) return -ENOBUFS;
    if (!append_attribute(&message, IFLA_IFNAME, peer_name, strlen(peer_name) + 1)) return -ENOBUFS;
    if (peer_namespace_fd >= 0) {
        uint32_t fd = (uint32_t)peer_namespace_fd;
        if (!append_attribute(&message, IFLA_NET_NS_FD, &fd, sizeof fd)) return -ENOBUFS;
    }
    close_nest(&message, peer);
    close_nest(&message, info_data);
    close_nest(&message, link_info);

    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) return -errno;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    int result = 0;
    if (sendto(s, &message, message.header.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        result = -errno;
    } else {
        char answer[1024];
        ssize_t got = recv(s, answer, sizeof answer, 0);
        struct nlmsghdr *reply = (struct nlmsghdr *)answer;
        if (got < 0) result = -errno;
        else if (got < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || reply->nlmsg_type != NLMSG_ERROR) result = -EPROTO;
        else result = ((struct nlmsgerr *)NLMSG_DATA(reply))->error; /* 0 or -errno */
    }
    close(s);
    return result;
}
