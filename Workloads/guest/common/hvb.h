/*
 * The benchmark workloads and the interface they need from wherever they run.
 *
 * The same sources are compiled twice: freestanding for the benchmark guest (kernel/) and
 * hosted for the native baseline (native/). Only integer code is allowed here because the
 * guest is built with -mgeneral-regs-only; results are printed as raw integer counts (ops,
 * cycles, bytes) and the host derives ns/op, GiB/s, ... from them.
 */
#ifndef HVB_H
#define HVB_H

#include <stddef.h>
#include <stdint.h>

/* What one boot (or one native process) is asked to run; parsed from "key=value" words. */
struct hvb_job {
    char bench[32];
    uint64_t iterations;
    uint64_t repetitions;
    uint64_t warmups;
    uint64_t size_bytes; /* working-set size for memory benchmarks; 0 = default */
    uint64_t tsc_khz;    /* informational: the host converts cycles itself */
    uint64_t slowdown_percent; /* lengthen each timed repetition by this much (self-check) */
    uint64_t region_sectors;   /* disk benchmarks: sectors of the image they use (0 = 64 MiB) */
    uint64_t disk_verify;      /* 1: the region holds hvbench's pattern, check reads (0: a user's image) */
    uint64_t inject_violation; /* litmus self-check: plant one forbidden outcome per test */
    uint64_t balloon;          /* balloon=1: the VM has a virtio-balloon (the mem.balloon-* benchmarks) */
    /* udp=1: frames are IPv4/UDP to a kernel peer behind a TAP (udp_frames.c) */
    uint64_t udp, guest_ip, peer_ip, guest_port, peer_port;
    uint8_t peer_mac[6];
    uint8_t guest_mac[6]; /* guest_mac=: the source MAC of the guest's frames (a VM-to-VM pair's second guest) */
    /* serve=echo|source: this guest is the far end of a VM-to-VM benchmark, not the measured one:
     * it answers or streams until hvbench stops the VM (1 echo, 2 source); 3 idle: it only
     * waits, as an idle container's process does (natively only, through plat.idle). */
    uint64_t serve;
    char nic[16];              /* e1000, virtio (guest); socket or loopback (native) */
    char disk[16];             /* ide, virtio (guest) */
    /* Natively: the raw image (disk_path=), opened read-only with disk_readonly=1, and with
     * nic=loopback the role of the in-process peer (peer=sink|source|echo: 0, 1, 2). */
    char disk_path[512];
    uint64_t disk_readonly;
    uint64_t loopback_peer;
};

/* Parses "bench=cpu.int iterations=100 ..." into job. Returns 0, or a static error text. */
const char *hvb_parse_job(const char *cmdline, struct hvb_job *job);

/* "HVB1 <kind> bench=<bench> reason=<reason>": a skip or failure in the result-line grammar. */
void hvb_report_status(const char *kind, const char *bench, const char *reason);
/* Prints "HVB1 <kind> bench=<name> key=value ..." with count keys (the litmus tests' lines). */
void hvb_report_values(const char *kind, const char *name, const char *const *keys, const uint64_t *values, int count);
/* Prints a plain console line outside the result-line grammar: "<text> key=value ...", the keys
 * whose bit is set in hex_keys in hexadecimal. */
void hvb_console_values(const char *text, const char *const *keys, const uint64_t *values, int count, unsigned hex_keys);

/* Runs the job, printing the strict result lines described in README.md. 0 on success. */
int hvb_run_job(const struct hvb_job *job);
/* Whether the job's benchmark is an -irq variant, whose devices are driven by interrupts. */
int hvb_job_interrupt_driven(const struct hvb_job *job);

/* ---- provided by the platform (guest kernel or native host) ---- */
void plat_write(const char *text, size_t length);
uint64_t plat_cycles(void);
int plat_privilege(void); /* current privilege level: 3 in the guest, "user" natively */
void *plat_alloc(size_t bytes); /* 4 KiB aligned, never freed; 0 when out of memory */

