/*
 * The thin, unsafe bottom of hvbench's KVM support: request numbers from <linux/kvm.h> as
 * constants Swift can see, non-variadic ioctl wrappers, and accessors for the unions in
 * struct kvm_run. Everything above this is typed Swift.
 */
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <stdint.h>
#include <stddef.h>

static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long CKVM_CAP_IRQCHIP = KVM_CAP_IRQCHIP;
static const unsigned long CKVM_CAP_TSC_DEADLINE_TIMER = KVM_CAP_TSC_DEADLINE_TIMER;
static const unsigned long CKVM_CAP_COALESCED_MMIO = KVM_CAP_COALESCED_MMIO;

/* KVM_GET_STATS_FD on a VM or vCPU descriptor: the binary statistics file, or -errno. */
int ckvm_stats_fd(int fd);
/* The first value of the statistic called `name` in a binary statistics file; -1 when the file
 * has no such statistic or cannot be read. */
int64_t ckvm_read_stat(int stats_fd, const char *name);

/* KVM_IRQ_LINE: drive input `line` of the in-kernel IOAPIC/PIC. 0 or -errno. */
int ckvm_irq_line(int vm_fd, uint32_t line, int level);
/* KVM_SIGNAL_MSI: deliver one MSI message. >0 delivered, 0 blocked by the guest, or -errno. */
int ckvm_signal_msi(int vm_fd, uint64_t address, uint32_t data);

/* KVM_SET_GSI_ROUTING: the whole routing table, which replaces KVM's default one, so it holds
 * the default irqchip routes too (GSIs 0-15 to the PIC and the IOAPIC, 16-23 to the IOAPIC)
 * followed by `count` MSI routes, GSI first_msi_gsi + i carrying (addresses[i], data[i]).
 * 0 or -errno. */
int ckvm_set_msi_routes(int vm_fd, uint32_t first_msi_gsi, const uint64_t *addresses, const uint32_t *data,
                        uint32_t count);
/* KVM_IRQFD: a write to `event_fd` raises `gsi` in the kernel, without an ioctl per interrupt.
 * 0 or -errno. */
int ckvm_irqfd(int vm_fd, int event_fd, uint32_t gsi);

/* KVM_REGISTER_COALESCED_MMIO (unregister != 0: KVM_UNREGISTER_COALESCED_MMIO): guest writes
 * into [address, address + size) are appended to the coalesced-MMIO ring instead of exiting;
 * reads still exit. 0 or -errno. */
int ckvm_coalesced_mmio(int vm_fd, uint64_t address, uint32_t size, int unregister);
/* The oldest write in the coalesced-MMIO ring (a page of the vCPU mapping, at the page offset
 * KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) gives), removed from it: 1 with its address,
 * length (1-8) and data filled in, 0 when the ring is empty or its indices are corrupt. */
int ckvm_coalesced_take(void *ring_page, size_t page_size, uint64_t *address, uint32_t *length, uint8_t data[8]);

/* KVM_IOEVENTFD: KVM signals `event_fd` when the guest writes `length` bytes at MMIO `address`,
 * without an exit to user space; deassign != 0 removes it. 0 or -errno. */
int ckvm_ioeventfd(int vm_fd, uint64_t address, uint32_t length, int event_fd, int deassign);

/* eventfd and epoll for the I/O thread (epoll_event is packed, which Swift does not import). */
int ckvm_eventfd(void);
/* The eventfd's count (how many writes since the last read), 0 if none, or -errno. */
int64_t ckvm_eventfd_take(int event_fd);
int ckvm_eventfd_signal(int event_fd);
int ckvm_epoll_create(void);
int ckvm_epoll_add(int epoll_fd, int fd, uint64_t token);
int ckvm_epoll_remove(int epoll_fd, int fd);
/* Arms (EPOLLIN) or disarms (no events) a descriptor already added. */
int ckvm_epoll_arm(int epoll_fd, int fd, uint64_t token, int armed);
/* Waits up to timeout_ms (-1: no limit) for one ready descriptor: its token, -1 on a timeout or
 * a signal, or -errno-2 when epoll fails. */
