/*
 * Application processors: the real-mode trampoline a SIPI starts them in, their entry into the
 * kernel in long mode, and the interrupt handlers the SMP benchmarks use.
 *
 * The trampoline is copied to TRAMPOLINE_BASE (below 1 MiB, page aligned) and started by a
 * SIPI with vector TRAMPOLINE_BASE >> 12, so it runs with CS = TRAMPOLINE_BASE >> 4, IP = 0.
 * Everything in it is addressed relative to that copy. It carries a GDT of its own whose
 * selectors match the kernel's (0x08 64-bit code, 0x10 data) plus a 32-bit code segment for
 * the step through protected mode, as OS trampolines do.
 */
#include "long_mode.h"
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define TRAMPOLINE_CS32 0x18
#define TRAMPOLINE_BASE 0x8000        /* kernel.h */
#define AP_KERNEL_STACK_SIZE 16384    /* smp.c */
#define MAX_CPUS 8                    /* kernel.h */
#define AT(label) (TRAMPOLINE_BASE + (label) - ap_trampoline_start)

.section .rodata.trampoline, "a"
.code16
.globl ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl ap_trampoline_gdt_descriptor - ap_trampoline_start
    movl %cr0, %eax
    orl $1, %eax                  /* PE */
    movl %eax, %cr0
    ljmpl $TRAMPOLINE_CS32, $AT(ap_protected_mode)

.code32
ap_protected_mode:
    movw $KERNEL_DS, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    ENTER_LONG_MODE ap_long_mode_entry

.p2align 3
ap_trampoline_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF      /* 0x08 code, 64-bit */
    .quad 0x00CF92000000FFFF      /* 0x10 data */
    .quad 0x00CF9A000000FFFF      /* 0x18 code, 32-bit */
ap_trampoline_gdt_descriptor:
    .word ap_trampoline_gdt_descriptor - ap_trampoline_gdt - 1
    .long AT(ap_trampoline_gdt)
.globl ap_trampoline_end
ap_trampoline_end:

.section .text
.code64
/*
 * Long mode on the trampoline's GDT: switch to the kernel's, take the next CPU index (the
 * bootstrap processor starts one AP at a time, so it knows which APIC ID that index has),
 * and run ap_main on that CPU's kernel stack. An index past MAX_CPUS parks the CPU.
 */
ap_long_mode_entry:
    lgdt gdt_descriptor(%rip)
    movw $KERNEL_DS, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movl $1, %edi
    lock xaddl %edi, hvb_next_cpu_index(%rip)
    cmpl $MAX_CPUS, %edi
    jae 2f
    leaq ap_kernel_stacks(%rip), %rsp
    movl %edi, %eax
    incl %eax
    shll $14, %eax                /* (index + 1) * AP_KERNEL_STACK_SIZE */
    addq %rax, %rsp
    call ap_main
2:  cli
    hlt
    jmp 2b

#define LAPIC_EOI_ADDRESS 0xFEE000B0
#define LAPIC_ICR_LOW_ADDRESS 0xFEE00300
#define LAPIC_ICR_HIGH_ADDRESS 0xFEE00310
#define TIMER_VECTOR 0xEF             /* kernel.h */

/*
 * cpu.ipi and cpu.ipi-halt, on the answering CPU: count the ping and answer the bootstrap
 * processor with a fixed IPI on its timer vector (whose handler counts and timestamps it).
 */
.globl ping_interrupt_entry
ping_interrupt_entry:
    pushq %rax
    pushq %rdx
    incq hvb_pings_answered(%rip)
    movzbl hvb_cpu_apic_ids(%rip), %edx
    shll $24, %edx
    movq $LAPIC_ICR_HIGH_ADDRESS, %rax
    movl %edx, (%rax)
    movq $LAPIC_ICR_LOW_ADDRESS, %rax
    movl $TIMER_VECTOR, (%rax)
    jmp end_of_interrupt

/*
 * cpu.tlb-shootdown, on the other CPU: invalidate the page the initiator changed, read through
 * the new translation (the value proves which frame this CPU now sees), then acknowledge.
 */
.globl shootdown_interrupt_entry
shootdown_interrupt_entry:
    pushq %rax
    pushq %rdx
    movq hvb_shootdown_address(%rip), %rax
    invlpg (%rax)
    movzbl (%rax), %eax
    movq %rax, hvb_shootdown_seen(%rip)
    lock incq hvb_shootdown_acks(%rip)
    jmp end_of_interrupt

/* Wakes an idle application processor so it reads its command; nothing else to do. */
.globl wake_interrupt_entry
wake_interrupt_entry:
    pushq %rax
    pushq %rdx
end_of_interrupt:
    movq $LAPIC_EOI_ADDRESS, %rax
    movl $0, (%rax)
    popq %rdx
    popq %rax
    iretq
