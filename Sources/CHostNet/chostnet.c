#define _GNU_SOURCE
#include "chostnet.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
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
