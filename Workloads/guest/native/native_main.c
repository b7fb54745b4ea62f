/*
 * The native baseline: the same workloads (common/bench.c, compiled with the same codegen
 * flags as the guest) run as an ordinary host process. Host equivalents stand in where the
 * guest uses privileged hardware: a real syscall, SIGSEGV for #PF, SIGFPE for #DE. Operations
 * with no meaningful host equivalent are reported as "skip" with the reason.
 *
 * Usage: hvbench-native bench=cpu.int iterations=N repetitions=R warmups=W [size=BYTES]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "hvb.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <time.h>

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

/* ---- host equivalents of the guest's timer interrupt: a POSIX timer's signal (irq.timer)
 * and the wake-up from clock_nanosleep at an absolute deadline (irq.hlt-wake) */

static volatile sig_atomic_t timer_signals;

static void count_timer_signal(int signal_number) {
    (void)signal_number;
    timer_signals++;
}

static timer_t host_timer;
static int host_timer_ready;

static int timer_interrupt(uint64_t count) {
    if (!host_timer_ready) {
        struct sigaction action = {0};
        action.sa_handler = count_timer_signal;
        sigaction(SIGRTMIN, &action, 0);
        struct sigevent event = {0};
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = SIGRTMIN;
        event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        if (timer_create(CLOCK_MONOTONIC, &event, &host_timer) != 0) {
            plat.failure = "timer-create-failed";
            return 0;
        }
        host_timer_ready = 1;
    }
    struct itimerspec now = {.it_value = {0, 1}}; /* one-shot, 1 ns: expires at once */
    for (uint64_t i = 0; i < count; i++) {
        sig_atomic_t before = timer_signals;
        uint64_t start = plat_cycles();
        timer_settime(host_timer, 0, &now, 0);
        while (timer_signals == before) {
            if (plat_cycles() - start > (1ull << 34)) {
                plat.failure = "timer-signal-not-delivered";
                return 0;
            }
        }
    }
    return 1;
}

static uint64_t nanoseconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* The guest's lead is 2^21 cycles; 1 ms is the same order on the hosts hvbench runs on. The
 * late part (wake-up time minus the deadline) is converted to cycles with the TSC rate seen
 * over this very operation, so no calibration is assumed. */
