/*
 * PVH entry, long-mode switch, descriptor tables, exception and syscall entry points.
 *
 * On the hosts hvbench targets, guest code at CPL0 may be emulated instruction by
 * instruction (kvm_pvm, ~3000x slower than native), so the kernel does as little as
 * possible at run time: page tables and the GDT are static data built by the assembler,
 * and the handlers benchmarks hit have short fast paths.
 */

#include "long_mode.h"
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_DS   0x1B
#define USER_CS   0x23
#define BOOT_MILESTONE_PORT 0x80
#define MAX_CPUS 8                /* kernel.h */

/* ELF note read by PVH loaders (hvbench, QEMU): XEN_ELFNOTE_PHYS32_ENTRY = 18. */
.section .note.Xen, "a", @note
    .p2align 2
    .long 4             /* name size */
    .long 4             /* descriptor size */
    .long 18            /* type */
    .asciz "Xen"
    .long pvh_entry

.section .text.entry, "ax"
.code32
.globl pvh_entry
pvh_entry:
    cli
    cld
    movb $1, %al                  /* milestone 1: first guest instruction */
    outb %al, $BOOT_MILESTONE_PORT
    movl %ebx, %esi               /* physical address of hvm_start_info */
    lgdt gdt_descriptor
    ENTER_LONG_MODE long_mode_entry

.code64
long_mode_entry:
    movw $KERNEL_DS, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    leaq kernel_stack_top(%rip), %rsp
    movl %esi, %edi
    call kernel_main
1:  hlt
    jmp 1b

/* enter_user(rip, rsp, argument, rflags): iretq to CPL3 with those flags (IOPL=3). */
.globl enter_user
enter_user:
    movw $USER_DS, %ax
    movw %ax, %ds
    movw %ax, %es
    pushq $USER_DS
    pushq %rsi
    pushq %rcx
    pushq $USER_CS
    pushq %rdi
    movq %rdx, %rdi
    iretq

/*
 * syscall: the null call for cpu.syscall; it touches no stack, so needs no stack switch.
 * kvm_pvm (software KVM) jumps here without leaving CPL3 for guests that are not PVM-aware,
 * where sysretq would #GP: detect that, record it, and return to the caller as a plain jump.
 */
.globl syscall_entry
syscall_entry:
    movl %cs, %eax
    testb $3, %al
    jnz 1f
    sysretq
1:  movq $1, hvb_syscall_stayed_in_user_mode(%rip)
    pushq %r11
    popfq
    jmpq *%rcx

/*
 * The kernel service cpu.ptemod needs (invlpg of the address in rdi) is requested with ud2 and
 * rax = INVLPG_SERVICE. A trap is the one user-to-kernel transition every host delivers: on
 * kvm_pvm, syscall stays at CPL3 and "int n" raises #UD for guests that are not PVM-aware.
 * Stack on entry (no error code): rip, cs, rflags, rsp, ss.
 */
#define INVLPG_SERVICE 0x1a7e
#define IRQ_ENABLE_SERVICE 0x1a7f
#define IRQ_DISABLE_SERVICE 0x1a80
#define HALT_UNTIL_SERVICE 0x1a81
#define WAIT_INTERRUPT_SERVICE 0x1a82
exception_6:
    testb $3, 8(%rsp)             /* services are for user mode only */
    jz 2f
    pushq %rbx
    movq 8(%rsp), %rbx
    cmpw $0x0b0f, (%rbx)          /* the faulting instruction is ud2 */
    popq %rbx
    jne 2f
    cmpq $INVLPG_SERVICE, %rax
    je 3f
    cmpq $IRQ_ENABLE_SERVICE, %rax
    je 4f
    cmpq $IRQ_DISABLE_SERVICE, %rax
    je 5f
    cmpq $HALT_UNTIL_SERVICE, %rax
    je 6f
    cmpq $WAIT_INTERRUPT_SERVICE, %rax
    je 8f
2:  pushq $0
    pushq $6
    jmp exception_common
