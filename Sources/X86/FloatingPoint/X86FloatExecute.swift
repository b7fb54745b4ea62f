/// Executing x87, MMX and SSE instructions: the architectural checks (CR0.EM/TS/MP/NE,
/// CR4.OSFXSR/OSXMMEXCPT, alignment, pending x87 exceptions), the memory operand, the host
/// snippet (HostFloatingPoint), and what an unmasked exception does.
///
/// Where this differs from hardware (documented in docs/emulator.md): the host always runs with
/// exceptions masked, so an instruction that raises an x87 exception the guest unmasked
/// completes with the masked response and leaves FSW.ES set (the next waiting instruction takes
/// #MF, as on hardware); an SSE instruction that raises an unmasked exception writes nothing and
/// takes #XM (or #UD without CR4.OSXMMEXCPT) with the flags set that the masked run raised.
/// #MF is taken whatever CR0.NE says (there is no FERR#/IGNNE# wiring to the PIC).
extension X86CPU {
    static let cr0MonitorCoprocessor: UInt64 = 1 << 1
    static let cr0Emulation: UInt64 = 1 << 2
    static let cr0TaskSwitched: UInt64 = 1 << 3
    static let cr4OSFXSR: UInt64 = 1 << 9
    static let cr4OSXMMEXCPT: UInt64 = 1 << 10

    static func fault(_ vector: UInt8, _ code: UInt32? = nil) -> X86Fault {
        .exception(vector: vector, errorCode: code)
    }

    /// #UD, #NM or #MF before an instruction of this kind runs.
    func checkFloatAvailable(_ traits: FloatTraits) throws(X86Fault) {
        if traits.contains(.x87) {
            if cr0 & (Self.cr0Emulation | Self.cr0TaskSwitched) != 0 { throw Self.fault(X86Vector.deviceNotAvailable) }
        } else {
            if cr0 & Self.cr0Emulation != 0 { throw Self.fault(X86Vector.invalidOpcode) }
            if traits.contains(.sse) && cr4 & Self.cr4OSFXSR == 0 { throw Self.fault(X86Vector.invalidOpcode) }
            if cr0 & Self.cr0TaskSwitched != 0 { throw Self.fault(X86Vector.deviceNotAvailable) }
        }
        if traits.contains(.waits) && floatingPoint.x87ExceptionPending { throw Self.fault(X86Vector.floatingPointError) }
    }

    func executeHostFloat(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let traits = FloatTraits(rawValue: UInt16(instruction.pointee.sub) | UInt16(instruction.pointee.size2) << 8)
        try checkFloatAvailable(traits)
        let unit = floatingPoint
        let count = Int(instruction.pointee.size)
        let memory = !instruction.pointee.isRegister && count > 0
        var linear: UInt64 = 0
        if memory {
            linear = address(instruction)
            if traits.contains(.aligned) && linear & 15 != 0 { throw Self.fault(X86Vector.generalProtection, 0) }
            if traits.contains(.readsMemory) { try readBytes(linear, count: count, into: unit.scratch) }
            if traits.contains(.writesMemory) { try probeWritable(linear, count: count) }
        }
        unit.prepare(registers: registers, arithmeticFlags: arithmeticFlagBits)
        guard unit.run(instruction.pointee.immediate, traits: traits) else {
            throw .shutdown("the host gave no executable memory for running x87/SSE instructions")
        }
        let state = unit.workState
        let oldControl = unit.control
        let oldStatus = unit.status
        var mxcsr = unit.mxcsr
        if traits.contains(.sse) {
            // SIMD exceptions are precise: an unmasked one writes nothing but the MXCSR flags.
            let raised = state.load(fromByteOffset: HostFloatingPoint.mxcsr, as: UInt32.self) & 0x3F
            let unmasked = raised & ~(mxcsr >> 7) & 0x3F
            if unmasked != 0 {
                // An unmasked invalid, denormal or divide-by-zero is found before any result is
                // computed: the processor then reports only those (no overflow, underflow or
                // precision flags from the other elements, which the masked run did compute).
                unit.mxcsr = mxcsr | (unmasked & 0x7 != 0 ? raised & 0x7 : raised)
                throw Self.fault(cr4 & Self.cr4OSXMMEXCPT != 0 ? X86Vector.simdFloatingPoint : X86Vector.invalidOpcode)
            }
            mxcsr |= raised
        }
        let hostStatus = state.load(fromByteOffset: HostFloatingPoint.statusWord, as: UInt16.self)
        let control =
            traits.contains(.loadsControl)
            ? state.load(fromByteOffset: HostFloatingPoint.controlWord, as: UInt16.self) : oldControl
        let flags = traits.contains(.loadsStatus) ? hostStatus & 0x7F : (oldStatus | hostStatus) & 0x7F
        let status = HostFloatingPoint.summarised(status: (hostStatus & ~0x80FF) | flags, control: control)
        if traits.contains(.storesControl) { unit.scratch.storeBytes(of: oldControl, as: UInt16.self) }
        if traits.contains(.storesStatus) {
            if memory {
                unit.scratch.storeBytes(of: oldStatus, as: UInt16.self)
            } else {
                let ax = unit.work.load(as: UInt64.self)
                unit.work.storeBytes(of: (ax & ~0xFFFF) | UInt64(oldStatus), as: UInt64.self)
            }
        }
        if traits.contains(.storesEnvironment) { storeEnvironmentPointers(count: count, control: oldControl, status: oldStatus) }
        if memory && traits.contains(.writesMemory) { try writeBytes(linear, count: count, from: unit.scratch) }

        // Commit: the state and the control and status words the guest sees. The image's pointer
        // fields are the host's; fxsave, fnstenv and fnsave store the guest's from `last*`.
        unit.image.copyMemory(from: state, byteCount: HostFloatingPoint.imageBytes)
        unit.control = control
        unit.status = status
        unit.mxcsr = mxcsr
        if traits.contains(.x87Data) {
            let encoding = HostEncoding(packed: instruction.pointee.immediate)
            unit.lastInstruction = rip &- UInt64(instruction.pointee.length)
            unit.lastOpcode = UInt16(encoding.escape & 7) << 8 | UInt16(encoding.modrm)
            if memory { unit.lastData = linear }
        }
        registers.update(from: unit.work.assumingMemoryBound(to: UInt64.self), count: 16)
        setArithmeticFlags(unit.workFlags, mask: Self.arithmeticFlags)
    }

