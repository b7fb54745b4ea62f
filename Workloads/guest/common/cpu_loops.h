/*
 * The CPU benchmarks' loops (included by bench.c only): integer mixing, a sequential read pass,
 * a random pointer chase and out-of-line calls.
 */
#ifndef HVB_CPU_LOOPS_H
#define HVB_CPU_LOOPS_H
#include "hvb.h"

static uint64_t integer_mix(uint64_t n) {
    uint64_t x = 88172645463325252ull, acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += x * 0x9E3779B97F4A7C15ull;
        acc ^= acc >> 29;
    }
    return acc;
}

static uint64_t memory_read_pass(const uint64_t *buffer, size_t words) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= words; i += 4) {
        a += buffer[i];
        b += buffer[i + 1];
        c += buffer[i + 2];
        d += buffer[i + 3];
    }
    return a ^ b ^ c ^ d;
}

struct chase_node {
    struct chase_node *next;
    uint64_t pad[7]; /* one node per 64-byte cache line */
};

/* A single random cycle through all nodes (Sattolo's algorithm), so every load misses. */
static struct chase_node *build_chase(struct chase_node *nodes, uint32_t *order, size_t count) {
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < count; i++) order[i] = (uint32_t)i;
    for (size_t i = count - 1; i > 0; i--) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t j = (size_t)(rng % i);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < count; i++)
        nodes[order[i]].next = &nodes[order[(i + 1) % count]];
    return &nodes[order[0]];
}

static struct chase_node *chase(struct chase_node *p, uint64_t steps) {
    for (uint64_t i = 0; i < steps; i++) p = p->next;
    return p;
}

__attribute__((noinline)) static uint64_t callee(uint64_t x) {
    __asm__ volatile("" : "+r"(x));
    return x + 1;
}

static uint64_t call_return(uint64_t n) {
    uint64_t x = 0;
    for (uint64_t i = 0; i < n; i++) x = callee(x);
    return x;
}

#endif
