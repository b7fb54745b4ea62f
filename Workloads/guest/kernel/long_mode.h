/*
 * Included by entry.S and smp_entry.S: from 32-bit protected mode into long mode on the
 * kernel's page tables (PAE, CR3 = pml4, EFER.LME and SCE, then PG | WP | PE), ending with the
 * far jump to 64-bit code at `target`. Every CPU enters the kernel this way.
 */
.macro ENTER_LONG_MODE target
    movl %cr4, %eax
    orl $0x20, %eax               /* PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx        /* EFER */
    rdmsr
    orl $0x101, %eax              /* LME | SCE */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax         /* PG | WP | PE */
    movl %eax, %cr0
    ljmp $0x08, $\target          /* KERNEL_CS */
.endm
