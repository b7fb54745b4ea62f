/// Picks the boot protocol for a kernel file: PVH when the ELF carries the PVH note, the Linux
/// boot protocol for a bzImage, otherwise Multiboot v1 when it has a multiboot header. Either
/// way the firmware tables (MP and ACPI, `FirmwareTables`) go into the BIOS area, as PC
/// firmware leaves them.
public enum KernelLoader {
    /// - Parameters:
    ///   - initrd: an initial RAM disk for the kernel (PVH: module 0; bzImage: ramdisk_image).
    ///     Multiboot kernels take none.
    ///   - ramIsZero: `memory` was just mapped and nothing has written to it (see `ELFImage.load`).
    public static func load(
        _ bytes: [UInt8], initrd: [UInt8]? = nil, into memory: GuestMemory, commandLine: String, cpuCount: Int = 1,
        ramIsZero: Bool = false
    ) throws -> (entry: ProtectedModeEntry, protocolName: String) {
        let loaded = try loadKernel(bytes, initrd: initrd, into: memory, commandLine: commandLine, ramIsZero: ramIsZero)
        // After the kernel, so `ramIsZero` still holds while it loads.
        try FirmwareTables.write(FirmwareTables.Description(cpuCount: cpuCount), into: memory)
        return loaded
    }

    private static func loadKernel(
        _ bytes: [UInt8], initrd: [UInt8]?, into memory: GuestMemory, commandLine: String, ramIsZero: Bool
    ) throws -> (entry: ProtectedModeEntry, protocolName: String) {
        if ELFImage.isELF(bytes), let image = try? ELFImage(bytes), PVHLoader.entryPoint(of: image) != nil {
            let entry = try PVHLoader.load(bytes, initrd: initrd, into: memory, commandLine: commandLine, ramIsZero: ramIsZero)
            return (entry, "pvh")
        }
        if let header = try LinuxBootLoader.header(of: bytes) {
            let entry = try LinuxBootLoader.load(bytes, header: header, initrd: initrd, into: memory, commandLine: commandLine)
            return (entry, "linux-\(header.version >> 8).\(String(format: "%02d", header.version & 0xFF))")
        }
        if MultibootLoader.findHeader(in: bytes) != nil {
            guard initrd?.isEmpty ?? true else {
                throw BootError.notBootable("a Multiboot kernel takes no initrd here (only PVH ELF kernels and bzImages do)")
            }
            return (try MultibootLoader.load(bytes, into: memory, commandLine: commandLine), "multiboot")
        }
        throw BootError.notBootable("neither a PVH ELF (Xen note type 18), a Linux bzImage nor a Multiboot v1 kernel")
    }
}
