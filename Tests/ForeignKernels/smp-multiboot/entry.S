/*
 * A foreign SMP test kernel, written for `qemu-system-x86_64 -smp 2 -kernel`: multiboot, 32-bit
 * protected mode, no paging. The bootstrap processor finds the other CPUs in the Intel MP table,
 * starts them with INIT-SIPI-SIPI into the real-mode trampoline below, every CPU prints to COM1,
 * and the bootstrap processor powers the machine off through ACPI (kernel.c).
 */
#define TRAMPOLINE 0x8000

.section .multiboot, "a"
.p2align 2
    .long 0x1BADB002
    .long 0x00000003              /* page-aligned modules, memory information */
    .long -(0x1BADB002 + 0x00000003)

.section .text
.code32
.globl _start
_start:
    cli
    movl $bsp_stack_top, %esp
    call bsp_main
1:  cli
    hlt
    jmp 1b

/* Copied to TRAMPOLINE; a SIPI with vector TRAMPOLINE >> 12 starts an AP here in real mode. */
.section .rodata
.code16
.globl trampoline_start
trampoline_start:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl trampoline_gdt_descriptor - trampoline_start
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $ap_entry
.p2align 3
trampoline_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF      /* 0x08 code, 32-bit, flat */
    .quad 0x00CF92000000FFFF      /* 0x10 data, flat */
trampoline_gdt_descriptor:
    .word trampoline_gdt_descriptor - trampoline_gdt - 1
    .long TRAMPOLINE + trampoline_gdt - trampoline_start
.globl trampoline_end
trampoline_end:

.section .text
.code32
ap_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $1, %eax
    lock xaddl %eax, next_ap_stack
    shll $12, %eax
    leal ap_stacks(%eax), %esp
    call ap_main
1:  cli
    hlt
    jmp 1b

.section .bss
.p2align 4
    .skip 8192
bsp_stack_top:
.globl ap_stacks
ap_stacks:                        /* 4 KiB each, growing down from ap_stacks + 4096 * (n + 1) */
    .skip 4096 * 8
.section .data
next_ap_stack:
    .long 1
