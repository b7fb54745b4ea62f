#ifndef CGUESTATOMICS_H
#define CGUESTATOMICS_H
#include <stdbool.h>
#include <stdint.h>

/*
 * Guest RAM as the emulator's vCPU threads share it. x86 is TSO: loads are not reordered with
 * loads, stores not with stores, and no store moves before an earlier load. Acquire loads and
 * release stores give exactly that ordering, and on an x86-64 host they compile to plain moves,
 * so the interpreter pays nothing for them beyond what the compiler may no longer reorder.
 * Locked instructions become a host compare-and-swap on the same bytes, which makes them atomic
 * against every other vCPU's plain stores as well as its locked ones; mfence is a full fence.
 * Unaligned accesses are fine on the host, as on the guest: atomic within a cache line only.
 */

static inline uint8_t cga_load_8(const void *p) { return __atomic_load_n((const uint8_t *)p, __ATOMIC_ACQUIRE); }
static inline uint16_t cga_load_16(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE); }
static inline uint32_t cga_load_32(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE); }
static inline uint64_t cga_load_64(const void *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE); }

static inline void cga_store_8(void *p, uint8_t v) { __atomic_store_n((uint8_t *)p, v, __ATOMIC_RELEASE); }
static inline void cga_store_16(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE); }
static inline void cga_store_32(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); }
static inline void cga_store_64(void *p, uint64_t v) { __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE); }

/* Replaces *p with `desired` if it still holds `expected`; false (nothing written) otherwise. */
static inline bool cga_cas_64(void *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n((uint64_t *)p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline uint8_t cga_fetch_or_8(void *p, uint8_t v) { return __atomic_fetch_or((uint8_t *)p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t cga_fetch_and_32(void *p, uint32_t v) { return __atomic_fetch_and((uint32_t *)p, v, __ATOMIC_SEQ_CST); }
static inline uint8_t cga_fetch_and_8(void *p, uint8_t v) { return __atomic_fetch_and((uint8_t *)p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t cga_fetch_or_32(void *p, uint32_t v) { return __atomic_fetch_or((uint32_t *)p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t cga_exchange_32(void *p, uint32_t v) { return __atomic_exchange_n((uint32_t *)p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t cga_load_relaxed_32(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED); }
static inline uint64_t cga_fetch_or_64(void *p, uint64_t v) { return __atomic_fetch_or((uint64_t *)p, v, __ATOMIC_SEQ_CST); }

/* mfence, and the full barrier every locked instruction implies. */
static inline void cga_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* Sleeps while *word == expected, at most timeout_ns (a halted vCPU waiting for an IPI). */
int cga_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);
/* Wakes every thread sleeping on word. */
void cga_futex_wake(uint32_t *word);

#endif
