/*
 * Single-instruction operations of the platform benchmarks (included by bench.c only): an
 * access or a division meant to fault, cpuid, and the vendor's hypercall instruction. Those
 * that fault arm hvb_fixup_rip so the platform's handler resumes right after them.
 */
#ifndef HVB_OPERATIONS_H
#define HVB_OPERATIONS_H
#include "hvb.h"

/* The faulting instruction sits right before local label 1; the handler resumes there. */
static void fault_once(volatile uint64_t *address) {
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, hvb_fixup_rip(%%rip)\n\t"
                     "movq (%0), %%rax\n\t"
                     "1:\n\t"
                     :
                     : "r"(address)
                     : "rax", "memory");
}

static void divide_by_zero_once(void) {
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, hvb_fixup_rip(%%rip)\n\t"
                     "xorl %%ecx, %%ecx\n\t"
                     "xorl %%edx, %%edx\n\t"
                     "movl $1, %%eax\n\t"
                     "divl %%ecx\n\t"
                     "1:\n\t"
                     :
                     :
                     : "rax", "rcx", "rdx", "memory");
}

static void cpuid_leaf(uint32_t leaf, uint32_t regs[4]) {
    __asm__ volatile("cpuid"
                     : "=a"(regs[0]), "=b"(regs[1]), "=c"(regs[2]), "=d"(regs[3])
                     : "a"(leaf), "c"(0));
}

static int cpu_is_amd_like(void) {
    uint32_t r[4];
    cpuid_leaf(0, r);
    /* "AuthenticAMD" / "HygonGenuine": ebx starts with "Auth" / "Hygo". */
    return r[1] == 0x68747541u || r[1] == 0x6f677948u;
}

/* vmcall on Intel, vmmcall on AMD; rax = an unassigned hypercall number. A CPU or VMM
 * without a hypercall interface raises #UD, which the benchmark reports as a failure. */
static void hypercall_once(int amd) {
    if (amd)
        __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                         "movq %%rax, hvb_fixup_rip(%%rip)\n\t"
                         "movl $0xFFFF, %%eax\n\t"
                         "vmmcall\n\t"
                         "1:\n\t"
                         :
                         :
                         : "rax", "rbx", "rcx", "rdx", "rsi", "memory");
    else
        __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                         "movq %%rax, hvb_fixup_rip(%%rip)\n\t"
                         "movl $0xFFFF, %%eax\n\t"
                         "vmcall\n\t"
                         "1:\n\t"
                         :
                         :
                         : "rax", "rbx", "rcx", "rdx", "rsi", "memory");
}
#endif
