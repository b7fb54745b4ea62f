/*
 * hvb-ops: the operating-system and CPU workloads of hvbench's Linux guest, in the spirit of
 * lmbench (null syscall, pipe context switch, page fault, fork+exit, mmap/munmap), a CPU- and
 * memory-bound job (zlib compressing a fixed buffer, checked by decompressing it), and a UDP
 * request/response client. Built statically (glibc, zlib) by hvbench with the Swift toolchain's
 * clang; the same binary runs in the guest and natively on the host.
 *
 *   hvb-ops <benchmark> <iterations> <repetitions> <warmups> [peer-address peer-port]
 *
 * prints hvbench's result lines (begin, one sample per repetition after the warm-ups, end),
 * each sample timed with CLOCK_MONOTONIC: cycles= carries nanoseconds (the host reads them at
 * 1 GHz). Any failure is a `fail` line naming the call and errno.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static const char *bench;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Words in result lines may not hold spaces: "fork-failed-errno-11". */
static int fail(const char *what) {
    printf("HVB1 fail bench=%s reason=%s-failed-errno-%d\n", bench, what, errno);
    fflush(stdout);
    return -1;
}

/* Every workload runs `iterations` operations and returns the bytes it moved, or -1. */
typedef long long (*workload)(uint64_t iterations);

static long long null_syscall(uint64_t iterations) {
    for (uint64_t i = 0; i < iterations; i++) syscall(SYS_getppid);
    return 0;
}

/* Both processes on one CPU, as on a one-vCPU guest: every round trip is two context switches. */
static int pin_to_first_cpu(void) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return fail("sched_getaffinity");
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return sched_setaffinity(0, sizeof one, &one) == 0 ? 0 : fail("sched_setaffinity");
    }
    return 0;
}

static long long pipe_round_trips(uint64_t iterations) {
    int to_child[2], to_parent[2];
    if (pipe(to_child) != 0 || pipe(to_parent) != 0) return fail("pipe");
    pid_t child = fork();
    if (child < 0) return fail("fork");
    char token = 'x';
    if (child == 0) {
        for (uint64_t i = 0; i < iterations; i++) {
            if (read(to_child[0], &token, 1) != 1 || write(to_parent[1], &token, 1) != 1) _exit(1);
        }
        _exit(0);
    }
    long long result = 0;
    for (uint64_t i = 0; i < iterations && result == 0; i++) {
        if (write(to_child[1], &token, 1) != 1 || read(to_parent[0], &token, 1) != 1) result = fail("pipe-io");
    }
    int status = 0;
    waitpid(child, &status, 0);
    close(to_child[0]), close(to_child[1]), close(to_parent[0]), close(to_parent[1]);
    if (result == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        errno = 0;
        return fail("pipe-child");
    }
    return result;
}

static long long page_faults(uint64_t iterations) {
    long page = sysconf(_SC_PAGESIZE);
    volatile char *region = mmap(NULL, iterations * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) return fail("mmap");
    for (uint64_t i = 0; i < iterations; i++) region[i * page] = 1;
    munmap((void *)region, iterations * page);
    return 0;
}

static long long fork_exit(uint64_t iterations) {
    for (uint64_t i = 0; i < iterations; i++) {
        pid_t child = fork();
        if (child < 0) return fail("fork");
        if (child == 0) _exit(0);
        int status;
        if (waitpid(child, &status, 0) != child) return fail("waitpid");
    }
    return 0;
}

enum { mapping_bytes = 1 << 20 };

/* lmbench's lat_mmap touches what it maps: one write per 64 KiB of a 1 MiB mapping. */
static long long mmap_munmap(uint64_t iterations) {
    for (uint64_t i = 0; i < iterations; i++) {
        char *region = mmap(NULL, mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED) return fail("mmap");
        for (int offset = 0; offset < mapping_bytes; offset += 65536) region[offset] = 1;
        if (munmap(region, mapping_bytes) != 0) return fail("munmap");
    }
    return 0;
}

/* A fixed 1 MiB buffer that compresses like text: words drawn from a small vocabulary by a
 * fixed xorshift sequence, so every run and every system compresses the same bytes. */
enum { plain_bytes = 1 << 20 };
static unsigned char plain[plain_bytes];
static unsigned char packed[plain_bytes + plain_bytes / 100 + 1024];
static unsigned char unpacked[plain_bytes];

static void fill_plain(void) {
    static const char *words[] = {"virtual", "machine", "monitor", "page",  "table", "exit",   "device",
                                  "queue",   "ring",    "guest",   "host",  "trap",  "vector", "interrupt",
                                  "the",     "of",      "a",       "to",    "and",   "cost"};
    uint64_t state = 0x9E3779B97F4A7C15ull;
    size_t at = 0;
    while (at < plain_bytes) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        const char *word = words[state % (sizeof words / sizeof words[0])];
        for (size_t i = 0; word[i] && at < plain_bytes; i++) plain[at++] = (unsigned char)word[i];
        if (at < plain_bytes) plain[at++] = (state >> 32) % 11 == 0 ? '\n' : ' ';
    }
}

