/*
 * The CPU and platform microbenchmarks (after Adams & Agesen, ASPLOS'06, and kvm-unit-tests'
 * x86/vmexit.c). Each repetition times `iterations` operations with the TSC and prints
 *
 *   HVB1 sample bench=<id> rep=<n> ops=<count> cycles=<tsc delta> bytes=<bytes moved>
 *
 * The host turns those integers into ns/op, cycles/op, GiB/s, ... (see README.md).
 */
#include "hvb.h"
#include "cpu_loops.h"
#include "io.h"
#include "memory_bench.h"
#include "operations.h"
#include "io_bench.h"

volatile uint64_t hvb_fixup_rip;
volatile uint64_t hvb_expected_vector = HVB_VECTOR_NONE;
volatile uint64_t hvb_fault_count;

/* Results are folded into this so the compiler cannot drop the work. */
volatile uint64_t hvb_sink;

/* ---------------------------------------------------------------- line output */

struct line {
    char text[512];
    size_t length;
};

static void put_text(struct line *l, const char *s) {
    while (*s && l->length < sizeof l->text - 1) l->text[l->length++] = *s++;
}

static void put_u64(struct line *l, uint64_t v) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && l->length < sizeof l->text - 1) l->text[l->length++] = digits[--n];
}

static void put_hex(struct line *l, uint64_t v) {
    put_text(l, "0x");
    int started = 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned nibble = (unsigned)(v >> shift) & 15;
        if (!nibble && !started && shift) continue;
        started = 1;
        if (l->length < sizeof l->text - 1)
            l->text[l->length++] = (char)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
    }
}

static void line_begin(struct line *l, const char *kind, const char *bench) {
    l->length = 0;
    put_text(l, "HVB1 ");
    put_text(l, kind);
    if (bench) {
        put_text(l, " bench=");
        put_text(l, bench);
    }
}

static void line_key_u64(struct line *l, const char *key, uint64_t v) {
    put_text(l, " ");
    put_text(l, key);
    put_text(l, "=");
    put_u64(l, v);
}

static void line_key_text(struct line *l, const char *key, const char *v) {
    put_text(l, " ");
    put_text(l, key);
    put_text(l, "=");
    put_text(l, v);
}

static void line_end(struct line *l) {
    l->text[l->length++] = '\n';
    plat_write(l->text, l->length);
}

void hvb_report_status(const char *kind, const char *bench, const char *reason) {
    struct line l;
    line_begin(&l, kind, bench);
    line_key_text(&l, "reason", reason);
    line_end(&l);
}

/* ---------------------------------------------------------------- the workloads */

/* Self-check of regression detection (job.slowdown_percent): stretch the timed region by a
 * known percentage by spinning on the TSC, so every benchmark in every mode gets exactly that
 * much slower, whatever its operation costs. */
static void inject_slowdown(uint64_t start, uint64_t percent) {
    uint64_t elapsed = plat_cycles() - start;
    uint64_t extra = elapsed / 100 * percent + elapsed % 100 * percent / 100;
    uint64_t spin_start = plat_cycles();
    while (plat_cycles() - spin_start < extra) __asm__ volatile("pause");
}

/* ---------------------------------------------------------------- latency histogram */

/*
 * Per-operation latencies in TSC cycles, log-linear buckets: values below 16 exactly, above that
 * 16 sub-buckets per power of two (at most 6.25% relative error). The host turns the buckets
 * into an HdrHistogram for p50/p90/p99/p99.9. Kept in .bss: no allocation in the timed path.
 */
#define HIST_BUCKETS 1024
static uint32_t latency_buckets[HIST_BUCKETS];

static unsigned bucket_of(uint64_t cycles) {
    if (cycles < 16) return (unsigned)cycles;
    unsigned exponent = 63u - (unsigned)__builtin_clzll(cycles);
    unsigned sub = (unsigned)(cycles >> (exponent - 4)) & 15u;
    return 16u + (exponent - 4u) * 16u + sub;
}

static void print_histogram(const char *bench) {
    struct line l;
    int in_line = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!latency_buckets[i]) continue;
        if (!in_line) {
            line_begin(&l, "hist", bench);
            put_text(&l, " buckets=");
        } else {
            put_text(&l, ",");
        }
        put_u64(&l, i);
        put_text(&l, ":");
        put_u64(&l, latency_buckets[i]);
        if (++in_line == 32) {
            line_end(&l);
            in_line = 0;
        }
    }
    if (in_line) line_end(&l);
}

