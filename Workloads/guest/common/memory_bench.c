/*
 * The balloon benchmarks (after Waldspurger, "Memory Resource Management in VMware ESX
 * Server", OSDI'02): how fast the guest hands memory back to the host (mem.balloon-inflate),
 * takes it back (mem.balloon-deflate), and what touching a page just returned costs
 * (mem.balloon-refault: the host must fault a fresh page in). Every repetition first makes the
 * region's pages resident by writing a mark to each. Around the timed part the guest writes
 * the residency probes (plat.host_probe 0x40 before, 0x41 after) at which hvbench's VMM counts
 * the guest RAM the host holds, so the host's memory is measured by the host.
 *
 * A guard page after the region is never ballooned; its pattern must survive every repetition,
 * and a refaulted page must read back what was written to it.
 *
 * mem.balloon-reclaim is driven by the host, as a hypervisor reclaims memory: the guest offers
 * a pool of resident pages and its driver holds in the balloon what the host asks for (the
 * configuration-change interrupt wakes it); the host times each request until the device has
 * the pages and the driver reports them. Pages it gets back it writes again and says so, so
 * every reclaim takes resident memory.
 *
 * mem.page-sharing (Waldspurger's content-based page sharing, Linux's KSM): several VMs fill a
 * region with the same content (each page distinct, so only pages across VMs are alike). The
 * host offers guest RAM to KSM and measures what merges; then, told through a mailbox word it
 * writes into guest RAM, each guest writes once to every page, each write breaking a shared
 * page's copy-on-write, and checks the rest of every page is intact.
 */
#include "memory_bench.h"
#include "io.h"

#define PAGE 4096u
#define PROBE_BEFORE 0x40
#define PROBE_AFTER 0x41

const struct balloon_ops *hvb_balloon;

static uint8_t *region;
static uint64_t region_pages;
static volatile uint64_t *guard;

static uint64_t mark(uint64_t page, uint64_t salt) { return (page + 1) * 0x9E3779B97F4A7C15ull ^ salt; }

const char *balloon_prepare(const struct hvb_job *job) {
    if (!hvb_balloon) return "no-balloon-device";
    if (job->iterations > 0x100000) return "more-than-4-gib-of-pages";
    region_pages = job->iterations;
    region = plat_alloc((region_pages + 1) * PAGE);
    if (!region) return "out-of-memory";
    guard = (volatile uint64_t *)(region + region_pages * PAGE);
    for (uint64_t i = 0; i < PAGE / 8; i++) guard[i] = mark(i, 0x6775617264);
    return 0;
}

static volatile uint64_t *first_word(uint64_t page) { return (volatile uint64_t *)(region + page * PAGE); }

static void touch_all(uint64_t pages, uint64_t salt) {
    for (uint64_t page = 0; page < pages; page++) *first_word(page) = mark(page, salt);
}

const char *balloon_follow(const struct hvb_job *job) {
    const char *error = balloon_prepare(job);
    if (error) return error;
    if (!hvb_balloon->await_target_change) return "balloon-driver-not-interrupt-driven";
    touch_all(region_pages, 1);
    static const char *const keys[] = {"pages"};
    hvb_console_values("hvbench-guest: balloon-ready", keys, &region_pages, 1, 0);
    uint32_t held = 0;
    for (;;) {
        uint32_t asked = hvb_balloon->target();
        uint32_t wanted = asked < region_pages ? asked : (uint32_t)region_pages;
        if (wanted > held) {
            error = hvb_balloon->inflate(region + (uint64_t)held * PAGE, wanted - held);
        } else if (wanted < held) {
            /* The pages come back into use: each is written again (the host faults it in), so
             * the next reclaim takes resident memory; the line tells the host when that is done. */
            error = hvb_balloon->deflate(region + (uint64_t)wanted * PAGE, held - wanted);
            for (uint64_t page = wanted; !error && page < held; page++) *first_word(page) = mark(page, 1);
            static const char *const refilled[] = {"held"};
            const uint64_t now_held = wanted;
            if (!error) hvb_console_values("hvbench-guest: balloon-refilled", refilled, &now_held, 1, 0);
        } else {
            hvb_balloon->await_target_change(asked);
        }
        if (error) return error;
        held = wanted;
    }
}

