/*
 * The CPL3 part of the guest: reads the job from the PVH command line and runs it. Runs with
 * IOPL=3, so the serial port, the exit port and the benchmarks' port reads need no kernel.
 */
#include "hvb.h"
#include "kernel.h"
#include "start_info.h"
#include "drivers.h"

static uint8_t *heap_next, *heap_end;

void *plat_alloc(size_t bytes) {
    uint64_t start = ((uint64_t)heap_next + 4095) & ~4095ull;
    if (start + bytes > (uint64_t)heap_end || start + bytes < start) return 0;
    heap_next = (uint8_t *)(start + bytes);
    return (void *)start;
}

void plat_write(const char *text, size_t length) {
    for (size_t i = 0; i < length; i++) {
        while (!(inb(COM1 + 5) & 0x20)) __asm__ volatile("pause"); /* THR empty */
        outb(COM1, (uint8_t)text[i]);
    }
}

uint64_t plat_cycles(void) {
    uint32_t low, high;
    __asm__ volatile("lfence\n\trdtsc" : "=a"(low), "=d"(high) : : "memory");
    return (uint64_t)high << 32 | low;
}

int plat_privilege(void) {
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3;
}

static int null_syscall(uint64_t count) {
    hvb_syscall_stayed_in_user_mode = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t rax = 0;
        __asm__ volatile("syscall" : "+a"(rax) : : "rcx", "r11", "memory");
    }
    if (hvb_syscall_stayed_in_user_mode) plat.failure = "syscall-did-not-enter-cpl0";
    return !hvb_syscall_stayed_in_user_mode;
}

/* Point the benchmark PTE at the other frame, invalidate it, and read through it: the value
 * read proves the new translation is in use. */
static int pte_modify(uint64_t count) {
    volatile uint8_t *page = (volatile uint8_t *)(BENCHMARK_REGION + 4096);
    for (uint64_t i = 0; i < count; i++) {
        int which = (int)(i & 1) ^ 1;
        benchmark_page_table[1] = pte_frame_address(which) | 0x7;
        __asm__ volatile("ud2" : : "a"(INVLPG_SERVICE), "D"(page) : "memory");
        if (*page != 0xA0 + which) return 0;
    }
    return 1;
}

static int port_read(uint64_t count) {
    for (uint64_t i = 0; i < count; i++) (void)inb(UNCLAIMED_PORT);
    return 1;
}

static int mmio_read(uint64_t count) {
    volatile uint32_t *unclaimed = (volatile uint32_t *)UNCLAIMED_MMIO;
    for (uint64_t i = 0; i < count; i++) (void)*unclaimed;
    return 1;
}

/* ---- interrupts: the local APIC timer, taken at CPL3 with interrupts on (irq.timer) or in
 * the kernel's halt service (irq.hlt-wake) */

void hvb_user_interrupts(int on) {
    __asm__ volatile("ud2" : : "a"(on ? IRQ_ENABLE_SERVICE : IRQ_DISABLE_SERVICE) : "memory");
}

static int has_tsc_deadline_timer(void) {
    uint32_t eax = 1, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return (ecx >> 24) & 1;
}

/* A handler that never comes must fail the benchmark, not hang it: give up after about 2^34
 * cycles (seconds on any host). */
#define IRQ_WAIT_LIMIT (1ull << 34)

/* count times: write `value` to local APIC register `offset`, which raises an interrupt on the
 * timer's vector at once, and wait with interrupts on at CPL3 until its handler has run. */
static int interrupt_round_trips(uint64_t count, int offset, uint32_t value, const char *failure) {
    hvb_user_interrupts(1);
    int ok = 1;
    for (uint64_t i = 0; i < count && ok; i++) {
        uint64_t before = hvb_irq_count, start = plat_cycles();
        *lapic_register(offset) = value;
        while (hvb_irq_count == before) {
            if (plat_cycles() - start > IRQ_WAIT_LIMIT) {
                ok = 0;
                plat.failure = failure;
                break;
            }
        }
    }
    hvb_user_interrupts(0);
    return ok;
}

static int timer_interrupt(uint64_t count) {
    *lapic_register(LAPIC_TIMER_DIVIDE) = 0xB; /* divide by 1 */
    *lapic_register(LAPIC_LVT_TIMER) = TIMER_VECTOR; /* one-shot, unmasked */
    /* An initial count of 1 expires after one count: now. */
    int ok = interrupt_round_trips(count, LAPIC_TIMER_INITIAL, 1, "timer-interrupt-not-delivered");
    *lapic_register(LAPIC_LVT_TIMER) = 0x10000; /* masked */
    return ok;
}