static long long compress_buffer(uint64_t iterations) {
    for (uint64_t i = 0; i < iterations; i++) {
        uLongf length = sizeof packed;
        if (compress2(packed, &length, plain, plain_bytes, 6) != Z_OK) return errno = 0, fail("compress2");
        uLongf back = sizeof unpacked;
        if (uncompress(unpacked, &back, packed, length) != Z_OK || back != plain_bytes ||
            memcmp(unpacked, plain, plain_bytes) != 0) {
            errno = 0;
            return fail("round-trip-check");
        }
    }
    return (long long)iterations * plain_bytes;
}

/* UDP request/response to hvbench's kernel echo peer. A datagram is laid out as the peer checks
 * it (Sources/Machine/Backends/KernelUDPPeer.swift): sequence and length little-endian, then
 * payload byte i = (sequence * 31 + (42 + i) * 7 + 0x5A) & 0xFF. */
enum { datagram_bytes = 64 };
static int udp_socket = -1;
static uint32_t udp_sequence;

static void fill_datagram(unsigned char *datagram, uint32_t sequence) {
    for (int i = 0; i < 4; i++) datagram[i] = (unsigned char)(sequence >> (8 * i));
    for (int i = 0; i < 4; i++) datagram[4 + i] = (unsigned char)((uint32_t)datagram_bytes >> (8 * i));
    for (int i = 8; i < datagram_bytes; i++) datagram[i] = (unsigned char)((sequence * 31 + (42 + i) * 7 + 0x5A) & 0xFF);
}

static long long udp_round_trips(uint64_t iterations) {
    unsigned char request[datagram_bytes], response[2048];
    for (uint64_t i = 0; i < iterations; i++) {
        fill_datagram(request, udp_sequence);
        if (send(udp_socket, request, sizeof request, 0) != (ssize_t)sizeof request) return fail("send");
        ssize_t got = recv(udp_socket, response, sizeof response, 0);
        if (got < 0) return fail(errno == EAGAIN ? "echo-timed-out-recv" : "recv");
        if (got != datagram_bytes || memcmp(request, response, datagram_bytes) != 0) {
            errno = 0;
            return fail("echo-changed-the-datagram");
        }
        udp_sequence++;
    }
    return (long long)iterations * datagram_bytes * 2;
}

static int open_udp(const char *address, const char *port) {
    udp_socket = socket(AF_INET, SOCK_DGRAM, 0);
    if (udp_socket < 0) return fail("socket");
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, address, &peer.sin_addr) != 1) return errno = EINVAL, fail("peer-address");
    struct timeval patience = {.tv_sec = 5};
    setsockopt(udp_socket, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
    if (connect(udp_socket, (struct sockaddr *)&peer, sizeof peer) != 0) return fail("connect");
    return 0;
}

static uint64_t number(const char *text, const char *what, uint64_t most) {
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end || end == text || value > most) {
        printf("HVB1 fail bench=%s reason=bad-%s\n", bench, what);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        workload run;
    } workloads[] = {
        {"linux.null-syscall", null_syscall}, {"linux.pipe-ctxsw", pipe_round_trips}, {"linux.page-fault", page_faults},
        {"linux.fork-exit", fork_exit},       {"linux.mmap-munmap", mmap_munmap},     {"linux.compress", compress_buffer},
        {"linux.udp-rr", udp_round_trips},
    };
    bench = argc > 1 ? argv[1] : "unknown";
    if (argc != 5 && argc != 7) {
        printf("HVB1 fail bench=%s reason=usage:hvb-ops-benchmark-iterations-repetitions-warmups\n", bench);
        return 2;
    }
    workload run = NULL;
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (strcmp(workloads[i].name, bench) == 0) run = workloads[i].run;
    if (!run) {
        printf("HVB1 fail bench=%s reason=unknown-benchmark\n", bench);
        return 2;
    }
    uint64_t iterations = number(argv[2], "iterations", 100000000);
    uint64_t repetitions = number(argv[3], "repetitions", 1000);
    uint64_t warmups = number(argv[4], "warmups", 1000);
    if (iterations == 0 || repetitions == 0) {
        printf("HVB1 fail bench=%s reason=zero-iterations-or-repetitions\n", bench);
        return 2;
    }
    if (run == udp_round_trips && (argc != 7 || open_udp(argv[5], argv[6]) != 0)) {
        if (argc != 7) printf("HVB1 fail bench=%s reason=no-peer-address\n", bench);
        return 1;
    }
    if (run == compress_buffer) fill_plain();
    /* Each line leaves at once: a guest that stops later has still said how far it got. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (run == pipe_round_trips && pin_to_first_cpu() != 0) return 1;
    printf("HVB1 begin bench=%s cpl=3 iterations=%llu repetitions=%llu warmups=%llu\n", bench,
           (unsigned long long)iterations, (unsigned long long)repetitions, (unsigned long long)warmups);
    for (uint64_t rep = 0; rep < warmups + repetitions; rep++) {
        uint64_t start = now_ns();
        long long bytes = run(iterations);
        uint64_t elapsed = now_ns() - start;
        if (bytes < 0) return 1;
        if (rep >= warmups)
            printf("HVB1 sample bench=%s rep=%llu ops=%llu cycles=%llu bytes=%lld\n", bench,
                   (unsigned long long)(rep - warmups), (unsigned long long)iterations,
                   (unsigned long long)(elapsed ? elapsed : 1), bytes);
    }
    printf("HVB1 end bench=%s\n", bench);
    return 0;
}