static uint64_t halt_wake(uint64_t count) {
    /* Without this the kernel may defer the wake-up by the default 50 us timer slack. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    uint64_t total = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t tsc_before = plat_cycles(), ns_before = nanoseconds(CLOCK_MONOTONIC);
        uint64_t deadline = ns_before + 1000000;
        struct timespec target = {(time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, 0) == EINTR) {}
        uint64_t tsc_after = plat_cycles(), ns_after = nanoseconds(CLOCK_MONOTONIC);
        if (ns_after < deadline || ns_after == ns_before) {
            plat.failure = "woke-before-the-deadline";
            return UINT64_MAX;
        }
        total += (ns_after - deadline) * (tsc_after - tsc_before) / (ns_after - ns_before);
    }
    return total;
}

/* serve=idle: blocked in the kernel until killed, as an idle container's process is. */
static void idle_forever(void) {
    for (;;) pause();
}

struct plat_ops plat = {
    .null_syscall = null_syscall,
    .idle = idle_forever,
    .timer_interrupt = timer_interrupt,
    .halt_wake = halt_wake,
    .no_pte = "no-unprivileged-pte-write-and-invlpg-on-the-host",
    .no_port = "host-port-io-is-not-a-vm-exit",
    .no_mmio = "host-has-no-unclaimed-mmio-to-trap",
    .no_hypercall = "no-hypervisor-to-call",
    .no_boot = "no-vm-to-boot",
    .no_self_ipi = "a-process-has-no-local-apic-to-interrupt-itself-with",
    .no_device_interrupts = "native-io-has-no-device-of-ours-to-interrupt",
    .no_balloon = "no-balloon-natively-the-host-owns-all-its-memory",
    .no_page_sharing = "no-vms-natively-to-share-pages-between",
};

/* ---- host equivalents of the NIC and the disk ---- */

/* The peer's own packet path, in process: a sink that checks frames, a source that makes
 * them, an echo that returns them (mirrors hvbench's NetworkPeer). */
static enum { PEER_SINK, PEER_SOURCE, PEER_ECHO } peer_mode;
static uint8_t echo_frame[2048];
static uint32_t echo_length, source_sequence;

static const char *loop_send(const uint8_t *frame, uint32_t length) {
    if (length < HVB_FRAME_HEADER || frame[12] != HVB_ETHERTYPE_HI || frame[13] != HVB_ETHERTYPE_LO) return "peer-got-a-foreign-frame";
    uint32_t sequence;
    memcpy(&sequence, frame + 14, 4);
    for (uint32_t i = HVB_FRAME_HEADER; i < length; i++)
        if (frame[i] != hvb_frame_byte(sequence, i)) return "peer-got-a-corrupt-frame";
    if (peer_mode == PEER_ECHO) {
        memcpy(echo_frame, frame, length);
        echo_length = length;
    }
    return 0;
}

static const char *loop_flush(void) { return 0; }

static const char *loop_receive(uint8_t *frame, uint32_t capacity, uint32_t *length) {
    if (peer_mode == PEER_ECHO) {
        if (!echo_length || echo_length > capacity) return "no-frame-to-receive";
        memcpy(frame, echo_frame, echo_length);
        *length = echo_length;
        echo_length = 0;
        return 0;
    }
    uint32_t n = HVB_FRAME_MAX, s = source_sequence++;
    if (n > capacity) return "receive-buffer-too-small";
    memset(frame, 0xFF, 6);
    memcpy(frame + 6, "\x02hvb\x00\x01", 6);
    frame[12] = HVB_ETHERTYPE_HI;
    frame[13] = HVB_ETHERTYPE_LO;
    memcpy(frame + 14, &s, 4);
    memcpy(frame + 18, &n, 4);
    for (uint32_t i = HVB_FRAME_HEADER; i < n; i++) frame[i] = hvb_frame_byte(s, i);
    *length = n;
    return 0;
}

static const struct nic_ops loopback = {"loopback", loop_send, loop_flush, loop_receive};

/* The native side of the TAP backend: an ordinary UDP socket bound to the guest's address
 * (the native runner runs in a namespace of its own, at the far end of a veth pair from the
 * kernel peer), so a native datagram takes the same kernel path a guest's takes after its TAP. */
static int udp_fd = -1;

static const char *socket_send(const uint8_t *frame, uint32_t length) {
    if (length < 42) return "frame-too-short-for-udp";
    ssize_t sent;
    do sent = send(udp_fd, frame + 42, length - 42, 0);
    while (sent < 0 && (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)); /* a full queue: wait, as a NIC ring would */
    return sent == (ssize_t)(length - 42) ? 0 : "udp-send-failed";
}

static const char *socket_flush(void) { return 0; }

/* Polls the socket, as the guest's polling drivers poll their rings (a blocking recv would add
 * a thread wake-up to every native receive that the guests do not pay), for up to the drivers'
 * time limit: a silent peer fails the benchmark. */
static const char *socket_receive(uint8_t *frame, uint32_t capacity, uint32_t *length) {
    if (capacity <= 42) return "receive-buffer-too-small";
    uint64_t start = plat_cycles();
    for (;;) {
        ssize_t got = recv(udp_fd, frame + 42, capacity - 42, MSG_DONTWAIT);
        if (got >= 0) {
            *length = (uint32_t)got + 42;
            return 0;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return "udp-receive-failed";
        if (plat_cycles() - start > hvb_timeout_cycles()) return "receive-timed-out";
    }
}

static const struct nic_ops kernel_socket = {"socket", socket_send, socket_flush, socket_receive, 1};

static const char *open_udp_socket(const struct hvb_job *job) {
    udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (udp_fd < 0) return "cannot-open-udp-socket";
    int buffer = 64 << 20; /* as the kernel peer's: loss only under real overload */
    if (setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) != 0)
        setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    struct sockaddr_in own = {.sin_family = AF_INET, .sin_port = htons((uint16_t)job->guest_port),
                              .sin_addr.s_addr = htonl((uint32_t)job->guest_ip)};
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons((uint16_t)job->peer_port),
                               .sin_addr.s_addr = htonl((uint32_t)job->peer_ip)};
    if (bind(udp_fd, (struct sockaddr *)&own, sizeof own) != 0) return "cannot-bind-the-guest-address";
    if (connect(udp_fd, (struct sockaddr *)&peer, sizeof peer) != 0) return "cannot-connect-to-the-peer";
    return 0;
}

static int disk_fd = -1;

static const char *file_read(uint64_t lba, uint32_t count, void *buffer) {
    size_t want = (size_t)count * HVB_SECTOR;
    return pread(disk_fd, buffer, want, (off_t)(lba * HVB_SECTOR)) == (ssize_t)want ? 0 : "host-pread-failed";
}

static const char *file_write(uint64_t lba, uint32_t count, const void *buffer) {
    size_t want = (size_t)count * HVB_SECTOR;
    return pwrite(disk_fd, buffer, want, (off_t)(lba * HVB_SECTOR)) == (ssize_t)want ? 0 : "host-pwrite-failed";
}

static struct disk_ops file_disk = {"host-file", 0, file_read, file_write};

void native_smp_install(void); /* native_smp.c */

int main(int argc, char **argv) {
    native_smp_install();
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

    if (job.disk_path[0]) {
        /* A user's image is opened read-only for read benchmarks: nothing here may change it. */
        disk_fd = open(job.disk_path, job.disk_readonly ? O_RDONLY : O_RDWR);
        if (disk_fd < 0) {
            printf("HVB1 fail reason=cannot-open-disk-image\n");
            return 2;
        }
        file_disk.sectors = (uint64_t)lseek(disk_fd, 0, SEEK_END) / HVB_SECTOR;
        hvb_disk = &file_disk;
    }
    if (strcmp(job.nic, "loopback") == 0) {
        hvb_nic = &loopback;
        /* The peer's role comes from hvbench's benchmark catalogue (peer=sink|source|echo). */
        peer_mode = job.loopback_peer == 1 ? PEER_SOURCE : job.loopback_peer == 2 ? PEER_ECHO : PEER_SINK;
    }
    if (strcmp(job.nic, "socket") == 0) {
        hvb_nic = &kernel_socket;
        if ((error = open_udp_socket(&job))) {
            printf("HVB1 fail reason=%s\n", error);
            return 2;
        }
    }
    plat_write("HVB1 hello guest=hvbench-native-1\n", 34);
    int status = hvb_run_job(&job);
    plat_write("HVB1 done\n", 10);
    return status ? 1 : 0;
}