    /// The control, status and pointer fields of an fnstenv/fnsave image in the scratch buffer:
    /// the guest's, not those of the masked host run (FTW is the host's, which is the guest's).
    private func storeEnvironmentPointers(count: Int, control: UInt16, status: UInt16) {
        let unit = floatingPoint
        let scratch = unit.scratch
        let wide = count == 28 || count == 108
        let field = wide ? 4 : 2
        scratch.storeBytes(of: control, toByteOffset: 0, as: UInt16.self)
        scratch.storeBytes(of: status, toByteOffset: field, as: UInt16.self)
        if wide {
            scratch.storeBytes(of: UInt32(truncatingIfNeeded: unit.lastInstruction), toByteOffset: 12, as: UInt32.self)
            scratch.storeBytes(of: 0, toByteOffset: 16, as: UInt16.self)
            scratch.storeBytes(of: unit.lastOpcode & 0x7FF, toByteOffset: 18, as: UInt16.self)
            scratch.storeBytes(of: UInt32(truncatingIfNeeded: unit.lastData), toByteOffset: 20, as: UInt32.self)
            scratch.storeBytes(of: 0, toByteOffset: 24, as: UInt16.self)
        } else {
            scratch.storeBytes(of: UInt16(truncatingIfNeeded: unit.lastInstruction), toByteOffset: 6, as: UInt16.self)
            scratch.storeBytes(of: 0, toByteOffset: 8, as: UInt16.self)
            scratch.storeBytes(of: UInt16(truncatingIfNeeded: unit.lastData), toByteOffset: 10, as: UInt16.self)
            scratch.storeBytes(of: 0, toByteOffset: 12, as: UInt16.self)
        }
    }

    // MARK: Memory operands of any size

    func readBytes(_ linear: UInt64, count: Int, into buffer: UnsafeMutableRawPointer) throws(X86Fault) {
        var offset = 0
        while offset < count {
            let size = Self.chunk(count - offset)
            let value = try read(linear &+ UInt64(offset), size: UInt8(size))
            withUnsafeBytes(of: value.littleEndian) { (buffer + offset).copyMemory(from: $0.baseAddress!, byteCount: size) }
            offset += size
        }
    }

    func writeBytes(_ linear: UInt64, count: Int, from buffer: UnsafeRawPointer) throws(X86Fault) {
        var offset = 0
        while offset < count {
            let size = Self.chunk(count - offset)
            var value: UInt64 = 0
            withUnsafeMutableBytes(of: &value) { $0.baseAddress!.copyMemory(from: buffer + offset, byteCount: size) }
            try write(linear &+ UInt64(offset), size: UInt8(size), UInt64(littleEndian: value))
            offset += size
        }
    }

    /// Raises the page fault a write of `count` bytes would take, before anything is computed.
    func probeWritable(_ linear: UInt64, count: Int) throws(X86Fault) {
        _ = try translate(linear, write: true, fetch: false)
        let last = linear &+ UInt64(count - 1)
        if last >> 12 != linear >> 12 { _ = try translate(last, write: true, fetch: false) }
    }

    private static func chunk(_ remaining: Int) -> Int { remaining >= 8 ? 8 : (remaining >= 4 ? 4 : (remaining >= 2 ? 2 : 1)) }
}
