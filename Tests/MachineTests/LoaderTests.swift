import TestSupport
import Testing

@testable import Machine

@Suite struct ELFTests {
    @Test func parsesSegmentsAndNotes() throws {
        let bytes = TestKernels.elf64(payload: [1, 2, 3, 4], loadAddress: 0x100000, memorySize: 0x2000, pvhEntry: 0x100000)
        let image = try ELFImage(bytes)
        #expect(image.is64Bit)
        #expect(image.segments.count == 1)
        #expect(image.segments[0].physicalAddress == 0x100000)
        #expect(image.segments[0].memorySize == 0x2000)
        #expect(PVHLoader.entryPoint(of: image) == 0x100000)
    }

    @Test func rejectsGarbageAndTruncatedFiles() {
        #expect(throws: ELFImage.ParseError.notELF) {
            try ELFImage(Array("not an elf at all, clearly, no".utf8) + Array(repeating: 0, count: 40))
        }
        let good = TestKernels.elf64(payload: Array(repeating: 0x90, count: 64), loadAddress: 0x100000, pvhEntry: 0x100000)
        #expect(throws: ELFImage.ParseError.self) { try ELFImage(Array(good.prefix(100))) }
        var wrongMachine = good
        wrongMachine[18] = 40  // ARM
        #expect(throws: ELFImage.ParseError.self) { try ELFImage(wrongMachine) }
    }
}

@Suite struct PVHLoaderTests {
    @Test func buildsStartInfoMemoryMapAndCommandLine() throws {
        let memory = try GuestMemory(size: 64 << 20)
        let kernel = TestKernels.elf64(payload: [0xF4], loadAddress: 0x100000, memorySize: 0x3000, pvhEntry: 0x100000)
        let entry = try PVHLoader.load(kernel, into: memory, commandLine: "bench=cpu.int iterations=5")
        #expect(entry.entryPoint == 0x100000)
        #expect(UInt64(entry.ebx) == BootLayout.startInfoAddress)
        let info = BootLayout.startInfoAddress
        #expect(try memory.readValue(UInt32.self, at: info) == 0x336E_C578)
        #expect(try memory.readValue(UInt32.self, at: info + 4) == 1)
        let cmdline = try memory.readValue(UInt64.self, at: info + 24)
        #expect(try memory.readCString(at: cmdline) == "bench=cpu.int iterations=5")
        #expect(try memory.readValue(UInt64.self, at: info + 32) == FirmwareTables.rsdp, "rsdp_paddr")
        let map = try memory.readValue(UInt64.self, at: info + 40)
        #expect(try memory.readValue(UInt32.self, at: info + 48) == 3)
        // The last entry is RAM from 1 MiB to the end of guest memory.
        #expect(try memory.readValue(UInt64.self, at: map + 48) == 0x100000)
        #expect(try memory.readValue(UInt64.self, at: map + 56) == (64 << 20) - 0x100000)
        #expect(try memory.readValue(UInt32.self, at: map + 64) == 1)
        #expect(try memory.read(at: 0x100000, count: 2) == [0xF4, 0])  // payload, then zeroed bss
    }

    @Test func refusesKernelsWithoutTheNoteOrThatDoNotFit() throws {
        let memory = try GuestMemory(size: 4 << 20)
        #expect(throws: BootError.self) {
            try PVHLoader.load(
                TestKernels.elf64(payload: [0xF4], loadAddress: 0x100000, pvhEntry: nil), into: memory, commandLine: "")
        }
        #expect(throws: BootError.self) {
            try PVHLoader.load(
                TestKernels.elf64(payload: [0xF4], loadAddress: 0x10000000, pvhEntry: 0x10000000), into: memory, commandLine: "")
        }
        let long = String(repeating: "x", count: 5000)
        #expect(throws: BootError.self) {
            try PVHLoader.load(
                TestKernels.elf64(payload: [0xF4], loadAddress: 0x100000, pvhEntry: 0x100000), into: memory, commandLine: long)
        }
    }
}

@Suite struct MultibootLoaderTests {
    @Test func loadsWithAddressFieldsAndFillsTheInfoStructure() throws {
        let memory = try GuestMemory(size: 32 << 20)
        let kernel = TestKernels.multiboot(code: TestKernels.helloAndExit(status: 5), bssEnd: 0x101000)
        try memory.writeValue(UInt64.max, at: 0x100800)  // must be zeroed as bss
        let entry = try MultibootLoader.load(kernel, into: memory, commandLine: "console=ttyS0")
        #expect(entry.entryPoint == 0x100020)
        #expect(entry.eax == 0x2BAD_B002)
        #expect(try memory.read(at: 0x100020, count: 4) == [0x66, 0xBA, 0xF8, 0x03])
        #expect(try memory.readValue(UInt64.self, at: 0x100800) == 0)
        let info = UInt64(entry.ebx)
        #expect(try memory.readValue(UInt32.self, at: info) & 0b100_0101 == 0b100_0101)
        #expect(try memory.readValue(UInt32.self, at: info + 8) == (32 << 10) - 1024)  // mem_upper in KiB
        let cmdline = UInt64(try memory.readValue(UInt32.self, at: info + 16))
        #expect(try memory.readCString(at: cmdline) == "console=ttyS0")
    }

    @Test func ignoresHeadersWithABadChecksum() {
        var kernel = TestKernels.multiboot(code: TestKernels.spinForever)
        kernel[8] ^= 1
        #expect(MultibootLoader.findHeader(in: kernel) == nil)
    }

    @Test func kernelLoaderPicksTheProtocol() throws {
        let memory = try GuestMemory(size: 32 << 20)
        let pvh = TestKernels.elf64(payload: [0xF4], loadAddress: 0x100000, pvhEntry: 0x100000)
        #expect(try KernelLoader.load(pvh, into: memory, commandLine: "").protocolName == "pvh")
        let multiboot = TestKernels.multiboot(code: TestKernels.spinForever)
        #expect(try KernelLoader.load(multiboot, into: memory, commandLine: "").protocolName == "multiboot")
        #expect(throws: BootError.self) { try KernelLoader.load(Array(repeating: 0, count: 9000), into: memory, commandLine: "") }
    }
}