/* ---------------------------------------------------------------- the catalogue */

enum kind {
    K_INT, K_MEM_BW, K_MEM_LAT, K_CALLRET, K_SYSCALL, K_PGFAULT, K_DIVZERO, K_PTEMOD,
    K_CPUID, K_PIO, K_MMIO, K_HYPERCALL, K_BOOT, K_START, K_IRQ_TIMER, K_IRQ_HLT_WAKE, K_IPI_SELF,
    K_IPI, K_IPI_HALT, K_TLB_SHOOTDOWN, K_PINGPONG,
    K_NET_TX64, K_NET_TX1500, K_NET_RX, K_NET_RR,
    K_DISK_SEQ_READ, K_DISK_SEQ_WRITE, K_DISK_RAND_READ, K_DISK_RAND_WRITE, K_DISK_LAT,
    K_BALLOON_INFLATE, K_BALLOON_DEFLATE, K_BALLOON_REFAULT /* in BALLOON_* order */, K_PAGE_SHARING,
    K_BALLOON_RECLAIM, K_OVERCOMMIT
};

struct bench_entry {
    const char *id;
    enum kind kind;
    /* The -irq variants: same workload, interrupt-driven drivers; 2: with the interrupt
     * moderation Linux uses for bulk traffic (the e1000's ITR; virtio-net's event index, always
     * on); 3: virtio on its legacy INTx line and ISR instead of MSI-X (the e1000 and IDE have
     * INTx only). */
    int interrupt_driven;
};

static const struct bench_entry catalogue[] = {
    {"cpu.int", K_INT},           {"cpu.mem-bw", K_MEM_BW},   {"cpu.mem-lat", K_MEM_LAT},
    {"cpu.callret", K_CALLRET},   {"cpu.syscall", K_SYSCALL}, {"cpu.pgfault", K_PGFAULT},
    {"cpu.divzero", K_DIVZERO},   {"cpu.ptemod", K_PTEMOD},   {"cpu.cpuid", K_CPUID},
    {"cpu.pio", K_PIO},           {"cpu.mmio", K_MMIO},       {"cpu.hypercall", K_HYPERCALL},
    {"vm.boot", K_BOOT},          {"container.start", K_START}, {"irq.timer", K_IRQ_TIMER}, {"irq.hlt-wake", K_IRQ_HLT_WAKE},
    {"cpu.ipi-self", K_IPI_SELF}, {"cpu.ipi", K_IPI}, {"cpu.ipi-halt", K_IPI_HALT},
    {"cpu.tlb-shootdown", K_TLB_SHOOTDOWN}, {"cpu.cacheline-pingpong", K_PINGPONG},
    {"net.tx-64", K_NET_TX64},    {"net.tx-1500", K_NET_TX1500}, {"net.rx-1500", K_NET_RX},
    {"net.rr", K_NET_RR},         {"net.tx-1500-irq", K_NET_TX1500, 1}, {"net.rr-irq", K_NET_RR, 1},
    {"net.tx-1500-irq-moderated", K_NET_TX1500, 2}, {"net.rr-irq-intx", K_NET_RR, 3},
    /* VM to VM over a bridge: the measured guest asks the other guest (rr), or takes its stream. */
    {"net.vm2vm-rr", K_NET_RR},   {"net.vm2vm-tx-1500", K_NET_RX},
    {"disk.seq-read", K_DISK_SEQ_READ}, {"disk.seq-write", K_DISK_SEQ_WRITE},
    {"disk.rand-read-4k", K_DISK_RAND_READ}, {"disk.rand-write-4k", K_DISK_RAND_WRITE}, {"disk.lat-4k", K_DISK_LAT},
    {"disk.rand-read-4k-irq", K_DISK_RAND_READ, 1}, {"disk.lat-4k-irq", K_DISK_LAT, 1},
    {"mem.balloon-inflate", K_BALLOON_INFLATE}, {"mem.balloon-deflate", K_BALLOON_DEFLATE},
    {"mem.balloon-refault", K_BALLOON_REFAULT}, {"mem.page-sharing", K_PAGE_SHARING},
    {"mem.balloon-reclaim", K_BALLOON_RECLAIM, 1}, {"mem.overcommit", K_OVERCOMMIT},
};

