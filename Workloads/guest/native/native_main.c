/*
 * The native baseline: the same workloads (common/bench.c, compiled with the same codegen
 * flags as the guest) run as an ordinary host process. Host equivalents stand in where the
 * guest uses privileged hardware: a real syscall, SIGSEGV for #PF, SIGFPE for #DE. Operations
 * with no meaningful host equivalent are reported as "skip" with the reason.
 *
 * Usage: hvbench-native bench=cpu.int iterations=N repetitions=R warmups=W [size=BYTES]
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "hvb.h"

void plat_write(const char *text, size_t length) {
    while (length) {
        ssize_t written = write(1, text, length);
        if (written <= 0) return;
        text += written;
        length -= (size_t)written;
    }
}

uint64_t plat_cycles(void) {
    uint32_t low, high;
    __asm__ volatile("lfence\n\trdtsc" : "=a"(low), "=d"(high) : : "memory");
    return (uint64_t)high << 32 | low;
}

int plat_privilege(void) { return 3; }

void *plat_alloc(size_t bytes) {
    void *p = mmap(0, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? 0 : p;
}

/* getppid through the raw instruction: the cheapest real system call, no libc wrapper. */
static int null_syscall(uint64_t count) {
    for (uint64_t i = 0; i < count; i++) {
        uint64_t rax = SYS_getppid;
        __asm__ volatile("syscall" : "+a"(rax) : : "rcx", "r11", "memory");
    }
    return 1;
}

static void resume_at_fixup(int signal_number, siginfo_t *info, void *context) {
    (void)info;
    ucontext_t *uc = context;
    uint64_t expected = signal_number == SIGSEGV ? HVB_VECTOR_PF : HVB_VECTOR_DE;
    if (hvb_expected_vector != expected || !hvb_fixup_rip) {
        static const char message[] = "HVB1 fault reason=unexpected-signal\n";
        plat_write(message, sizeof message - 1);
        _exit(3);
    }
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)hvb_fixup_rip;
    hvb_fault_count++;
}

struct plat_ops plat = {
    .null_syscall = null_syscall,
    .no_pte = "no-unprivileged-pte-write-and-invlpg-on-the-host",
    .no_port = "host-port-io-is-not-a-vm-exit",
    .no_mmio = "host-has-no-unclaimed-mmio-to-trap",
    .no_hypercall = "no-hypervisor-to-call",
    .no_boot = "no-vm-to-boot",
};

int main(int argc, char **argv) {
    char cmdline[1024] = "";
    for (int i = 1; i < argc; i++) {
        if (strlen(cmdline) + strlen(argv[i]) + 2 > sizeof cmdline) {
            fprintf(stderr, "hvbench-native: command line too long\n");
            return 2;
        }
        strcat(cmdline, argv[i]);
        strcat(cmdline, " ");
    }
    struct hvb_job job;
    const char *error = hvb_parse_job(cmdline, &job);
    if (error) {
        printf("HVB1 fail reason=%s\n", error);
        return 2;
    }
    struct sigaction action = {0};
    action.sa_sigaction = resume_at_fixup;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, 0);
    sigaction(SIGFPE, &action, 0);
    void *guard = mmap(0, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard != MAP_FAILED) plat.fault_page = guard;
    else plat.no_fault = "cannot-map-guard-page";

    plat_write("HVB1 hello guest=hvbench-native-1\n", 34);
    int status = hvb_run_job(&job);
    plat_write("HVB1 done\n", 10);
    return status ? 1 : 0;
}
