/// Boots a Linux bzImage through the Linux/x86 32-bit boot protocol (Documentation/arch/x86/
/// boot.rst): the protected-mode kernel at 1 MiB, a "zero page" (struct boot_params) holding
/// the image's own setup header, the E820 map, the command line and the initrd, and entry at
/// the kernel's start in 32-bit protected mode, paging off, with %esi = the zero page and the
/// boot GDT's flat __BOOT_CS (0x10) and __BOOT_DS (0x18). The real-mode setup code never runs,
/// as with Firecracker, cloud-hypervisor and QEMU's direct kernel boot.
public enum LinuxBootLoader {
    /// What hvbench reads of a bzImage's setup header (at offset 0x1F1 of the file).
    public struct SetupHeader: Equatable, Sendable {
        /// The boot protocol version, 0x020F for 2.15.
        public let version: UInt16
        /// Bytes of real-mode setup before the protected-mode kernel in the file.
        public let setupBytes: Int
        public let loadFlags: UInt8
        /// The highest address the initrd may end at (2.03+), inclusive.
        public let initrdAddressMax: UInt32
        /// The longest command line the kernel takes, without its NUL (2.06+).
        public let commandLineSize: UInt32
        /// Memory the kernel needs from its load address while it decompresses (2.10+; 0 before).
        public let initSize: UInt32
        /// Where the setup header ends in the file (0x202 + the jump's offset byte).
        public let headerEnd: Int

        static let loadedHigh: UInt8 = 1 << 0
    }

    /// The oldest protocol accepted: 2.06 (Linux 2.6.22, 2007) is the first to state the
    /// command-line size; every bzImage of the last fifteen years is newer.
    public static let minimumVersion: UInt16 = 0x0206
    public static let loadAddress: UInt64 = BootLayout.highMemoryStart

    /// The setup header, or nil when `bytes` is not a bzImage (no boot-sector signature 0xAA55
    /// at 0x1FE and "HdrS" at 0x202).
    public static func header(of bytes: [UInt8]) throws -> SetupHeader? {
        let reader = ByteReader(bytes)
        guard bytes.count >= 0x264, try reader.u16(0x1FE) == 0xAA55, try reader.u32(0x202) == 0x5372_6448 else { return nil }
        let version = try reader.u16(0x206)
        guard version >= minimumVersion else {
            throw BootError.notBootable(
                "Linux boot protocol \(version >> 8).\(String(format: "%02d", version & 0xFF)) is too old; hvbench needs "
                    + "\(minimumVersion >> 8).\(String(format: "%02d", minimumVersion & 0xFF)) or later (a bzImage from Linux 2.6.22 on)"
            )
        }
        let sectors = bytes[0x1F1] == 0 ? 4 : Int(bytes[0x1F1])  // 0 means 4, for old kernels
        let header = SetupHeader(
            version: version, setupBytes: (sectors + 1) * 512, loadFlags: bytes[0x211],
            initrdAddressMax: try reader.u32(0x22C), commandLineSize: try reader.u32(0x238),
            initSize: version >= 0x020A ? try reader.u32(0x260) : 0, headerEnd: 0x202 + Int(bytes[0x201]))
        guard header.loadFlags & SetupHeader.loadedHigh != 0 else {
            throw BootError.notBootable("a zImage (its kernel loads below 1 MiB) is not supported; build a bzImage")
        }
        guard header.setupBytes < bytes.count, header.headerEnd <= min(header.setupBytes, bytes.count) else {
            throw BootError.notBootable(
                "the setup header says the kernel starts at byte \(header.setupBytes), but the file has \(bytes.count)")
        }
        return header
    }

    public static func load(
        _ bytes: [UInt8], header: SetupHeader, initrd: [UInt8]?, into memory: GuestMemory, commandLine: String
    ) throws -> ProtectedModeEntry {
        let kernel = bytes[header.setupBytes...]
        // The kernel decompresses in place: it needs init_size bytes from its load address.
        let kernelEnd = loadAddress + max(UInt64(kernel.count), UInt64(header.initSize))
        guard kernelEnd <= memory.size else {
            throw BootError.imageDoesNotFit(
                "the kernel needs \(kernelEnd - loadAddress) bytes at 1 MiB; guest RAM ends at \(memory.size >> 20) MiB")
        }
        try memory.write(Array(kernel), at: loadAddress)
        let limit = Int(header.commandLineSize)
        guard commandLine.utf8.count <= limit else { throw BootError.commandLineTooLong(commandLine.utf8.count, limit: limit) }
        try BootLayout.writeCommandLine(commandLine, into: memory)

        let zeroPage = BootLayout.zeroPageAddress
        try memory.bytes(at: zeroPage, count: 4096).initializeMemory(as: UInt8.self, repeating: 0)
        // The image's own setup header, then what the loader fills in.
        try memory.write(Array(bytes[0x1F1..<header.headerEnd]), at: zeroPage + 0x1F1)
        try memory.writeValue(UInt8(0xFF), at: zeroPage + 0x210)  // type_of_loader: undefined
        try memory.writeValue(UInt32(BootLayout.commandLineAddress), at: zeroPage + 0x228)  // cmd_line_ptr
        if let initrd, !initrd.isEmpty {
            // As high as the kernel allows (below initrd_addr_max and 4 GiB), page aligned, clear of
            // the kernel's decompression area, as boot loaders place it.
            let address = try BootLayout.initrdAddress(
                size: UInt64(initrd.count), lowest: kernelEnd, ramSize: memory.size,
                ceiling: UInt64(header.initrdAddressMax) + 1)
            try memory.write(initrd, at: address)
            try memory.writeValue(UInt32(address), at: zeroPage + 0x218)  // ramdisk_image
            try memory.writeValue(UInt32(initrd.count), at: zeroPage + 0x21C)  // ramdisk_size
        }
        if header.version >= 0x020E { try memory.writeValue(FirmwareTables.rsdp, at: zeroPage + 0x070) }  // acpi_rsdp_addr
        let map = BootLayout.memoryMap(ramSize: memory.size)
        try memory.writeValue(UInt8(map.count), at: zeroPage + 0x1E8)  // e820_entries
        for (index, region) in map.enumerated() {
            let entry = zeroPage + 0x2D0 + UInt64(index * 20)  // struct boot_e820_entry, packed
            try memory.writeValue(region.start, at: entry)
            try memory.writeValue(region.length, at: entry + 8)
            try memory.writeValue(region.type.rawValue, at: entry + 16)
        }
        let gdt = try BootLayout.writeBootGDT(into: memory)
        return ProtectedModeEntry(
            entryPoint: UInt32(loadAddress), ebx: 0, esi: UInt32(zeroPage), gdtBase: gdt.base, gdtLimit: gdt.limit)
    }
}
