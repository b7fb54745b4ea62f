/// The virtual CPU the emulator presents through `cpuid`: what it implements, nothing more.
///
/// - Vendor "GenuineIntel", as QEMU's TCG models claim a real vendor: software keys off it —
///   glibc 2.36 reads CPUID leaf 1 only for vendors it knows, and without it every dynamically
///   linked program refuses to start ("CPU ISA level is lower than required"); guests pick the
///   Intel hypercall instruction, `vmcall`, which the emulator implements (`vmmcall` is #UD, as
///   on Intel). The brand string says what it really is.
/// - Family 6, model 0x0F, stepping 1; one logical processor; hypervisor bit set.
/// - Leaf 1 EDX: FPU, PSE, TSC, MSR, PAE, CX8, APIC, PGE, CMOV, PAT, CLFSH, MMX, FXSR, SSE, SSE2.
///   ECX: SSE3, x2APIC, POPCNT, TSC-deadline timer, hypervisor (the local APIC is `LocalAPIC`;
///   x87/MMX/SSE run on the host's own instructions, see FloatingPoint/). No XSAVE, no SSSE3 or
///   later: those instructions are #UD.
/// - Leaf 7 EBX: BMI1 (tzcnt); EDX: IA32_ARCH_CAPABILITIES (see X86MSRs.swift). Extended leaf 0x80000001: LAHF/SAHF, LZCNT (ECX); SYSCALL, NX,
///   1 GiB pages, RDTSCP, long mode (EDX). 0x80000008: 40 physical, 48 linear address bits.
/// - Brand string "hvbench x86-64 interpreter". Leaves it does not define return zeros.
public enum CPUIDModel {
    public static let vendor = "GenuineIntel"
    public static let brand = "hvbench x86-64 interpreter"

    public static func query(leaf: UInt32, subleaf: UInt32) -> (eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        switch leaf {
        case 0:
            let words = packed(vendor, count: 12)
            return (7, words[0], words[2], words[1])
        case 1:
            let edx: UInt32 =
                (1 << 0) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 13) | (1 << 15)
                | (1 << 16) | (1 << 19) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26)
            let ecx: UInt32 = (1 << 0) | (1 << 21) | (1 << 23) | (1 << 24) | (1 << 31)
            return (0x0000_06F1, 0x0001_0800, ecx, edx)
        case 7:
            return subleaf == 0 ? (0, 1 << 3, 0, 1 << 29) : (0, 0, 0, 0)
        case 0x8000_0000:
            return (0x8000_0008, 0, 0, 0)
        case 0x8000_0001:
            return (0, 0, (1 << 0) | (1 << 5), (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29))
        case 0x8000_0002...0x8000_0004:
            let words = packed(brand, count: 48)
            let base = Int(leaf - 0x8000_0002) * 4
            return (words[base], words[base + 1], words[base + 2], words[base + 3])
        case 0x8000_0008:
            return (0x3028, 0, 0, 0)
        default:
            return (0, 0, 0, 0)
        }
    }

    /// `text` as little-endian 32-bit words, NUL-padded to `count` bytes.
    static func packed(_ text: String, count: Int) -> [UInt32] {
        var bytes = Array(text.utf8.prefix(count))
        bytes += [UInt8](repeating: 0, count: count - bytes.count)
        return stride(from: 0, to: count, by: 4).map { index in
            UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16 | UInt32(bytes[index + 3]) << 24
        }
    }
}