/* Privileged or VM-specific operations. Each returns 0 when the platform has no
 * equivalent and sets *why to a short hyphenated reason. */
typedef int (*plat_op_fn)(uint64_t count);
/* Returns the cycles the operations themselves measured (not the wall time around them), or
 * UINT64_MAX on failure with plat.failure set. */
typedef uint64_t (*plat_timed_op_fn)(uint64_t count);
struct plat_ops {
    plat_op_fn null_syscall;   /* syscall/sysret round trip, count times */
    plat_op_fn pte_modify;     /* write a PTE, invlpg, touch the page */
    plat_op_fn port_read;      /* in from an unclaimed port */
    plat_op_fn mmio_read;      /* read from an unclaimed MMIO page */
    volatile uint64_t *fault_page; /* an address whose access faults with #PF / SIGSEGV */
    /* irq.timer: arm a one-shot timer that expires at once and wait, interrupts on, until its
     * handler has run; count times. */
    plat_op_fn timer_interrupt;
    /* irq.hlt-wake: sleep until a timer deadline a fixed lead ahead; the measured cycles are
     * from each deadline to the first instruction after the wake-up. */
    plat_timed_op_fn halt_wake;
    /* cpu.ipi-self: send this CPU an IPI through its local APIC's ICR and wait, interrupts on,
     * until its handler has run; count times. */
    plat_op_fn self_ipi;
    /* SMP, this CPU against a second one (guest: the first application processor; natively: a
     * second thread). cpu.ipi and cpu.ipi-halt time each IPI round trip themselves (the other
     * CPU busy, or waiting in hlt); cpu.tlb-shootdown changes a mapping both CPUs use and waits
     * until the other has dropped the old one; cpu.cacheline-pingpong hands a cache line to the
     * other CPU and back with locked operations. */
    plat_timed_op_fn ipi_round_trips, ipi_halt_round_trips;
    plat_op_fn tlb_shootdowns, cacheline_pingpong;
    /* Device interrupts taken so far and those that found no cause (guest only; 0 natively). */
    void (*device_interrupts)(uint64_t *taken, uint64_t *spurious);
    const char *no_syscall, *no_pte, *no_port, *no_mmio, *no_fault, *no_hypercall,
        *no_boot, *no_timer, *no_halt, *no_self_ipi, *no_ipi, *no_ipi_halt, *no_tlb_shootdown,
        *no_cacheline_pingpong;
    /* Waits until the process is killed, using no CPU (natively; 0 in the guest). */
    void (*idle)(void);
    /* Why container.start cannot run here: only a container's runner confirms a start. */
    const char *no_start;
    /* Why the -irq variants cannot run here (natively: no device of ours raises interrupts). */
    const char *no_device_interrupts;
    int has_hypercall;
    /* The memory benchmarks' residency probe: the host counts the guest RAM it holds (guest:
     * a write to the milestone port; 0 natively). */
    void (*host_probe)(uint8_t code);
    /* Why the balloon benchmarks cannot run here (natively: the process has no balloon). */
    const char *no_balloon;
    /* mem.page-sharing: sleeps until the host writes a nonzero value to *word (guest: woken by
     * its timer about every millisecond to look); 0 or why it gave up. */
    const char *(*wait_for_host)(volatile uint64_t *word);
    const char *no_page_sharing;
    const char *failure; /* set by an op that failed, with the reason */
};
extern struct plat_ops plat;

/* Armed by a benchmark right before an instruction that is meant to fault: the platform's
 * fault handler (guest IDT handler or host signal handler) resumes at hvb_fixup_rip when
 * the vector matches, counting the fault. */
extern volatile uint64_t hvb_fixup_rip;
extern volatile uint64_t hvb_expected_vector;
extern volatile uint64_t hvb_fault_count;

#define HVB_VECTOR_DE 0
#define HVB_VECTOR_UD 6
#define HVB_VECTOR_PF 14
#define HVB_VECTOR_NONE 0xFFFF

#endif
