/// `/bin/hvb-milestone`, the Linux guest's boot milestone: a 145-byte static x86-64 Linux program
/// (an ELF header, one loadable segment and eight instructions) that raises its I/O privilege
/// with `iopl(3)` and writes milestone 4 to port 0x80, where hvbench's VMM stamps it
/// (`BootMilestoneDevice`); QEMU ignores the port. /init runs it first, so linux.boot can time
/// the boot to /init from outside the guest. Debian's cloud kernel has no /dev/port (DEVPORT is
/// off), and busybox has no port I/O applet, hence a program of its own. The same program with
/// other codes marks a workload's start and end (`/bin/hvb-milestone-5`, `-6`), so the VMM can
/// tell the workload's exits from the boot's.
enum MilestoneProgram {
    static let code: UInt8 = 4
    /// Written by /init just before and just after the workload of a Linux benchmark.
    static let workloadStarts: UInt8 = 5
    static let workloadEnds: UInt8 = 6
    static let loadAddress: UInt64 = 0x40_0000

    static var elf: [UInt8] { elf(writing: code) }

    static func elf(writing code: UInt8) -> [UInt8] {
        let instructions: [UInt8] = [
            0xBF, 0x03, 0x00, 0x00, 0x00,  // mov edi, 3
            0xB8, 0xAC, 0x00, 0x00, 0x00,  // mov eax, 172 (iopl)
            0x0F, 0x05,  // syscall
            0xB0, code,  // mov al, 4
            0xE6, 0x80,  // out 0x80, al
            0xB8, 0x3C, 0x00, 0x00, 0x00,  // mov eax, 60 (exit)
            0x31, 0xFF,  // xor edi, edi
            0x0F, 0x05,  // syscall
        ]
        let headers = 64 + 56
        let size = UInt64(headers + instructions.count)
        var bytes: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        bytes += le(2, 2) + le(0x3E, 2) + le(1, 4)  // executable, x86-64, version 1
        bytes += le(loadAddress + UInt64(headers), 8) + le(64, 8) + le(0, 8)  // entry, program headers, no sections
        bytes += le(0, 4) + le(64, 2) + le(56, 2) + le(1, 2) + le(64, 2) + le(0, 2) + le(0, 2)
        bytes += le(1, 4) + le(5, 4) + le(0, 8)  // PT_LOAD, read + execute, from offset 0
        bytes += le(loadAddress, 8) + le(loadAddress, 8) + le(size, 8) + le(size, 8) + le(0x1000, 8)
        return bytes + instructions
    }

    private static func le(_ value: UInt64, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (UInt64($0) * 8)) }
    }
}