3:  invlpg (%rdi)
    jmp 7f
4:  orq $0x200, 16(%rsp)          /* the caller's saved RFLAGS.IF */
    jmp 7f
5:  andq $~0x200, 16(%rsp)
    jmp 7f
/*
 * Halt until the TSC deadline in rdi: arm IA32_TSC_DEADLINE, then sti; hlt (the STI shadow
 * means an interrupt already pending wakes the hlt instead of slipping in before it). The
 * handler returns to the cli; the TSC read right after is the wake-up time.
 */
6:  pushq %rcx
    pushq %rdx
    call write_tsc_deadline
    sti
    hlt
    cli
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, hvb_wake_tsc(%rip)
    popq %rdx
    popq %rcx
    movq $HALT_UNTIL_SERVICE, %rax
7:  addq $2, (%rsp)               /* past the ud2 */
    iretq
/*
 * Wait for an interrupt: unless the 64-bit counter at rsi already differs from rdx (checked
 * here, with interrupts off, so one that arrived after the caller looked is not slept
 * through), arm the TSC deadline in rdi as a time limit, sti; hlt, then disarm it.
 */
8:  cmpq %rdx, (%rsi)
    jne 7b
    pushq %rcx
    pushq %rdx
    call write_tsc_deadline
    sti
    hlt
    cli
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    popq %rdx
    popq %rcx
    movq $WAIT_INTERRUPT_SERVICE, %rax
    jmp 7b

/* IA32_TSC_DEADLINE = rdi (0 disarms); leaves ecx = 0x6E0, clobbers eax and edx. */
write_tsc_deadline:
    movl $0x6E0, %ecx
    movl %edi, %eax
    movq %rdi, %rdx
    shrq $32, %rdx
    wrmsr
    ret

/*
 * End of interrupt on the bootstrap processor (clobbers %rax): with KVM's PV EOI the host set
 * bit 0 of hvb_pv_eoi_word when no EOI write is needed, and clearing it is the EOI (counted in
 * hvb_pv_eois); otherwise
 * the local APIC's EOI register (a register address: a 32-bit displacement would sign-extend).
 */
.macro END_OF_INTERRUPT
    btrl $0, hvb_pv_eoi_word(%rip)
    jnc 8f
    incq hvb_pv_eois(%rip)
    jmp 9f
8:  movq $0xFEE000B0, %rax
    movl $0, (%rax)
9:
.endm

/*
 * The local APIC timer: note the time and the count, end the interrupt, return. Kept to a few
 * instructions because CPL0 code may be emulated by the host.
 */
.globl timer_interrupt_entry
timer_interrupt_entry:
    pushq %rax
    pushq %rdx
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, hvb_irq_tsc(%rip)
    incq hvb_irq_count(%rip)
    END_OF_INTERRUPT
    popq %rdx
    popq %rax
    iretq

/*
 * Device vectors 0x40-0x43: read the device's interrupt-cause register if its driver named one
 * (e1000 ICR, virtio ISR: reading clears it and drops the line), fold it into the vector's
 * cause word for the driver, count (a cause of 0 also as spurious), EOI. With MSI-X there is
 * no register to read.
 */
.macro DEVICE_VECTOR slot
.globl device_interrupt_\slot
device_interrupt_\slot:
    pushq %rax
    pushq %rcx
    movl $\slot, %ecx
    jmp device_interrupt_common
.endm
DEVICE_VECTOR 0
DEVICE_VECTOR 1
DEVICE_VECTOR 2
DEVICE_VECTOR 3
device_interrupt_common:
    pushq %rdx
    movq hvb_device_cause_register(,%rcx,8), %rax
    testq %rax, %rax
    jz 2f
    movb hvb_device_cause_width(%rcx), %dl
    cmpb $1, %dl
    je 1f
    cmpb $0x81, %dl               /* an I/O port (IDE status) */
    je 5f
    movl (%rax), %eax
    jmp 3f
