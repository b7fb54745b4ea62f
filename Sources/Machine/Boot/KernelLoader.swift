/// Picks the boot protocol for a kernel file: PVH when the ELF carries the PVH note, otherwise
/// Multiboot v1 when it has a multiboot header. Either way the firmware tables (MP and ACPI,
/// `FirmwareTables`) go into the BIOS area first, as PC firmware leaves them.
public enum KernelLoader {
    public static func load(_ bytes: [UInt8], into memory: GuestMemory, commandLine: String, cpuCount: Int = 1) throws -> (
        entry: ProtectedModeEntry, protocolName: String
    ) {
        try FirmwareTables.write(FirmwareTables.Description(cpuCount: cpuCount), into: memory)
        if ELFImage.isELF(bytes), let image = try? ELFImage(bytes), PVHLoader.entryPoint(of: image) != nil {
            return (try PVHLoader.load(bytes, into: memory, commandLine: commandLine), "pvh")
        }
        if MultibootLoader.findHeader(in: bytes) != nil {
            return (try MultibootLoader.load(bytes, into: memory, commandLine: commandLine), "multiboot")
        }
        throw BootError.notBootable("neither a PVH ELF (Xen note type 18) nor a Multiboot v1 kernel")
    }
}
