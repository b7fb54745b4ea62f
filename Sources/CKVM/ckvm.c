#include <sys/eventfd.h>
#include <sys/epoll.h>
#include "ckvm.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int ckvm_ioctl(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}

int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value) {
    return ioctl(fd, request, value);
}

int ckvm_stats_fd(int fd) {
    int result = ioctl(fd, KVM_GET_STATS_FD, 0);
    return result < 0 ? -errno : result;
}

int64_t ckvm_read_stat(int stats_fd, const char *name) {
    struct kvm_stats_header header;
    if (pread(stats_fd, &header, sizeof header, 0) != (ssize_t)sizeof header) return -1;
    if (header.name_size == 0 || header.name_size > 4096 || header.num_desc > 4096) return -1;
    size_t stride = sizeof(struct kvm_stats_desc) + header.name_size;
    char *descriptor = malloc(stride);
    if (!descriptor) return -1;
    int64_t value = -1;
    for (uint32_t i = 0; i < header.num_desc; i++) {
        if (pread(stats_fd, descriptor, stride, header.desc_offset + (off_t)i * (off_t)stride) != (ssize_t)stride) break;
        struct kvm_stats_desc *d = (struct kvm_stats_desc *)descriptor;
        d->name[header.name_size - 1] = 0;
        if (strcmp(d->name, name) != 0) continue;
        uint64_t data;
        if (pread(stats_fd, &data, sizeof data, header.data_offset + (off_t)d->offset) == (ssize_t)sizeof data)
            value = (int64_t)data;
        break;
    }
    free(descriptor);
    return value;
}

int ckvm_irq_line(int vm_fd, uint32_t line, int level) {
    struct kvm_irq_level irq = {.irq = line, .level = level ? 1 : 0};
    return ioctl(vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

int ckvm_signal_msi(int vm_fd, uint64_t address, uint32_t data) {
    struct kvm_msi msi = {.address_lo = (uint32_t)address, .address_hi = (uint32_t)(address >> 32), .data = data};
    int result = ioctl(vm_fd, KVM_SIGNAL_MSI, &msi);
    return result < 0 ? -errno : result;
}

int ckvm_set_msi_routes(int vm_fd, uint32_t first_msi_gsi, const uint64_t *addresses, const uint32_t *data,
                        uint32_t count) {
    if (count > 1024) return -EINVAL;
    uint32_t capacity = 16 * 2 + 8 + count;
    struct kvm_irq_routing *table =
        calloc(1, sizeof(struct kvm_irq_routing) + capacity * sizeof(struct kvm_irq_routing_entry));
    if (!table) return -ENOMEM;
    uint32_t n = 0;
    for (uint32_t gsi = 0; gsi < 24; gsi++) {
        if (gsi < 16) {
            struct kvm_irq_routing_entry *pic = &table->entries[n++];
            pic->gsi = gsi;
            pic->type = KVM_IRQ_ROUTING_IRQCHIP;
            pic->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
            pic->u.irqchip.pin = gsi % 8;
        }
        struct kvm_irq_routing_entry *ioapic = &table->entries[n++];
        ioapic->gsi = gsi;
        ioapic->type = KVM_IRQ_ROUTING_IRQCHIP;
        ioapic->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        ioapic->u.irqchip.pin = gsi;
    }
    for (uint32_t i = 0; i < count; i++) {
        struct kvm_irq_routing_entry *msi = &table->entries[n++];
        msi->gsi = first_msi_gsi + i;
        msi->type = KVM_IRQ_ROUTING_MSI;
        msi->u.msi.address_lo = (uint32_t)addresses[i];
        msi->u.msi.address_hi = (uint32_t)(addresses[i] >> 32);
        msi->u.msi.data = data[i];
    }
    table->nr = n;
    int result = ioctl(vm_fd, KVM_SET_GSI_ROUTING, table) < 0 ? -errno : 0;
    free(table);
    return result;
}

int ckvm_irqfd(int vm_fd, int event_fd, uint32_t gsi) {
    struct kvm_irqfd request = {.fd = (uint32_t)event_fd, .gsi = gsi};
    return ioctl(vm_fd, KVM_IRQFD, &request) < 0 ? -errno : 0;
}

void *ckvm_supported_cpuid(int system_fd) {
    int capacity = 128;
    for (;;) {
        size_t bytes = sizeof(struct kvm_cpuid2) + capacity * sizeof(struct kvm_cpuid_entry2);
        struct kvm_cpuid2 *cpuid = calloc(1, bytes);
        if (!cpuid) return NULL;
        cpuid->nent = capacity;
        if (ioctl(system_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0) return cpuid;
        int error = errno;
        free(cpuid);
        if (error != E2BIG || capacity >= 4096) {
            errno = error;
            return NULL;
        }
        capacity *= 2;
    }
}

/* KVM's paravirtual leaves: its signature (0x40000000, "KVMKVMKVM") and features (0x40000001). */
static int is_paravirtual_leaf(uint32_t function) { return function >= 0x40000000u && function <= 0x4FFFFFFFu; }

uint32_t ckvm_paravirtual_features(const void *supported) {
    const struct kvm_cpuid2 *list = supported;
    int signed_kvm = 0;
    uint32_t features = 0;
    for (uint32_t i = 0; i < list->nent; i++) {
        const struct kvm_cpuid_entry2 *entry = &list->entries[i];
        if (entry->function == 0x40000000u)
            signed_kvm = entry->ebx == 0x4b4d564bu && entry->ecx == 0x564b4d56u && entry->edx == 0x4du;
        if (entry->function == 0x40000001u) features = entry->eax;
    }
    return signed_kvm ? features : 0;
}

int ckvm_set_vcpu_cpuid(int vcpu_fd, const void *supported, int tsc_deadline, uint32_t apic_id, uint32_t leaf1_ecx_hidden,
                        int present_paravirtual_leaves) {
    const struct kvm_cpuid2 *list = supported;
    size_t bytes = sizeof(struct kvm_cpuid2) + list->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = malloc(bytes);
    if (!cpuid) return -ENOMEM;
    cpuid->nent = 0;
    cpuid->padding = 0;
    for (uint32_t i = 0; i < list->nent; i++) {
        if (!present_paravirtual_leaves && is_paravirtual_leaf(list->entries[i].function)) continue;
        cpuid->entries[cpuid->nent++] = list->entries[i];
    }
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *entry = &cpuid->entries[i];
        if (entry->function == 1) {
            if (tsc_deadline) entry->ecx |= 1u << 24;
            entry->ecx &= ~leaf1_ecx_hidden;
            entry->ebx = (entry->ebx & 0x00FFFFFFu) | (apic_id & 0xFF) << 24;
        }
        if (entry->function == 0xB || entry->function == 0x1F) entry->edx = apic_id;
    }
    int result = ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
    free(cpuid);
    return result;
}

static void ignore_signal(int signal_number) { (void)signal_number; }

int ckvm_install_kick_signal(int signal_number) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ignore_signal; /* no SA_RESTART: KVM_RUN must return EINTR */
    sigemptyset(&action.sa_mask);
    return sigaction(signal_number, &action, 0) < 0 ? -errno : 0;
}

int ckvm_unblock_kick_signal(int signal_number) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal_number);
    return pthread_sigmask(SIG_UNBLOCK, &set, 0) == 0 ? 0 : -errno;
}