/* A fixed IPI to this CPU on the timer's vector (its handler counts and ends it): the write to
 * the ICR and the delivery are what SMP kernels pay for each self-IPI (irq_work, for one). */
static int self_ipi(uint64_t count) {
    return interrupt_round_trips(count, LAPIC_ICR_LOW, TIMER_VECTOR | LAPIC_ICR_SELF, "self-ipi-not-delivered");
}

/* The deadline lies this far ahead so the kernel has reached hlt before it passes, even where
 * CPL0 code is emulated: 2^21 cycles, about 1 ms at 2 GHz. */
#define HALT_LEAD_CYCLES (1ull << 21)

static uint64_t halt_wake(uint64_t count) {
    *lapic_register(LAPIC_LVT_TIMER) = TIMER_VECTOR | (2u << 17); /* TSC-deadline mode */
    uint64_t total = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t deadline = plat_cycles() + HALT_LEAD_CYCLES, before = hvb_irq_count;
        __asm__ volatile("ud2" : : "a"(HALT_UNTIL_SERVICE), "D"(deadline) : "memory");
        if (hvb_irq_count == before || hvb_wake_tsc < deadline) {
            plat.failure = hvb_irq_count == before ? "woke-without-the-timer" : "woke-before-the-deadline";
            total = UINT64_MAX;
            break;
        }
        total += hvb_wake_tsc - deadline;
    }
    *lapic_register(LAPIC_LVT_TIMER) = 0x10000;
    return total;
}

/* Sleeps until the host writes a nonzero value to *word: the TSC-deadline timer wakes the vCPU
 * about every millisecond to look (several such VMs share the host's CPUs with ksmd, so they
 * must not spin). Gives up after about 2^38 cycles (a minute or two); the host's watchdog ends
 * the VM long before that if the host is gone. */
#define HOST_WAIT_LIMIT (1ull << 38)

static const char *wait_for_host(volatile uint64_t *word) {
    uint64_t start = plat_cycles();
    int timer = has_tsc_deadline_timer();
    if (timer) *lapic_register(LAPIC_LVT_TIMER) = TIMER_VECTOR | (2u << 17);
    while (!*word && plat_cycles() - start < HOST_WAIT_LIMIT) {
        if (!timer) {
            __asm__ volatile("pause");
            continue;
        }
        uint64_t deadline = plat_cycles() + HALT_LEAD_CYCLES;
        __asm__ volatile("ud2" : : "a"(WAIT_INTERRUPT_SERVICE), "D"(deadline), "S"(word), "d"(0ull) : "memory");
    }
    if (timer) *lapic_register(LAPIC_LVT_TIMER) = 0x10000;
    return *word ? 0 : "the-host-never-wrote-the-mailbox";
}

/* Device interrupts the kernel's handlers took this boot, and how many found no cause. */
static void device_interrupts(uint64_t *taken, uint64_t *spurious) {
    *taken = *spurious = 0;
    for (int i = 0; i < DEVICE_VECTORS; i++) {
        *taken += hvb_device_interrupts[i];
        *spurious += hvb_device_spurious[i];
    }
}

/* The memory benchmarks' residency probes go to the milestone port, where the VMM counts the
 * guest RAM the host holds (QEMU ignores the port). */
static void host_probe(uint8_t code) { outb(BOOT_MILESTONE_PORT, code); }

struct plat_ops plat = {
    .null_syscall = null_syscall,
    .pte_modify = pte_modify,
    .port_read = port_read,
    .mmio_read = mmio_read,
    .fault_page = (volatile uint64_t *)BENCHMARK_REGION,
    .has_hypercall = 1,
    .timer_interrupt = timer_interrupt,
    .halt_wake = halt_wake,
    .self_ipi = self_ipi,
    .ipi_round_trips = hvb_ipi_round_trips,
    .ipi_halt_round_trips = hvb_ipi_halt_round_trips,
    .tlb_shootdowns = hvb_tlb_shootdowns,
    .cacheline_pingpong = hvb_cacheline_pingpong,
    .device_interrupts = device_interrupts,
    .host_probe = host_probe,
    .wait_for_host = wait_for_host,
    .no_start = "no-container-to-start",
};

extern char _end[];

