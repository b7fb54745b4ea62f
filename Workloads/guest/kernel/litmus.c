/*
 * Memory-model litmus tests across CPUs (job bench=litmus, run by `hvbench selftest litmus`):
 * the outcomes x86-TSO forbids must never appear, whether the CPUs are KVM's vCPUs or the
 * emulator's threads. Each test is "perpetual": every CPU runs its side n times without a
 * barrier between iterations, storing increasing values and recording what it loads, and the
 * bootstrap processor looks for a forbidden cycle afterwards. Values read from one location
 * only grow (coherence), which makes each check one pass.
 *
 *   mp     message passing: CPU 1 stores data then flag; CPU 0 loads flag then data.
 *          Forbidden: data older than the flag.
 *   sb     store buffering, no fence: each CPU stores its variable, then loads the other's.
 *          Both loads missing both stores is allowed on x86 (counted as "relaxed").
 *   sb-mfence  the same with mfence between store and load: forbidden.
 *   lb     load buffering: each loads the other's variable, then stores its own. Each load
 *          seeing the other's later store is forbidden.
 *   atomic lock add on a shared counter from both CPUs, an xchg spin lock around a plain
 *          increment, and a locked add next to bytes the other CPU stores plainly: no update
 *          lost.
 *   iriw   independent reads of independent writes (four CPUs): CPUs 1 and 2 store x and y,
 *          CPUs 0 and 3 load them in opposite orders. Seeing the stores in opposite orders is
 *          forbidden. Reported as skipped with fewer than four CPUs.
 *
 * With inject_violation=1 (the self-check of the checks), one forbidden outcome is planted in
 * each test's record before it is checked: every test must then report it.
 */
#include "hvb.h"
#include "kernel.h"

#define LITMUS_WAIT_LIMIT (1ull << 36)

enum litmus_test { T_MP, T_SB, T_SB_MFENCE, T_LB, T_ATOMIC, T_IRIW };

/* Each variable on its own cache line. */
static struct {
    volatile uint64_t x __attribute__((aligned(64)));
    volatile uint64_t y __attribute__((aligned(64)));
    volatile uint64_t counter __attribute__((aligned(64)));
    volatile uint64_t guard __attribute__((aligned(64)));
    volatile uint64_t plain __attribute__((aligned(64)));
    volatile uint64_t mixed __attribute__((aligned(64)));
    volatile uint64_t round __attribute__((aligned(64)));
    volatile uint64_t go __attribute__((aligned(64)));
    volatile uint64_t readers_done __attribute__((aligned(64)));
    volatile uint64_t done[MAX_CPUS] __attribute__((aligned(64)));
    volatile uint64_t test, n;
} L;

/* Loads recorded per CPU side: r[0], r[1] (mp/sb/lb), and the IRIW readers' pairs. */
static uint32_t *r[4];