#define SHARED_SALT 0x5348415245ull

static volatile uint64_t *mailbox;

const char *sharing_prepare(const struct hvb_job *job) {
    if (!plat.wait_for_host) return plat.no_page_sharing ? plat.no_page_sharing : "no-host-to-share-pages-with";
    if (job->iterations > 0x100000) return "more-than-4-gib-of-pages";
    region_pages = job->iterations;
    region = plat_alloc(region_pages * PAGE);
    mailbox = plat_alloc(PAGE);
    if (!region || !mailbox) return "out-of-memory";
    for (uint64_t word = 0; word < region_pages * PAGE / 8; word++) ((uint64_t *)region)[word] = mark(word, SHARED_SALT);
    *mailbox = 0;
    return 0;
}

uint64_t sharing_break(uint64_t pages, const char **failure) {
    static const char *const keys[] = {"mailbox", "pages"};
    const uint64_t values[] = {(uint64_t)(uintptr_t)mailbox, pages};
    hvb_console_values("hvbench-guest: page-sharing", keys, values, 2, 1u << 0);
    const char *error = plat.wait_for_host(mailbox);
    if (error) {
        *failure = error;
        return UINT64_MAX;
    }
    uint64_t start = plat_cycles();
    for (uint64_t page = 0; page < pages; page++) *first_word(page) = ~mark(page * PAGE / 8, SHARED_SALT);
    uint64_t cycles = plat_cycles() - start;
    for (uint64_t page = 0; page < pages; page++) {
        volatile uint64_t *words = first_word(page);
        int intact = words[0] == ~mark(page * PAGE / 8, SHARED_SALT);
        for (uint64_t i = 1; intact && i < PAGE / 8; i++) intact = words[i] == mark(page * PAGE / 8 + i, SHARED_SALT);
        if (!intact) {
            *failure = "shared-page-lost-its-data";
            return UINT64_MAX;
        }
    }
    return cycles;
}

static void probe(uint8_t code) {
    if (plat.host_probe) plat.host_probe(code);
}

uint64_t balloon_repetition(enum balloon_benchmark which, uint64_t pages, const char **failure) {
    static uint64_t repetition;
    uint64_t salt = ++repetition;
    const char *error = 0;
    touch_all(pages, salt);
    if (which != BALLOON_INFLATE) error = hvb_balloon->inflate(region, (uint32_t)pages);
    if (!error && which == BALLOON_REFAULT) error = hvb_balloon->deflate(region, (uint32_t)pages);
    if (error) {
        *failure = error;
        return UINT64_MAX;
    }
    probe(PROBE_BEFORE);
    uint64_t start = plat_cycles();
    switch (which) {
    case BALLOON_INFLATE: error = hvb_balloon->inflate(region, (uint32_t)pages); break;
    case BALLOON_DEFLATE: error = hvb_balloon->deflate(region, (uint32_t)pages); break;
    case BALLOON_REFAULT: touch_all(pages, ~salt); break;
    }
    uint64_t cycles = plat_cycles() - start;
    probe(PROBE_AFTER);
    if (!error && which == BALLOON_INFLATE) error = hvb_balloon->deflate(region, (uint32_t)pages);
    for (uint64_t page = 0; !error && which == BALLOON_REFAULT && page < pages; page++)
        if (*first_word(page) != mark(page, ~salt)) error = "refaulted-page-lost-its-data";
    for (uint64_t i = 0; !error && i < PAGE / 8; i++)
        if (guard[i] != mark(i, 0x6775617264)) error = "page-outside-the-balloon-changed";
    if (error) {
        *failure = error;
        return UINT64_MAX;
    }
    return cycles;
}