/* The heap is the RAM region that holds the end of the image, up to its end (or 3 GiB, where
 * the identity map turns uncached for MMIO). */
static void find_heap(const struct hvm_start_info *info) {
    uint64_t image_end = (uint64_t)_end;
    heap_next = (uint8_t *)image_end;
    heap_end = heap_next;
    if (info->version < 1 || !info->memmap_paddr) return;
    const struct hvm_memmap_entry *map = (const void *)info->memmap_paddr;
    for (uint32_t i = 0; i < info->memmap_entries; i++) {
        uint64_t start = map[i].address, end = map[i].address + map[i].size;
        if (map[i].type != 1 || image_end < start || image_end >= end) continue;
        if (end > 0xC0000000ull) end = 0xC0000000ull;
        heap_end = (uint8_t *)end;
    }
}

extern uint32_t hvb_kvm_features;    /* kernel.c */
extern volatile uint64_t hvb_pv_eois; /* entry.S counts, kernel.c holds */
extern uint64_t hvb_kvmclock_khz;     /* kernel.c */

/* Where the VMM presents KVM's paravirtual CPU interface, a console line (not a result line)
 * says which features it offered, how many end-of-interrupts went through PV EOI and the TSC
 * rate kvmclock gave, so a test or a reader can see the interface negotiated and used. */
static void report_paravirtual_use(void) {
    if (!hvb_kvm_features) return;
    static const char *const keys[] = {"features", "pv-eoi", "kvmclock-khz"};
    const uint64_t values[] = {hvb_kvm_features, hvb_pv_eois, hvb_kvmclock_khz};
    hvb_console_values("hvbench-guest: kvm-pv", keys, values, 3, 1u << 0);
}

void user_main(uint32_t start_info) {
    outb(BOOT_MILESTONE_PORT, 3); /* milestone 3: guest main at CPL3 */
    const struct hvm_start_info *info = (const void *)(uint64_t)start_info;
    if (info->magic != HVM_START_MAGIC) {
        hvb_report_line("fail", "reason", "bad-start-info-magic");
        guest_exit(GUEST_EXIT_BAD_JOB);
    }
    find_heap(info);
    if (!has_tsc_deadline_timer()) {
        plat.halt_wake = 0;
        plat.no_halt = "no-tsc-deadline-timer";
    }
    hvb_report_line("hello", "guest", "hvbench-guest-1");
    const char *cmdline = info->cmdline_paddr ? (const char *)info->cmdline_paddr : "";
    struct hvb_job job;
    const char *error = hvb_parse_job(cmdline, &job);
    if (error) {
        hvb_report_line("fail", "reason", error);
        guest_exit(GUEST_EXIT_BAD_JOB);
    }
    /* With kvmclock the guest knows its TSC rate itself: it replaces the host's calibration the
     * job carries (used for the I/O timeouts). */
    if (hvb_kvmclock_khz) job.tsc_khz = hvb_kvmclock_khz;
    /* Devices are set up only when the job names them, so CPU benchmarks touch no PCI space. */
    const char *device_error = 0;
    int interrupt_driven = hvb_job_interrupt_driven(&job);
    if (job.nic[0] == 'e') device_error = e1000_init(&hvb_nic, interrupt_driven);
    else if (job.nic[0] == 'v') device_error = virtio_net_init(&hvb_nic, interrupt_driven);
    if (!device_error && job.disk[0] == 'i') device_error = ide_init(&hvb_disk, interrupt_driven);
    else if (!device_error && job.disk[0] == 'v') device_error = virtio_blk_init(&hvb_disk, interrupt_driven);
    if (!device_error && job.balloon) device_error = virtio_balloon_init(&hvb_balloon, interrupt_driven);
    if (device_error) {
        hvb_report_line("fail", "reason", device_error);
        guest_exit(GUEST_EXIT_FAILED);
    }
    /* Not a benchmark: `hvbench selftest litmus` checks the memory model across CPUs. */
    const char *litmus = "litmus";
    int is_litmus = 1;
    for (int i = 0; litmus[i] || job.bench[i]; i++)
        if (litmus[i] != job.bench[i]) is_litmus = 0;
    int status = is_litmus ? hvb_litmus(job.iterations, (int)job.inject_violation) : hvb_run_job(&job);
    report_paravirtual_use();
    hvb_report_line("done", 0, 0);
    guest_exit(status ? GUEST_EXIT_FAILED : GUEST_EXIT_OK);
}