static inline void fence(void) { __asm__ volatile("mfence" : : : "memory"); }
static inline void relax(void) { __asm__ volatile("pause" : : : "memory"); }
static inline uint64_t distance(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

/* One CPU's side of the current test; cpu is 0 (the bootstrap processor) to 3. */
static void run_side(uint32_t cpu) {
    uint64_t n = L.n;
    switch (L.test) {
    case T_MP:
        if (cpu == 1)
            for (uint64_t i = 1; i <= n; i++) {
                L.x = i;
                L.y = i;
            }
        break;
    case T_SB:
    case T_SB_MFENCE: {
        volatile uint64_t *mine = cpu == 0 ? &L.x : &L.y, *theirs = cpu == 0 ? &L.y : &L.x;
        uint32_t *out = r[cpu];
        int fenced = L.test == T_SB_MFENCE;
        for (uint64_t i = 1; i <= n; i++) {
            *mine = i;
            if (fenced) fence();
            out[i] = (uint32_t)*theirs;
        }
        break;
    }
    case T_LB: {
        volatile uint64_t *mine = cpu == 0 ? &L.x : &L.y, *theirs = cpu == 0 ? &L.y : &L.x;
        uint32_t *out = r[cpu];
        for (uint64_t i = 1; i <= n; i++) {
            out[i] = (uint32_t)*theirs;
            *mine = i;
        }
        break;
    }
    case T_ATOMIC: {
        volatile uint32_t *halves = (volatile uint32_t *)&L.mixed;
        for (uint64_t i = 1; i <= n; i++) {
            __atomic_fetch_add(&L.counter, 1, __ATOMIC_SEQ_CST);
            if ((i & 7) == 0) {
                while (__atomic_exchange_n(&L.guard, 1, __ATOMIC_SEQ_CST)) relax();
                L.plain = L.plain + 1;
                __atomic_store_n(&L.guard, 0, __ATOMIC_RELEASE);
            }
            /* CPU 1 adds to the low half with lock add; CPU 0 stores the high half plainly. */
            if (cpu == 1) __atomic_fetch_add(&halves[0], 1, __ATOMIC_SEQ_CST);
            else halves[1] = (uint32_t)i;
        }
        break;
    }
    case T_IRIW:
        /* The writers keep storing until both readers have their n samples, so the readers
         * sample stores in flight however the vCPUs are scheduled. */
        if (cpu == 1 || cpu == 2) {
            volatile uint64_t *mine = cpu == 1 ? &L.x : &L.y;
            for (uint64_t i = 1; L.readers_done < 2 && i < UINT32_MAX; i++) *mine = i;
        } else {
            uint32_t *first = r[cpu == 0 ? 0 : 2], *second = r[cpu == 0 ? 1 : 3];
            for (uint64_t k = 1; k <= n; k++) {
                if (cpu == 0) {
                    first[k] = (uint32_t)L.x;
                    second[k] = (uint32_t)L.y;
                } else {
                    second[k] = (uint32_t)L.y;
                    first[k] = (uint32_t)L.x;
                }
            }
            __atomic_fetch_add(&L.readers_done, 1, __ATOMIC_SEQ_CST);
        }
        break;
    }
}

/* An application processor's user loop calls this while its command is AP_LITMUS: run each
 * new round once, when the bootstrap processor says go. */
void hvb_litmus_ap(uint32_t cpu) {
    uint64_t round = L.round;
    if (round == L.done[cpu] || L.go != round) return;
    run_side(cpu);
    __atomic_store_n(&L.done[cpu], round, __ATOMIC_SEQ_CST);
}

/* Starts a round of `test` on CPUs 1 ..< cpus and says go: the round's number, or 0 when an
 * application processor did not come. */
static uint64_t begin_round(enum litmus_test test, uint64_t n, uint32_t cpus) {
    L.test = test;
    L.n = n;
    L.x = L.y = L.counter = L.guard = L.plain = L.mixed = L.readers_done = 0;
    uint64_t round = L.round + 1;
    __atomic_store_n(&L.round, round, __ATOMIC_SEQ_CST);
    for (uint32_t cpu = 1; cpu < cpus; cpu++) {
        if (hvb_ap_running[cpu] == AP_LITMUS) continue;
        hvb_ap_command[cpu] = AP_LITMUS;
        *lapic_register(LAPIC_ICR_HIGH) = (uint32_t)hvb_cpu_apic_ids[cpu] << 24;
        *lapic_register(LAPIC_ICR_LOW) = WAKE_VECTOR;
        uint64_t start = plat_cycles();
        while (hvb_ap_running[cpu] != AP_LITMUS)
            if (plat_cycles() - start > LITMUS_WAIT_LIMIT) return 0;
    }
    __atomic_store_n(&L.go, round, __ATOMIC_SEQ_CST);
    return round;
}

/* Waits until CPUs 1 ..< cpus finished `round`; 0 if one did not. */
static int end_round(uint64_t round, uint32_t cpus) {
    uint64_t start = plat_cycles();
    for (uint32_t cpu = 1; cpu < cpus; cpu++)
        while (L.done[cpu] != round)
            if (plat_cycles() - start > LITMUS_WAIT_LIMIT) return 0;
    return 1;
}

/* Runs one test on CPUs 0 ..< cpus; 0 when an application processor did not take part. */
static int run_test(enum litmus_test test, uint64_t n, uint32_t cpus) {
    uint64_t round = begin_round(test, n, cpus);
    if (!round) return 0;
    run_side(0);
    return end_round(round, cpus);
}

/* mp, CPU 0's side runs here (it checks as it goes): returns forbidden outcomes, and in
 * *overlap how many of its loads caught CPU 1 part-way. */
static uint64_t message_passing(uint64_t n, int inject, uint64_t *overlap, int *ok) {
    uint64_t round = begin_round(T_MP, n, 2), forbidden = 0, start = plat_cycles();
    if (!round) return *ok = 0;
    *overlap = 0;
    for (;;) {
        uint64_t flag = L.y, data = L.x;
        if (inject && flag > 0) {
            data = flag - 1; /* as if the data store had not been seen yet */
            inject = 0;
        }
        if (data < flag) forbidden++;
        if (flag > 0 && flag < n) (*overlap)++;
        if (flag == n) break;
        if (plat_cycles() - start > LITMUS_WAIT_LIMIT) return *ok = 0;
    }
    *ok = end_round(round, 2);
    return forbidden;
}

static void report(const char *test, uint64_t n, uint64_t forbidden, uint64_t overlap, uint64_t relaxed) {
    const char *keys[] = {"iterations", "forbidden", "overlap", "relaxed"};
    uint64_t values[] = {n, forbidden, overlap, relaxed};
    hvb_report_values("litmus", test, keys, values, 4);
}

/* sb, sb-mfence: a cycle is CPU 0's iteration i and CPU 1's iteration j each loading before
 * the other's store: r0[i] < j and r1[j] < i. For a given j the best i is r1[j] + 1. */
static void check_store_buffering(const char *name, uint64_t n, int must_not_appear) {
    uint64_t cycles = 0, overlap = 0;
    for (uint64_t j = 1; j <= n; j++) {
        uint64_t seen = r[1][j];
        if (seen > 0 && seen < n) overlap++;
        if (seen + 1 <= n && r[0][seen + 1] < j) cycles++;
    }
    report(name, n, must_not_appear ? cycles : 0, overlap, must_not_appear ? 0 : cycles);
}

/* lb: CPU 0's load at i sees CPU 1's store of j or later and CPU 1's load at j sees CPU 0's
 * store of i or later. For a given j the best i is min(r1[j], n). */
static void check_load_buffering(uint64_t n) {
    uint64_t cycles = 0, overlap = 0;
    for (uint64_t j = 1; j <= n; j++) {
        uint64_t seen = r[1][j];
        if (seen > 0 && seen < n) overlap++;
        if (seen >= 1 && r[0][seen < n ? seen : n] >= j) cycles++;
    }
    report("lb", n, cycles, overlap, 0);
}

/* iriw: reader A (CPU 0) loaded (x, y) = (r0, r1), reader B (CPU 3) loaded (y, x) = (r3, r2).
 * Opposite orders: some A sample has x newer and y older than some B sample. For B's sample m
 * the best A sample is the first whose x exceeds B's x (A's y only grows after it). Overlap:
 * B's samples that found both writers moved on since its previous one. */
static void check_iriw(uint64_t n) {
    uint64_t cycles = 0, overlap = 0, k = 1;
    for (uint64_t m = 1; m <= n; m++) {
        uint64_t bx = r[2][m], by = r[3][m];
        if (m > 1 && bx != r[2][m - 1] && by != r[3][m - 1]) overlap++;
        while (k <= n && r[0][k] <= bx) k++;
        if (k <= n && r[1][k] < by) cycles++;
    }
    report("iriw", n, cycles, overlap, 0);
}

int hvb_litmus(uint64_t n, int inject) {
    uint32_t cpus = hvb_cpu_count;
    if (cpus < 2) {
        hvb_report_line("fail", "reason", "no-second-cpu");
        return 1;
    }
    if (n < 1 || n > (1ull << 24)) {
        hvb_report_line("fail", "reason", "litmus-iterations-out-of-range");
        return 1;
    }
    for (int i = 0; i < 4; i++) {
        r[i] = plat_alloc((n + 1) * sizeof(uint32_t));
        if (!r[i]) {
            hvb_report_line("fail", "reason", "out-of-memory");
            return 1;
        }
    }
    int ok;
    uint64_t overlap;
    uint64_t forbidden = message_passing(n, inject, &overlap, &ok);
    if (!ok) goto stuck;
    report("mp", n, forbidden, overlap, 0);
    if (!run_test(T_SB, n, 2)) goto stuck;
    check_store_buffering("sb", n, 0);
    if (!run_test(T_SB_MFENCE, n, 2)) goto stuck;
    if (inject) r[0][1] = r[1][1] = 0; /* both first loads missed both first stores */
    check_store_buffering("sb-mfence", n, 1);
    if (!run_test(T_LB, n, 2)) goto stuck;
    if (inject) { /* each first load saw the other's store of a later iteration */
        r[1][1] = 1;
        r[0][1] = (uint32_t)n;
    }
    check_load_buffering(n);
    if (!run_test(T_ATOMIC, n, 2)) goto stuck;
    if (inject) L.counter = L.counter - 1; /* one lost update */
    uint64_t lost = distance(2 * n, L.counter) + distance(2 * (n / 8), L.plain) + distance(n, (uint32_t)L.mixed) +
                    distance(n, L.mixed >> 32);
    report("atomic", n, lost, 0, 0);
    if (cpus >= 4) {
        if (!run_test(T_IRIW, n, 4)) goto stuck;
        if (inject) { /* A saw x then not y, B saw y then not x */
            r[0][1] = 1;
            r[1][1] = 0;
            r[2][1] = 0;
            r[3][1] = 1;
        }
        check_iriw(n);
    } else {
        hvb_report_status("skip", "litmus", "iriw-needs-four-cpus");
    }
    for (uint32_t cpu = 1; cpu < cpus; cpu++) hvb_ap_command[cpu] = AP_IDLE;
    return 0;
stuck:
    hvb_report_line("fail", "reason", "litmus-cpu-did-not-finish");
    return 1;
}