int64_t ckvm_epoll_wait_one(int epoll_fd, int timeout_ms);

int ckvm_ioctl(int fd, unsigned long request, void *argument);
int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value);

/* KVM_GET_SUPPORTED_CPUID: a malloc'd struct kvm_cpuid2 (release with free()), or NULL with
 * errno set. Asked once per open /dev/kvm: the list does not change, and asking costs a CPUID
 * instruction per leaf in the kernel (about a tenth of a VM's construction). */
void *ckvm_supported_cpuid(int system_fd);
/* A copy of `supported` (from ckvm_supported_cpuid) onto the vCPU with KVM_SET_CPUID2; 0 or
 * -errno. KVM leaves the TSC-deadline timer out of the supported list (it depends on the
 * in-kernel LAPIC): tsc_deadline != 0 adds it. apic_id goes into leaf 1 (initial APIC ID) and
 * leaves 0xB/0x1F (x2APIC ID), as each CPU of a PC reports its own. The leaf-1 ECX bits in
 * leaf1_ecx_hidden (features the host's KVM cannot give a guest) are cleared. */
/* Gives the vCPU KVM's supported CPUID, adjusted: the TSC-deadline bit, its APIC ID, leaf-1 ECX bits
 * hidden, and KVM's paravirtual leaves (0x40000000-0x4FFFFFFF) only if asked. */
int ckvm_set_vcpu_cpuid(int vcpu_fd, const void *supported, int tsc_deadline, uint32_t apic_id, uint32_t leaf1_ecx_hidden,
                        int present_paravirtual_leaves);
/* KVM_CPUID_FEATURES' EAX (leaf 0x40000001) in a supported list with KVM's signature leaf; 0 otherwise. */
uint32_t ckvm_paravirtual_features(const void *supported);

/* Accessors for the exit-reason union of struct kvm_run. */
static inline uint32_t ckvm_exit_reason(const struct kvm_run *run) { return run->exit_reason; }
static inline void ckvm_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}

struct ckvm_io {
    uint16_t port;
    uint8_t size;       /* 1, 2 or 4 */
    uint8_t is_write;
    uint32_t count;     /* > 1 for string instructions (rep ins/outs) */
    uint8_t *data;      /* size * count bytes inside the kvm_run mapping */
};
static inline struct ckvm_io ckvm_io_exit(struct kvm_run *run) {
    struct ckvm_io io = {run->io.port, run->io.size, run->io.direction == KVM_EXIT_IO_OUT,
                         run->io.count, (uint8_t *)run + run->io.data_offset};
    return io;
}

struct ckvm_mmio {
    uint64_t address;
    uint32_t length;
    uint8_t is_write;
    uint8_t *data;      /* 8 bytes inside the kvm_run mapping */
};
static inline struct ckvm_mmio ckvm_mmio_exit(struct kvm_run *run) {
    struct ckvm_mmio m = {run->mmio.phys_addr, run->mmio.len, run->mmio.is_write,
                          run->mmio.data};
    return m;
}

static inline uint64_t ckvm_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t ckvm_internal_error(const struct kvm_run *run) {
    return run->internal.suberror;
}
static inline uint32_t ckvm_system_event_type(const struct kvm_run *run) {
    return run->system_event.type;
}

/* A signal whose handler does nothing: delivering it makes a blocked KVM_RUN return EINTR,
 * which is how a watchdog stops a vCPU thread. Returns 0 or -errno. */
int ckvm_install_kick_signal(int signal_number);

/* Unblocks the kick signal on the calling (vCPU) thread. Threads started from libdispatch
 * workers inherit a mask that blocks asynchronous signals, which would leave KVM_RUN deaf to
 * the watchdog whenever the guest runs without exiting. */
int ckvm_unblock_kick_signal(int signal_number);

#endif
