/// The x87/SSE instructions the executor does itself rather than on the host: those that load
/// state the host would reject (fxrstor and ldmxcsr with reserved MXCSR bits fault on the host
/// too, so they are checked here first), that store it in the guest's own format (fxsave), or
/// that address memory implicitly (maskmovq/maskmovdqu write to [rdi]).
extension X86CPU {
    /// Bytes of the FXSAVE image the processor reads and writes: through XMM15 in 64-bit code,
    /// XMM7 otherwise (416...511 are reserved or available to software).
    private var fxsaveBytes: Int { is64BitCode ? 416 : 288 }

    func executeFloatState(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let unit = floatingPoint
        switch instruction.pointee.op {
        case .fwait:
            let both = Self.cr0MonitorCoprocessor | Self.cr0TaskSwitched
            if cr0 & both == both { throw Self.fault(X86Vector.deviceNotAvailable) }
            if unit.x87ExceptionPending { throw Self.fault(X86Vector.floatingPointError) }
        case .fxsave, .fxrstor:
            try checkFloatAvailable(.x87)  // #NM with CR0.EM or CR0.TS
            let linear = address(instruction)
            guard linear & 15 == 0 else { throw Self.fault(X86Vector.generalProtection, 0) }
            if instruction.pointee.op == .fxsave {
                try saveState(to: linear, wide: instruction.pointee.size == 8)
            } else {
                try restoreState(from: linear, wide: instruction.pointee.size == 8)
            }
        case .ldmxcsr, .stmxcsr:
            try checkFloatAvailable(.sse)
            let linear = address(instruction)
            if instruction.pointee.op == .stmxcsr {
                try write(linear, size: 4, UInt64(unit.mxcsr))
            } else {
                let value = UInt32(truncatingIfNeeded: try read(linear, size: 4))
                guard value & ~HostFloatingPoint.mxcsrWritable == 0 else {
                    throw Self.fault(X86Vector.generalProtection, 0)
                }
                unit.mxcsr = value
            }
        case .maskMove:
            try maskedMove(instruction)
        default:
            throw unimplementedInstruction(instruction)
        }
    }

    /// FXSAVE: the committed image with the guest's instruction and data pointers, in the
    /// 32-bit-pointer form or, with REX.W, the 64-bit one.
    private func saveState(to linear: UInt64, wide: Bool) throws(X86Fault) {
        let unit = floatingPoint
        let count = fxsaveBytes
        try probeWritable(linear, count: count)
        let buffer = unit.workState  // free between snippets: no allocation on a context switch's path
        buffer.copyMemory(from: unit.image, byteCount: HostFloatingPoint.imageBytes)
        buffer.storeBytes(of: 0, toByteOffset: 5, as: UInt8.self)
        buffer.storeBytes(of: unit.lastOpcode & 0x7FF, toByteOffset: HostFloatingPoint.lastOpcode, as: UInt16.self)
        if wide {
            buffer.storeBytes(of: unit.lastInstruction, toByteOffset: HostFloatingPoint.instructionPointer, as: UInt64.self)
            buffer.storeBytes(of: unit.lastData, toByteOffset: HostFloatingPoint.dataPointer, as: UInt64.self)
        } else {
            // FIP, then FCS (0: the selectors are deprecated in 64-bit mode), FDP, FDS.
            buffer.storeBytes(
                of: UInt64(UInt32(truncatingIfNeeded: unit.lastInstruction)),
                toByteOffset: HostFloatingPoint.instructionPointer, as: UInt64.self)
            buffer.storeBytes(
                of: UInt64(UInt32(truncatingIfNeeded: unit.lastData)), toByteOffset: HostFloatingPoint.dataPointer,
                as: UInt64.self)
        }
        buffer.storeBytes(of: HostFloatingPoint.mxcsrWritable, toByteOffset: HostFloatingPoint.mxcsrMask, as: UInt32.self)
        try writeBytes(linear, count: count, from: buffer)
    }

    /// FXRSTOR: reserved MXCSR bits are #GP and change nothing.
    private func restoreState(from linear: UInt64, wide: Bool) throws(X86Fault) {
        let unit = floatingPoint
        let count = fxsaveBytes
        let buffer = unit.workState  // free between snippets: no allocation on a context switch's path
        buffer.copyMemory(from: unit.image, byteCount: HostFloatingPoint.imageBytes)
        try readBytes(linear, count: count, into: buffer)
        let mxcsr = buffer.load(fromByteOffset: HostFloatingPoint.mxcsr, as: UInt32.self)
        guard mxcsr & ~HostFloatingPoint.mxcsrWritable == 0 else { throw Self.fault(X86Vector.generalProtection, 0) }
        unit.lastOpcode = buffer.load(fromByteOffset: HostFloatingPoint.lastOpcode, as: UInt16.self) & 0x7FF
        let pointers = (
            buffer.load(fromByteOffset: HostFloatingPoint.instructionPointer, as: UInt64.self),
            buffer.load(fromByteOffset: HostFloatingPoint.dataPointer, as: UInt64.self)
        )
        unit.lastInstruction = wide ? pointers.0 : pointers.0 & 0xFFFF_FFFF
        unit.lastData = wide ? pointers.1 : pointers.1 & 0xFFFF_FFFF
        buffer.storeBytes(of: HostFloatingPoint.mxcsrWritable, toByteOffset: HostFloatingPoint.mxcsrMask, as: UInt32.self)
        unit.image.copyMemory(from: buffer, byteCount: HostFloatingPoint.imageBytes)
        unit.status = HostFloatingPoint.summarised(status: unit.status, control: unit.control)
    }

    /// maskmovq / maskmovdqu: each byte of the first register whose mask byte (second register)
    /// has its top bit set is stored to DS:rDI + i.
    private func maskedMove(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let sse = instruction.pointee.sub == 1
        try checkFloatAvailable(sse ? [.sse] : [.mmx, .waits])
        let unit = floatingPoint
        let width = sse ? 16 : 8
        let data =
            sse
            ? HostFloatingPoint.xmmOffset + Int(instruction.pointee.reg & 15) * 16
            : HostFloatingPoint.registersOffset + Int(instruction.pointee.reg & 7) * 16
        let mask =
            sse
            ? HostFloatingPoint.xmmOffset + Int(instruction.pointee.rm & 15) * 16
            : HostFloatingPoint.registersOffset + Int(instruction.pointee.rm & 7) * 16
        var target = registers[7]
        switch instruction.pointee.addressSize {
        case 4: target &= 0xFFFF_FFFF
        case 2: target &= 0xFFFF
        default: break
        }
        let segment = instruction.pointee.segment == 0xFF ? (is64BitCode ? 0xFF : 3) : instruction.pointee.segment
        if segment != 0xFF && !(is64BitCode && segment < 4) { target &+= segmentBases[Int(segment) % 6] }
        for index in 0..<width where unit.image.load(fromByteOffset: mask + index, as: UInt8.self) & 0x80 != 0 {
            try probeWritable(target &+ UInt64(index), count: 1)
        }
        for index in 0..<width where unit.image.load(fromByteOffset: mask + index, as: UInt8.self) & 0x80 != 0 {
            let byte = unit.image.load(fromByteOffset: data + index, as: UInt8.self)
            try write(target &+ UInt64(index), size: 1, UInt64(byte))
        }
        if !sse {
            // An MMX instruction: the x87 stack top is 0 and every register valid.
            unit.status &= ~0x3800
            unit.image.storeBytes(of: 0xFF, toByteOffset: HostFloatingPoint.abridgedTags, as: UInt8.self)
        }
    }
}
