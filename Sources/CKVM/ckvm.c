#include "ckvm.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

int ckvm_ioctl(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}

int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value) {
    return ioctl(fd, request, value);
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

int ckvm_copy_supported_cpuid(int system_fd, int vcpu_fd, int tsc_deadline) {
    int capacity = 128;
    for (;;) {
        size_t bytes = sizeof(struct kvm_cpuid2) + capacity * sizeof(struct kvm_cpuid_entry2);
        struct kvm_cpuid2 *cpuid = calloc(1, bytes);
        if (!cpuid) return -ENOMEM;
        cpuid->nent = capacity;
        if (ioctl(system_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
            int error = errno;
            free(cpuid);
            if (error == E2BIG && capacity < 4096) {
                capacity *= 2;
                continue;
            }
            return -error;
        }
        for (uint32_t i = 0; i < cpuid->nent; i++)
            if (cpuid->entries[i].function == 1 && tsc_deadline) cpuid->entries[i].ecx |= 1u << 24;
        int result = ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
        free(cpuid);
        return result;
    }
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