int ckvm_coalesced_mmio(int vm_fd, uint64_t address, uint32_t size, int unregister) {
    struct kvm_coalesced_mmio_zone zone = {.addr = address, .size = size};
    unsigned long request = unregister ? KVM_UNREGISTER_COALESCED_MMIO : KVM_REGISTER_COALESCED_MMIO;
    return ioctl(vm_fd, request, &zone) < 0 ? -errno : 0;
}

int ckvm_coalesced_take(void *ring_page, size_t page_size, uint64_t *address, uint32_t *length, uint8_t data[8]) {
    struct kvm_coalesced_mmio_ring *ring = ring_page;
    uint32_t capacity = (uint32_t)((page_size - sizeof *ring) / sizeof(struct kvm_coalesced_mmio));
    uint32_t first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
    /* KVM writes the entry before it publishes `last`. */
    uint32_t last = __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE);
    if (first == last || first >= capacity || last >= capacity) return 0;
    struct kvm_coalesced_mmio *entry = &ring->coalesced_mmio[first];
    *address = entry->phys_addr;
    *length = entry->len > 8 ? 8 : entry->len;
    memcpy(data, entry->data, 8);
    /* The entry is copied before KVM may reuse its slot. */
    __atomic_store_n(&ring->first, (first + 1) % capacity, __ATOMIC_RELEASE);
    return 1;
}

int ckvm_ioeventfd(int vm_fd, uint64_t address, uint32_t length, int event_fd, int deassign) {
    struct kvm_ioeventfd request = {.addr = address, .len = length, .fd = event_fd,
                                    .flags = deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0};
    return ioctl(vm_fd, KVM_IOEVENTFD, &request) < 0 ? -errno : 0;
}

int ckvm_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int64_t ckvm_eventfd_take(int event_fd) {
    uint64_t count = 0;
    ssize_t got = read(event_fd, &count, sizeof count);
    if (got == sizeof count) return (int64_t)count;
    return errno == EAGAIN ? 0 : -errno;
}

int ckvm_eventfd_signal(int event_fd) {
    uint64_t one = 1;
    return write(event_fd, &one, sizeof one) == sizeof one ? 0 : -errno;
}

int ckvm_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int ckvm_epoll_add(int epoll_fd, int fd, uint64_t token) {
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = token};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0 ? -errno : 0;
}

int ckvm_epoll_arm(int epoll_fd, int fd, uint64_t token, int armed) {
    struct epoll_event event = {.events = armed ? EPOLLIN : 0, .data.u64 = token};
    return epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &event) < 0 ? -errno : 0;
}

int ckvm_epoll_remove(int epoll_fd, int fd) {
    return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, 0) < 0 ? -errno : 0;
}

int64_t ckvm_epoll_wait_one(int epoll_fd, int timeout_ms) {
    struct epoll_event event;
    int ready = epoll_wait(epoll_fd, &event, 1, timeout_ms);
    if (ready < 0) return errno == EINTR ? -1 : -errno - 2;
    return ready == 0 ? -1 : (int64_t)event.data.u64;
}