static int text_equals(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* State a benchmark sets up once and then reuses across repetitions. */
struct context {
    const struct hvb_job *job;
    enum kind kind;
    uint64_t *buffer;
    size_t words;
    struct chase_node *chase_start;
    int amd;
    const char *failure;
    /* Set by operations that time themselves (irq.hlt-wake): the sample reports these cycles. */
    int self_timed;
    uint64_t measured_cycles;
};

static const char *unavailable_reason(enum kind kind) {
    switch (kind) {
    case K_SYSCALL: return plat.null_syscall ? 0 : plat.no_syscall;
    case K_PGFAULT: case K_DIVZERO: return plat.fault_page ? 0 : plat.no_fault;
    case K_PTEMOD: return plat.pte_modify ? 0 : plat.no_pte;
    case K_PIO: return plat.port_read ? 0 : plat.no_port;
    case K_MMIO: return plat.mmio_read ? 0 : plat.no_mmio;
    case K_HYPERCALL: return plat.has_hypercall ? 0 : plat.no_hypercall;
    case K_BOOT: return plat.no_boot;
    case K_START: return plat.no_start;
    case K_IRQ_TIMER: return plat.timer_interrupt ? 0 : plat.no_timer;
    case K_IRQ_HLT_WAKE: return plat.halt_wake ? 0 : plat.no_halt;
    case K_IPI_SELF: return plat.self_ipi ? 0 : plat.no_self_ipi;
    case K_IPI: return plat.ipi_round_trips ? 0 : plat.no_ipi;
    case K_IPI_HALT: return plat.ipi_halt_round_trips ? 0 : plat.no_ipi_halt;
    case K_TLB_SHOOTDOWN: return plat.tlb_shootdowns ? 0 : plat.no_tlb_shootdown;
    case K_PINGPONG: return plat.cacheline_pingpong ? 0 : plat.no_cacheline_pingpong;
    case K_BALLOON_INFLATE: case K_BALLOON_DEFLATE: case K_BALLOON_REFAULT: case K_BALLOON_RECLAIM:
        return hvb_balloon ? 0 : plat.no_balloon ? plat.no_balloon : "no-balloon-device";
    case K_PAGE_SHARING: return plat.wait_for_host ? 0 : plat.no_page_sharing;
    /* The host runs it, each VM's guest running mem.balloon-reclaim. */
    case K_OVERCOMMIT: return plat.no_balloon ? plat.no_balloon : "the-host-runs-mem-overcommit";
    default: return 0;
    }
}

static int has_latency_pass(enum kind kind) {
    switch (kind) {
    case K_SYSCALL: case K_PGFAULT: case K_DIVZERO: case K_PTEMOD: case K_CPUID: case K_PIO: case K_MMIO:
    case K_HYPERCALL: case K_NET_RR: case K_DISK_LAT: case K_IRQ_TIMER: case K_IRQ_HLT_WAKE: case K_IPI_SELF:
    case K_IPI: case K_IPI_HALT: case K_TLB_SHOOTDOWN: case K_PINGPONG:
        return 1;
    default:
        return 0;
    }
}

static const char *setup(struct context *c) {
    uint64_t size = c->job->size_bytes;
    switch (c->kind) {
    case K_MEM_BW:
        if (!size) size = 32ull << 20;
        c->buffer = plat_alloc(size);
        if (!c->buffer) return "out-of-memory";
        c->words = size / 8;
        for (size_t i = 0; i < c->words; i++) c->buffer[i] = i * 0x9E3779B97F4A7C15ull;
        return 0;
    case K_MEM_LAT: {
        if (!size) size = 64ull << 20;
        size_t count = size / sizeof(struct chase_node);
        if (count < 2) return "size-too-small";
        struct chase_node *nodes = plat_alloc(count * sizeof *nodes);
        uint32_t *order = plat_alloc(count * sizeof *order);
        if (!nodes || !order) return "out-of-memory";
        c->chase_start = build_chase(nodes, order, count);
        return 0;
    }
    case K_HYPERCALL:
        c->amd = cpu_is_amd_like();
        return 0;
    case K_NET_TX64: case K_NET_TX1500: case K_NET_RX: case K_NET_RR:
        return io_prepare(c->job, 1, 0);
    case K_DISK_SEQ_READ: case K_DISK_SEQ_WRITE: case K_DISK_RAND_READ: case K_DISK_RAND_WRITE: case K_DISK_LAT:
        return io_prepare(c->job, 0, 1);
    case K_BALLOON_INFLATE: case K_BALLOON_DEFLATE: case K_BALLOON_REFAULT:
        return balloon_prepare(c->job);
    case K_PAGE_SHARING:
        return sharing_prepare(c->job);
    default:
        return 0;
    }
}

static void expect_faults(uint64_t vector) {
    hvb_fault_count = 0;
    hvb_expected_vector = vector;
}

/* Runs n operations of the benchmark; returns bytes moved (memory benchmarks) or 0. */
static uint64_t run_operations(struct context *c, uint64_t n) {
    switch (c->kind) {
    case K_INT:
        hvb_sink = integer_mix(n);
        return 0;
    case K_MEM_BW: {
        uint64_t acc = 0;
        for (uint64_t i = 0; i < n; i++) acc += memory_read_pass(c->buffer, c->words);
        hvb_sink = acc;
        return n * c->words * 8;
    }
    case K_MEM_LAT:
        c->chase_start = chase(c->chase_start, n);
        hvb_sink = (uint64_t)(uintptr_t)c->chase_start;
        return 0;
    case K_CALLRET:
        hvb_sink = call_return(n);
        return 0;
    case K_SYSCALL:
        if (!plat.null_syscall(n)) c->failure = plat.failure ? plat.failure : "syscall-failed";
        return 0;
    case K_PGFAULT:
        expect_faults(HVB_VECTOR_PF);
        for (uint64_t i = 0; i < n; i++) fault_once(plat.fault_page);
        if (hvb_fault_count != n) c->failure = "page-fault-not-delivered";
        expect_faults(HVB_VECTOR_NONE);
        return 0;
    case K_DIVZERO:
        expect_faults(HVB_VECTOR_DE);
        for (uint64_t i = 0; i < n; i++) divide_by_zero_once();
        if (hvb_fault_count != n) c->failure = "divide-error-not-delivered";
        expect_faults(HVB_VECTOR_NONE);
        return 0;
    case K_PTEMOD:
        if (!plat.pte_modify(n)) c->failure = "pte-modification-not-observed";
        return 0;
    case K_CPUID: {
        uint32_t r[4];
        uint64_t acc = 0;
        for (uint64_t i = 0; i < n; i++) {
            cpuid_leaf(0, r);
            acc += r[0];
        }
        hvb_sink = acc;
        return 0;
    }
    case K_PIO:
        if (!plat.port_read(n)) c->failure = "port-read-failed";
        return 0;
    case K_MMIO:
        if (!plat.mmio_read(n)) c->failure = "mmio-read-failed";
        return 0;
    case K_HYPERCALL:
        expect_faults(HVB_VECTOR_UD);
        for (uint64_t i = 0; i < n && !hvb_fault_count; i++) hypercall_once(c->amd);
        if (hvb_fault_count) c->failure = "hypercall-raised-ud";
        expect_faults(HVB_VECTOR_NONE);
        return 0;
    case K_BOOT:
    case K_START:
        return 0;
    case K_IRQ_TIMER:
        if (!plat.timer_interrupt(n)) c->failure = plat.failure ? plat.failure : "timer-interrupt-failed";
        return 0;
    case K_IPI_SELF:
        if (!plat.self_ipi(n)) c->failure = plat.failure ? plat.failure : "self-ipi-failed";
        return 0;
    case K_IPI: case K_IPI_HALT: {
        uint64_t cycles = (c->kind == K_IPI ? plat.ipi_round_trips : plat.ipi_halt_round_trips)(n);
        if (cycles == UINT64_MAX) c->failure = plat.failure ? plat.failure : "ipi-failed";
        c->self_timed = 1;
        c->measured_cycles = cycles;
        return 0;
    }
    case K_TLB_SHOOTDOWN:
        if (!plat.tlb_shootdowns(n)) c->failure = plat.failure ? plat.failure : "tlb-shootdown-failed";
        return 0;
    case K_PINGPONG:
        if (!plat.cacheline_pingpong(n)) c->failure = plat.failure ? plat.failure : "cacheline-pingpong-failed";
        return 0;
    case K_IRQ_HLT_WAKE: {
        uint64_t cycles = plat.halt_wake(n);
        if (cycles == UINT64_MAX) c->failure = plat.failure ? plat.failure : "halt-wake-failed";
        c->self_timed = 1;
        c->measured_cycles = cycles;
        return 0;
    }
    case K_NET_TX64: case K_NET_TX1500: {
        uint32_t length = c->kind == K_NET_TX64 ? 64 : 1514;
        c->failure = net_transmit(n, length);
        return n * length;
    }
    case K_NET_RX: {
        uint64_t bytes = 0;
        c->failure = net_receive(n, &bytes);
        return bytes;
    }
    case K_NET_RR:
        c->failure = net_request_response(n);
        return n * 64;
    case K_BALLOON_INFLATE: case K_BALLOON_DEFLATE: case K_BALLOON_REFAULT:
        c->self_timed = 1;
        c->measured_cycles = balloon_repetition(BALLOON_INFLATE + (c->kind - K_BALLOON_INFLATE), n, &c->failure);
        return n * 4096;
    case K_BALLOON_RECLAIM:
        c->failure = balloon_follow(c->job);
        return 0;
    case K_PAGE_SHARING:
        c->self_timed = 1;
        c->measured_cycles = sharing_break(n, &c->failure);
        return n * 4096;
    default: {
        uint64_t bytes = 0;
        int write = c->kind == K_DISK_SEQ_WRITE || c->kind == K_DISK_RAND_WRITE;
        int sequential = c->kind == K_DISK_SEQ_READ || c->kind == K_DISK_SEQ_WRITE;
        c->failure = disk_operations(n, write, !sequential, sequential ? 128 : 8, &bytes);
        return bytes;
    }
    }
    return 0;
}

static const struct bench_entry *find_entry(const char *id) {
    for (size_t i = 0; i < sizeof catalogue / sizeof catalogue[0]; i++)
        if (text_equals(catalogue[i].id, id)) return &catalogue[i];
    return 0;
}

int hvb_job_interrupt_driven(const struct hvb_job *job) {
    const struct bench_entry *entry = find_entry(job->bench);
    return entry ? entry->interrupt_driven : 0;
}

int hvb_run_job(const struct hvb_job *job) {
    const struct bench_entry *entry = find_entry(job->bench);
    if (!entry) {
        hvb_report_status("fail", job->bench, "unknown-benchmark");
        return 1;
    }
    struct context c = {.job = job, .kind = entry->kind};
    struct line l;
    if (job->serve) {
        /* The far end of a VM-to-VM benchmark: it serves until stopped and reports only failure. */
        const char *error = io_prepare(job, job->serve != 3, 0);
        line_begin(&l, "serving", job->bench);
        line_end(&l);
        if (!error && job->serve == 3) error = plat.idle ? (plat.idle(), "idle-returned") : "idle-needs-a-process";
        else if (!error) error = net_serve(job->serve);
        hvb_report_status("fail", job->bench, error);
        return 1;
    }
    if ((entry->kind == K_BOOT && !plat.no_boot) || (entry->kind == K_START && !plat.no_start)) {
        /* The host timed the boot (or the container's start) from outside; the guest only
         * confirms it got here. */
        line_begin(&l, "begin", job->bench);
        line_key_u64(&l, "cpl", (uint64_t)plat_privilege());
        line_end(&l);
        line_begin(&l, "end", job->bench);
        line_end(&l);
        return 0;
    }
    const char *why = entry->interrupt_driven && plat.no_device_interrupts ? plat.no_device_interrupts
                                                                          : unavailable_reason(entry->kind);
    if (why) {
        hvb_report_status("skip", job->bench, why);
        return 0;
    }
    /* A platform may lack an operation only at run time (kvm_pvm does not switch to CPL0 on
     * syscall for guests that are not PVM-aware): one probe call tells, and that is a skip. */
    if (entry->kind == K_SYSCALL && !plat.null_syscall(1)) {
        hvb_report_status("skip", job->bench, plat.failure ? plat.failure : "syscall-unavailable");
        return 0;
    }
    const char *error = setup(&c);
    if (error) {
        hvb_report_status("fail", job->bench, error);
        return 1;
    }
    line_begin(&l, "begin", job->bench);
    line_key_u64(&l, "cpl", (uint64_t)plat_privilege());
    line_key_u64(&l, "iterations", job->iterations);
    line_key_u64(&l, "repetitions", job->repetitions);
    line_key_u64(&l, "warmups", job->warmups);
    line_end(&l);
    for (uint64_t rep = 0; rep < job->warmups + job->repetitions; rep++) {
        uint64_t start = plat_cycles();
        uint64_t bytes = run_operations(&c, job->iterations);
        if (job->slowdown_percent) inject_slowdown(start, job->slowdown_percent);
        uint64_t cycles = plat_cycles() - start;
        if (c.self_timed) {
            /* The operation timed itself, so the self-check's slowdown scales that figure. */
            uint64_t percent = job->slowdown_percent;
            cycles = c.measured_cycles + c.measured_cycles / 100 * percent + c.measured_cycles % 100 * percent / 100;
        }
        if (c.failure) {
            hvb_report_status("fail", job->bench, c.failure);
            return 1;
        }
        if (rep < job->warmups) continue;
        line_begin(&l, "sample", job->bench);
        line_key_u64(&l, "rep", rep - job->warmups);
        line_key_u64(&l, "ops", job->iterations);
        line_key_u64(&l, "cycles", cycles);
        line_key_u64(&l, "bytes", bytes);
        line_end(&l);
    }
    /* A separate pass times operations one by one, so the per-repetition totals above carry no
     * per-operation timing overhead. Only for operations long enough (>= ~100 cycles) for two
     * rdtsc around each to be noise. */
    if (has_latency_pass(entry->kind)) {
        uint64_t count = job->iterations < 2000 ? job->iterations : 2000;
        for (unsigned i = 0; i < HIST_BUCKETS; i++) latency_buckets[i] = 0;
        for (uint64_t i = 0; i < count; i++) {
            uint64_t start = plat_cycles();
            run_operations(&c, 1);
            uint64_t cycles = c.self_timed ? c.measured_cycles : plat_cycles() - start;
            latency_buckets[bucket_of(cycles)]++;
            if (c.failure) {
                hvb_report_status("fail", job->bench, c.failure);
                return 1;
            }
        }
        print_histogram(job->bench);
    }
    line_begin(&l, "end", job->bench);
    if (entry->interrupt_driven && plat.device_interrupts) {
        uint64_t taken, spurious;
        plat.device_interrupts(&taken, &spurious);
        line_key_u64(&l, "interrupts", taken);
        line_key_u64(&l, "spurious", spurious);
    }
    line_end(&l);
    return 0;
}

/* Used by the guest kernel to report an unexpected exception in the same line format. */
void hvb_report_fault(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2, uint64_t cs) {
    struct line l;
    line_begin(&l, "fault", 0);
    line_key_u64(&l, "vector", vector);
    put_text(&l, " error=");
    put_hex(&l, error);
    put_text(&l, " rip=");
    put_hex(&l, rip);
    put_text(&l, " cr2=");
    put_hex(&l, cr2);
    line_key_u64(&l, "cpl", cs & 3);
    line_end(&l);
}

void hvb_report_line(const char *kind, const char *key, const char *value) {
    struct line l;
    line_begin(&l, kind, 0);
    if (key) line_key_text(&l, key, value);
    line_end(&l);
}

void hvb_console_values(const char *text, const char *const *keys, const uint64_t *values, int count, unsigned hex_keys) {
    struct line l = {.length = 0};
    put_text(&l, text);
    for (int i = 0; i < count; i++) {
        put_text(&l, " ");
        put_text(&l, keys[i]);
        put_text(&l, "=");
        if (hex_keys & (1u << i)) put_hex(&l, values[i]);
        else put_u64(&l, values[i]);
    }
    line_end(&l);
}

/* A line of named counts: "HVB1 <kind> <name> key=value ...". */
void hvb_report_values(const char *kind, const char *name, const char *const *keys, const uint64_t *values, int count) {
    struct line l;
    line_begin(&l, kind, name);
    for (int i = 0; i < count; i++) line_key_u64(&l, keys[i], values[i]);
    line_end(&l);
}
