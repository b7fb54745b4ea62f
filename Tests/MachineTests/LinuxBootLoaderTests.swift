import TestSupport
import Testing

@testable import Machine

/// The Linux/x86 boot protocol for bzImages: the zero page, the kernel at 1 MiB, the initrd at
/// the top of what the kernel allows, and clear errors for files that are not bootable.
@Suite struct LinuxBootLoaderTests {
    @Test func fillsTheZeroPageFromTheImagesOwnHeader() throws {
        let memory = try GuestMemory(size: 64 << 20)
        let image = TestKernels.bzImage(code: [0xF4], initSize: 0x80_0000)
        let initrd = [UInt8](repeating: 0x5A, count: 10_000)
        let (entry, name) = try KernelLoader.load(image, initrd: initrd, into: memory, commandLine: "console=ttyS0 quiet")
        #expect(name == "linux-2.15")
        #expect(entry.entryPoint == 0x100000 && UInt64(entry.esi) == BootLayout.zeroPageAddress && entry.ebx == 0)
        #expect(try memory.readValue(UInt8.self, at: 0x100000) == 0xF4, "the protected-mode kernel at 1 MiB")
        let page = BootLayout.zeroPageAddress
        #expect(try memory.readValue(UInt32.self, at: page + 0x202) == 0x5372_6448, "the header, copied")
        #expect(try memory.readValue(UInt16.self, at: page + 0x206) == 0x020F)
        #expect(try memory.readValue(UInt8.self, at: page + 0x210) == 0xFF, "type_of_loader")
        let commandLine = try memory.readValue(UInt32.self, at: page + 0x228)
        #expect(try memory.readCString(at: UInt64(commandLine)) == "console=ttyS0 quiet")
        let ramdisk = UInt64(try memory.readValue(UInt32.self, at: page + 0x218))
        #expect(try memory.readValue(UInt32.self, at: page + 0x21C) == 10_000)
        #expect(ramdisk % 4096 == 0 && ramdisk + 10_000 <= memory.size && ramdisk >= 0x100000 + 0x80_0000)
        #expect(try memory.bytes(at: ramdisk, count: 10_000).allSatisfy { $0 == 0x5A })
        #expect(try memory.readValue(UInt64.self, at: page + 0x070) == FirmwareTables.rsdp, "acpi_rsdp_addr (2.14+)")
        // The E820 map: RAM below 640 KiB, the hole, RAM from 1 MiB to the end.
        #expect(try memory.readValue(UInt8.self, at: page + 0x1E8) == 3)
        let last = page + 0x2D0 + 2 * 20
        #expect(try memory.readValue(UInt64.self, at: last) == 0x100000)
        #expect(try memory.readValue(UInt64.self, at: last + 8) == memory.size - 0x100000)
        #expect(try memory.readValue(UInt32.self, at: last + 16) == 1)
    }

    @Test func theInitrdStaysBelowTheKernelsLimit() throws {
        let memory = try GuestMemory(size: 64 << 20)
        let image = TestKernels.bzImage(code: [0xF4], initrdAddressMax: 0x01FF_FFFF)  // 32 MiB
        _ = try KernelLoader.load(image, initrd: [1, 2, 3], into: memory, commandLine: "")
        let ramdisk = try memory.readValue(UInt32.self, at: BootLayout.zeroPageAddress + 0x218)
        #expect(ramdisk == 0x0200_0000 - 4096)
    }

    @Test func filesThatCannotBootAreClearErrors() throws {
        let memory = try GuestMemory(size: 16 << 20)
        func problem(_ image: [UInt8], initrd: [UInt8]? = nil, commandLine: String = "") -> String {
            do {
                _ = try KernelLoader.load(image, initrd: initrd, into: memory, commandLine: commandLine)
                return "loaded"
            } catch { return "\(error)" }
        }
        #expect(problem(Array(repeating: 0x90, count: 4096)).contains("neither a PVH ELF"))
        #expect(problem(TestKernels.bzImage(code: [0xF4], version: 0x0204)).contains("boot protocol 2.04 is too old"))
        #expect(problem(TestKernels.bzImage(code: [0xF4], loadFlags: 0)).contains("zImage"))
        #expect(problem(Array(TestKernels.bzImage(code: [0xF4]).prefix(1024))).contains("the file has 1024"))
        #expect(problem(TestKernels.bzImage(code: [0xF4], initSize: 32 << 20)).contains("needs 33554432 bytes at 1 MiB"))
        #expect(
            problem(TestKernels.bzImage(code: [0xF4]), initrd: [UInt8](repeating: 0, count: 15 << 20))
                .contains("the initrd of 15728640 bytes does not fit"))
        #expect(
            problem(TestKernels.bzImage(code: [0xF4], commandLineSize: 8), commandLine: "console=ttyS0")
                .contains("command line is 13 bytes; the limit is 8"))
        #expect(
            problem(TestKernels.multiboot(code: [0xF4]), initrd: [1]).contains("a Multiboot kernel takes no initrd"))
    }

    @Test func aPVHKernelGetsItsInitrdAsModuleZero() throws {
        let memory = try GuestMemory(size: 64 << 20)
        let kernel = TestKernels.elf64(payload: [0xF4], loadAddress: 0x100000, memorySize: 0x3000, pvhEntry: 0x100000)
        _ = try KernelLoader.load(kernel, initrd: [7, 8, 9], into: memory, commandLine: "")
        let info = BootLayout.startInfoAddress
        #expect(try memory.readValue(UInt32.self, at: info + 12) == 1, "nr_modules")
        let list = try memory.readValue(UInt64.self, at: info + 16)
        let address = try memory.readValue(UInt64.self, at: list)
        #expect(try memory.readValue(UInt64.self, at: list + 8) == 3)
        #expect(Array(try memory.bytes(at: address, count: 3)) == [7, 8, 9])
        #expect(address % 4096 == 0 && address >= 0x103000)
    }
}