5:  movl %eax, %edx
    inb %dx, %al
    movzbl %al, %eax
    jmp 3f
1:  movzbl (%rax), %eax
3:  testl %eax, %eax              /* nothing pending: a spurious delivery, counted */
    jnz 4f
    lock incq hvb_device_spurious(,%rcx,8)
4:  lock orl %eax, hvb_device_causes(,%rcx,4)
2:  lock incq hvb_device_interrupts(,%rcx,8)
    END_OF_INTERRUPT
    popq %rdx
    popq %rcx
    popq %rax
    iretq

/* The spurious vector needs no EOI. */
.globl spurious_interrupt_entry
spurious_interrupt_entry:
    iretq

/* Exception stubs: push a dummy error code where the CPU does not, then the vector. */
.macro STUB_NO_ERROR vector
exception_\vector:
    pushq $0
    pushq $\vector
    jmp exception_common
.endm
.macro STUB_ERROR vector
exception_\vector:
    pushq $\vector
    jmp exception_common
.endm
.irp v, 0,1,2,3,4,5,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
STUB_NO_ERROR \v
.endr
.irp v, 8,10,11,12,13,14,17,21,29,30
STUB_ERROR \v
.endr

/*
 * Stack on entry: vector, error, rip, cs, rflags, rsp, ss. Fast path: a benchmark armed
 * hvb_fixup_rip for exactly this vector from user mode; resume there.
 */
exception_common:
    pushq %rax
    movq 8(%rsp), %rax
    cmpq hvb_expected_vector(%rip), %rax
    jne 2f
    testb $3, 32(%rsp)
    jz 2f
    movq hvb_fixup_rip(%rip), %rax
    testq %rax, %rax
    jz 2f
    movq %rax, 24(%rsp)
    incq hvb_fault_count(%rip)
    popq %rax
    addq $16, %rsp
    iretq
2:  pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    call exception_handler        /* reports and stops the VM; does not return */
3:  hlt
    jmp 3b

.section .rodata
.globl exception_stubs
.p2align 3
exception_stubs:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_\v
.endr

.section .data
/* GDT: selectors are laid out for syscall/sysret (STAR base 0x08 for syscall, 0x10 for sysret). */
.p2align 4
.globl gdt
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF      /* 0x08 kernel code, 64-bit */
    .quad 0x00CF92000000FFFF      /* 0x10 kernel data */
    .quad 0x00CFF2000000FFFF      /* 0x18 user data */
    .quad 0x00AFFA000000FFFF      /* 0x20 user code, 64-bit */
    /* 0x28 + 16 * cpu: each CPU's TSS (ltr marks its descriptor busy, so each has its own),
     * filled in by cpu_tables_load */
    .fill 2 * MAX_CPUS, 8, 0
gdt_end:
.globl gdt_descriptor
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

/*
 * Identity map of the low 4 GiB with 2 MiB pages, user-accessible (benchmarks and drivers run
 * at CPL3 against the same mappings). The top GiB (MMIO) is uncached. kernel_main replaces
 * one 2 MiB entry (benchmark_pd_index) with a 4 KiB page table for cpu.pgfault/cpu.ptemod.
 */
.section .data.page_tables, "aw"
.p2align 12
.globl pml4
pml4:
    .quad pdpt + 0x7
    .fill 511, 8, 0
.p2align 12
pdpt:
    .quad page_directories + 0x0000 + 0x7
    .quad page_directories + 0x1000 + 0x7
    .quad page_directories + 0x2000 + 0x7
    .quad page_directories + 0x3000 + 0x7
    .fill 508, 8, 0
.p2align 12
.globl page_directories
page_directories:
    .set address, 0
    .rept 2048
    .if address >= 0xC0000000
    .quad address + 0x9F          /* present, writable, user, PWT, PCD, 2 MiB */
    .else
    .quad address + 0x87          /* present, writable, user, 2 MiB */
    .endif
    .set address, address + 0x200000
    .endr
