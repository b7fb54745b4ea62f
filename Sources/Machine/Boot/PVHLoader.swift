/// Boots an ELF kernel through the PVH direct-boot ABI (the entry point in its
/// XEN_ELFNOTE_PHYS32_ENTRY note): 32-bit protected mode, paging off, %ebx = hvm_start_info.
public enum PVHLoader {
    public static let entryNoteType: UInt32 = 18
    public static let startInfoMagic: UInt32 = 0x336E_C578

    /// The PVH entry point of `image`, or nil when it has no PVH note.
    public static func entryPoint(of image: ELFImage) -> UInt32? {
        for note in image.notes where note.name == "Xen" && note.type == entryNoteType {
            let d = note.descriptor
            guard d.count >= 4 else { continue }
            return UInt32(d[0]) | UInt32(d[1]) << 8 | UInt32(d[2]) << 16 | UInt32(d[3]) << 24
        }
        return nil
    }

    /// - Parameter initrd: handed over as the start info's first module, as Linux's PVH entry
    ///   expects its initrd.
    ///   `ramIsZero`: nothing has written to `memory` since it was mapped (see `ELFImage.load`).
    public static func load(
        _ bytes: [UInt8], initrd: [UInt8]? = nil, into memory: GuestMemory, commandLine: String, ramIsZero: Bool = false
    ) throws
        -> ProtectedModeEntry
    {
        let image = try ELFImage(bytes)
        guard let entry = entryPoint(of: image) else {
            throw BootError.notBootable("ELF has no PVH entry note (Xen note type 18)")
        }
        do {
            try image.load(from: bytes, into: memory, ramIsZero: ramIsZero)
        } catch let error as GuestMemoryError {
            throw BootError.imageDoesNotFit("\(error)")
        }
        try BootLayout.writeCommandLine(commandLine, into: memory)

        let map = BootLayout.memoryMap(ramSize: memory.size)
        for (index, region) in map.enumerated() {
            let address = BootLayout.memoryMapAddress + UInt64(index * 24)
            try memory.writeValue(region.start, at: address)
            try memory.writeValue(region.length, at: address + 8)
            try memory.writeValue(region.type.rawValue, at: address + 16)
            try memory.writeValue(UInt32(0), at: address + 20)
        }
        // struct hvm_start_info, version 1.
        let info = BootLayout.startInfoAddress
        try memory.bytes(at: info, count: 56).initializeMemory(as: UInt8.self, repeating: 0)
        try memory.writeValue(startInfoMagic, at: info)
        try memory.writeValue(UInt32(1), at: info + 4)  // version
        try memory.writeValue(BootLayout.commandLineAddress, at: info + 24)
        try memory.writeValue(FirmwareTables.rsdp, at: info + 32)  // rsdp_paddr: the ACPI tables
        try memory.writeValue(BootLayout.memoryMapAddress, at: info + 40)
        try memory.writeValue(UInt32(map.count), at: info + 48)
        if let initrd, !initrd.isEmpty {
            let kernelEnd = image.segments.map { $0.physicalAddress + $0.memorySize }.max() ?? BootLayout.highMemoryStart
            let address = try BootLayout.initrdAddress(size: UInt64(initrd.count), lowest: kernelEnd, ramSize: memory.size)
            try memory.write(initrd, at: address)
            // struct hvm_modlist_entry: paddr, size, cmdline_paddr (none), reserved.
            let module = BootLayout.moduleListAddress
            try memory.bytes(at: module, count: 32).initializeMemory(as: UInt8.self, repeating: 0)
            try memory.writeValue(address, at: module)
            try memory.writeValue(UInt64(initrd.count), at: module + 8)
            try memory.writeValue(UInt32(1), at: info + 12)  // nr_modules
            try memory.writeValue(module, at: info + 16)  // modlist_paddr
        }

        let gdt = try BootLayout.writeBootGDT(into: memory)
        return ProtectedModeEntry(entryPoint: entry, ebx: UInt32(info), gdtBase: gdt.base, gdtLimit: gdt.limit)
    }
}
