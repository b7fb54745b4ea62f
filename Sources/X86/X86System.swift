/// System instructions, exception delivery and the machine-specific registers.
extension X86CPU {
    func requireKernel() throws(X86Fault) {
        if cpl != 0 { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
    }

    /// sldt, smsw and str outside CPL0 with CR4.UMIP set raise #GP(0).
    func requireDescriptorReadsAllowed() throws(X86Fault) {
        if cpl != 0 && cr4 & (1 << 11) != 0 { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
    }

    /// Reads of descriptor tables and the TSS are supervisor accesses whatever the CPL.
    func systemRead(_ linear: UInt64, size: UInt8) throws(X86Fault) -> UInt64 {
        let saved = cpl
        cpl = 0
        defer { cpl = saved }
        return try read(linear, size: size)
    }

    func systemWrite(_ linear: UInt64, size: UInt8, _ value: UInt64) throws(X86Fault) {
        let saved = cpl
        cpl = 0
        defer { cpl = saved }
        try write(linear, size: size, value)
    }

    /// The 8-byte GDT descriptor of `selector` (LDTs are not modelled).
    func descriptor(_ selector: UInt16) throws(X86Fault) -> UInt64 {
        let index = UInt64(selector & ~7)
        guard selector & 4 == 0, index + 7 <= UInt64(gdtLimit) else {
            throw .exception(vector: X86Vector.generalProtection, errorCode: UInt32(selector & ~3))
        }
        return try systemRead(gdtBase &+ index, size: 8)
    }

    /// verr/verw: whether the segment `selector` names could be read (or written) at the
    /// current privilege. Null, LDT and out-of-limit selectors and system descriptors are not.
    /// (Linux runs `verw` on every return to user mode to clear CPU buffers against MDS.)
    func segmentAccessible(_ selector: UInt16, forWriting: Bool) throws(X86Fault) -> Bool {
        let index = UInt64(selector & ~7)
        guard selector & ~3 != 0, selector & 4 == 0, index + 7 <= UInt64(gdtLimit) else { return false }
        let descriptor = try systemRead(gdtBase &+ index, size: 8)
        guard descriptor & (1 << 44) != 0 else { return false }
        let code = descriptor & (1 << 43) != 0
        let readableOrWritable = descriptor & (1 << 41) != 0
        if forWriting ? (code || !readableOrWritable) : (code && !readableOrWritable) { return false }
        let conformingCode = code && descriptor & (1 << 42) != 0
        let privilege = Int((descriptor >> 45) & 3)
        return conformingCode || (privilege >= cpl && privilege >= Int(selector & 3))
    }

    static func descriptorBase(_ descriptor: UInt64) -> UInt64 {
        ((descriptor >> 16) & 0xFF_FFFF) | (((descriptor >> 56) & 0xFF) << 24)
    }

    /// Loads CS; switching between 16-, 32- and 64-bit code changes how bytes decode.
    func setCodeSegment(_ selector: UInt16, is64Bit: Bool, is16Bit: Bool = false) {
        selectors[1] = selector
        cpl = Int(selector & 3)
        if is64Bit != is64BitCode || is16Bit != is16BitCode {
            is64BitCode = is64Bit
            is16BitCode = is16Bit
            invalidateDecodedCode()
        }
    }

    /// Real mode: CR0.PE clear, segments are selector × 16 with no descriptors.
    var realMode: Bool { cr0 & 1 == 0 }

    /// A far jump to selector:offset: in real mode CS = selector with base selector × 16; in
    /// protected mode CS comes from the GDT, 64-bit (L), 32-bit (D) or 16-bit code.
    func farJump(selector: UInt16, offset: UInt64) throws(X86Fault) {
        if realMode {
            setCodeSegment(selector, is64Bit: false, is16Bit: true)
            cpl = 0
            segmentBases[1] = UInt64(selector) << 4
            rip = segmentBases[1] &+ (offset & 0xFFFF)
            return
        }
        let codeDescriptor = try descriptor(selector)
        let is64Bit = codeSegmentIs64Bit(codeDescriptor)
        let base = is64Bit ? 0 : Self.descriptorBase(codeDescriptor)
        setCodeSegment(selector, is64Bit: is64Bit, is16Bit: !is64Bit && codeDescriptor & (1 << 54) == 0)
        segmentBases[1] = base
        rip = is64Bit ? offset : (base &+ offset) & 0xFFFF_FFFF
    }

    func codeSegmentIs64Bit(_ descriptor: UInt64) -> Bool {
        longModeActive && descriptor & (1 << 53) != 0
    }

    // MARK: Exceptions

    /// Delivers an exception through the 64-bit IDT. A fault while delivering becomes #DF; a fault
    /// while delivering #DF is a triple fault, which shuts the machine down (as on hardware).
    func deliverException(vector: UInt8, errorCode: UInt32?, returnAddress: UInt64, software: Bool = false) {
        guard longModeActive && is64BitCode else {
            stopReason = .shutdown(
                "exception \(Self.vectorName(vector)) at rip 0x\(String(returnAddress, radix: 16)) before long mode (the emulator delivers exceptions through the 64-bit IDT only)"
            )
            return
        }
        if deliveringVector == Int(X86Vector.doubleFault) {
            stopReason = .shutdown("triple fault: \(Self.vectorName(vector)) while delivering #DF")
            return
        }
        let nested = deliveringVector >= 0
        deliveringVector = Int(vector)
        defer { deliveringVector = -1 }
        do {
            try deliver(vector: vector, errorCode: errorCode, returnAddress: returnAddress, software: software)
        } catch {
            if case .shutdown(let why) = error {
                stopReason = .shutdown(why)
                return
            }
            if nested || vector == X86Vector.doubleFault {
                stopReason = .shutdown("triple fault while delivering \(Self.vectorName(vector))")
                return
            }
            deliveringVector = Int(X86Vector.doubleFault)
            do {
                try deliver(vector: X86Vector.doubleFault, errorCode: 0, returnAddress: returnAddress, software: false)
            } catch {
                stopReason = .shutdown(
                    "triple fault: delivering \(Self.vectorName(vector)) at rip 0x\(String(returnAddress, radix: 16)) faulted, and so did #DF"
                )
            }
        }
    }

    private func deliver(vector: UInt8, errorCode: UInt32?, returnAddress: UInt64, software: Bool) throws(X86Fault) {
        let gateOffset = UInt64(vector) * 16
        let gateError = UInt32(vector) * 8 + 2
        guard gateOffset + 15 <= UInt64(idtLimit) else {
            throw .exception(vector: X86Vector.generalProtection, errorCode: gateError)
        }
        let low = try systemRead(idtBase &+ gateOffset, size: 8)
        let high = try systemRead(idtBase &+ gateOffset &+ 8, size: 8)
        let type = (low >> 40) & 0xF
        guard low & (1 << 47) != 0 else { throw .exception(vector: X86Vector.segmentNotPresent, errorCode: gateError) }
        guard type == 0xE || type == 0xF else { throw .exception(vector: X86Vector.generalProtection, errorCode: gateError) }
        if software && Int((low >> 45) & 3) < cpl {
            throw .exception(vector: X86Vector.generalProtection, errorCode: gateError)
        }
        let selector = UInt16(truncatingIfNeeded: low >> 16)
        let target = (low & 0xFFFF) | ((low >> 32) & 0xFFFF_0000) | ((high & 0xFFFF_FFFF) << 32)
        let codeDescriptor = try descriptor(selector)
        let newCPL = Int((codeDescriptor >> 45) & 3)
        let stackTable = Int((low >> 32) & 7)
        var stack = registers[4]
        if stackTable != 0 {
            stack = try systemRead(taskBase &+ 0x24 &+ UInt64(stackTable - 1) * 8, size: 8)
        } else if newCPL < cpl {
            stack = try systemRead(taskBase &+ 4 &+ UInt64(newCPL) * 8, size: 8)
        }
        stack &= ~0xF
        // The frame (ss, rsp, rflags, cs, rip), written at the handler's privilege.
        let frame = (UInt64(selectors[2]), registers[4], rflags, UInt64(selectors[1]), returnAddress)
        let savedCPL = cpl
        cpl = newCPL
        var pointer = stack
        do {
            try write(pointer &- 8, size: 8, frame.0)
            try write(pointer &- 16, size: 8, frame.1)
            try write(pointer &- 24, size: 8, frame.2)
            try write(pointer &- 32, size: 8, frame.3)
            try write(pointer &- 40, size: 8, frame.4)
            pointer &-= 40
            if let errorCode {
                pointer &-= 8
                try write(pointer, size: 8, UInt64(errorCode))
            }
        } catch {
            cpl = savedCPL
            throw error
        }
        cpl = savedCPL
        if newCPL != savedCPL { selectors[2] = UInt16(newCPL) }
        registers[4] = pointer
        setCodeSegment((selector & ~3) | UInt16(newCPL), is64Bit: codeSegmentIs64Bit(codeDescriptor))
        var flags = otherFlags & ~(Self.trapFlag | 0x4000 | 0x1_0000)
        if type == 0xE { flags &= ~Self.interruptFlag }
        otherFlags = flags
        rip = target
    }

    public static func vectorName(_ vector: UInt8) -> String {
        let names: [UInt8: String] = [
            0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS",
            13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM",
        ]
        return names[vector] ?? "vector \(vector)"
    }

    // MARK: System instructions

    func executeSystem(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        switch instruction.pointee.op {
        case .hlt:
            try requireKernel()
            halt()
        case .cli, .sti:
            if cpl > iopl { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
            if instruction.pointee.op == .cli {
                otherFlags &= ~Self.interruptFlag
            } else {
                noteInterruptsEnabledBySTI(wasEnabled: otherFlags & Self.interruptFlag != 0)
                otherFlags |= Self.interruptFlag
            }
        case .inImm, .inDX:
            let port = instruction.pointee.op == .inImm ? instruction.pointee.displacement : registers[2] & 0xFFFF
            try checkIOPermission(port: port, size: size)
            let value = try deviceAccess(.port, address: port, size: Int(size), count: 1, isWrite: false, value: 0)
            writeRegister(0, size: size, value)
        case .outImm, .outDX:
            let port = instruction.pointee.op == .outImm ? instruction.pointee.displacement : registers[2] & 0xFFFF
            try checkIOPermission(port: port, size: size)
            _ = try deviceAccess(.port, address: port, size: Int(size), count: 1, isWrite: true, value: registers[0])
        case .int3:
            softwareInterrupt(X86Vector.breakpoint)
        case .intN:
            softwareInterrupt(UInt8(truncatingIfNeeded: instruction.pointee.immediate))
        case .iret:
            try interruptReturn(size: size)
        case .syscall:
            guard efer & 1 != 0, longModeActive else { throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil) }
            registers[1] = rip
            registers[11] = rflags & ~0x1_0000
            otherFlags &= ~(msrFMASK | 0x1_0000)
            if msrFMASK & Self.arithmeticFlags != 0 { setArithmeticFlags(0, mask: msrFMASK & Self.arithmeticFlags) }
            let base = UInt16(truncatingIfNeeded: msrSTAR >> 32)
            selectors[2] = (base &+ 8) & ~3
            setCodeSegment(base & ~3, is64Bit: true)
            rip = msrLSTAR
        case .sysret:
            guard efer & 1 != 0, longModeActive else { throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil) }
            try requireKernel()
            let base = UInt16(truncatingIfNeeded: msrSTAR >> 48)
            let flags = (registers[11] & 0x3C_7FD7) | 2
            selectors[2] = (base &+ 8) | 3
            if size == 8 {
                setCodeSegment((base &+ 16) | 3, is64Bit: true)
                rip = registers[1]
            } else {
                setCodeSegment(base | 3, is64Bit: false)
                rip = registers[1] & 0xFFFF_FFFF
            }
            rflags = flags
        case .cpuid:
            let leaf = UInt32(truncatingIfNeeded: registers[0])
            let subleaf = UInt32(truncatingIfNeeded: registers[1])
            let result = CPUIDModel.query(leaf: leaf, subleaf: subleaf)
            registers[0] = UInt64(result.eax)
            // Leaf 1 EBX[31:24]: this vCPU's initial APIC ID.
            registers[3] = UInt64(result.ebx) | (leaf == 1 ? UInt64(apic.id & 0xFF) << 24 : 0)
            registers[1] = UInt64(result.ecx)
            registers[2] = UInt64(result.edx)
        case .rdtsc, .rdtscp:
            let now = timestamp()
            registers[0] = now & 0xFFFF_FFFF
            registers[2] = now >> 32
            if instruction.pointee.op == .rdtscp { registers[1] = msrTSCAux & 0xFFFF_FFFF }
        case .rdmsr:
            try requireKernel()
            let value = try readMSR(UInt32(truncatingIfNeeded: registers[1]))
            registers[0] = value & 0xFFFF_FFFF
            registers[2] = value >> 32
        case .wrmsr:
            try requireKernel()
            try writeMSR(UInt32(truncatingIfNeeded: registers[1]), (registers[2] << 32) | (registers[0] & 0xFFFF_FFFF))
        case .lgdt, .lidt:
            try requireKernel()
            let operand = address(instruction)
            let limit = UInt16(truncatingIfNeeded: try read(operand, size: 2))
            var base = try read(operand &+ 2, size: is64BitCode ? 8 : 4)
            if !is64BitCode && size == 2 { base &= 0xFF_FFFF }
            if instruction.pointee.op == .lgdt {
                gdtBase = base
                gdtLimit = limit
            } else {
                idtBase = base
                idtLimit = limit
            }
        case .sgdt, .sidt:
            let operand = address(instruction)
            let isGDT = instruction.pointee.op == .sgdt
            try write(operand, size: 2, UInt64(isGDT ? gdtLimit : idtLimit))
            try write(operand &+ 2, size: is64BitCode ? 8 : 4, isGDT ? gdtBase : idtBase)
        case .ltr:
            try requireKernel()
            let selector = UInt16(truncatingIfNeeded: try readOperand(instruction, size: 2))
            let low = try descriptor(selector)
            let type = (low >> 40) & 0xF
            guard low & (1 << 47) != 0, type == 9 || type == 1 else {
                throw .exception(vector: X86Vector.generalProtection, errorCode: UInt32(selector & ~3))
            }
            var base = Self.descriptorBase(low)
            if longModeActive {
                base |= (try systemRead(gdtBase &+ UInt64(selector & ~7) &+ 8, size: 4)) << 32
            }
            taskSelector = selector
            taskBase = base
            taskLimit = UInt32(truncatingIfNeeded: (low & 0xFFFF) | ((low >> 32) & 0xF_0000))
            if low & (1 << 55) != 0 { taskLimit = (taskLimit << 12) | 0xFFF }
            try systemWrite(gdtBase &+ UInt64(selector & ~7), size: 8, low | (2 << 40))  // mark busy
        default:
            try executeSystemTables(instruction)
        }
    }

    @inline(never)
    func executeSystemTables(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        switch instruction.pointee.op {
        case .str:
            try requireDescriptorReadsAllowed()
            try writeOperand(instruction, size: size, UInt64(taskSelector))
        case .sldt:
            // No LDT is ever loaded (see lldt): LDTR holds the null selector.
            try requireDescriptorReadsAllowed()
            try writeOperand(instruction, size: size, 0)
        case .lldt:
            try requireKernel()
            let selector = UInt16(truncatingIfNeeded: try readOperand(instruction, size: 2))
            // A null selector leaves the LDT unusable, as 64-bit kernels do; a real LDT would
            // need segment loads through it, which this CPU does not model.
            guard selector & ~3 == 0 else { throw unimplementedInstruction(instruction) }
        case .verr, .verw:
            let selector = UInt16(truncatingIfNeeded: try readOperand(instruction, size: 2))
            let accessible = try segmentAccessible(selector, forWriting: instruction.pointee.op == .verw)
            setArithmeticFlags(accessible ? Self.zeroFlag : 0, mask: Self.zeroFlag)
        case .smsw:
            try requireDescriptorReadsAllowed()
            // The whole of CR0, cut to the operand size (what processors and KVM store).
            try writeOperand(instruction, size: size, cr0)
        case .lmsw:
            try requireKernel()
            // PE, MP, EM and TS from the source; PE can be set but never cleared this way.
            let source = try readOperand(instruction, size: 2) & 0xF
            try writeControlRegister(0, (cr0 & ~0xF) | (source & 0xE) | ((cr0 | source) & 1))
        case .invlpg:
            try requireKernel()
            let linear = address(instruction)
            flushTLB()
            if codeLinearPages.contains(linear >> 12) { invalidateDecodedCode() }
        case .swapgs:
            guard is64BitCode else { throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil) }
            try requireKernel()
            let current = segmentBases[5]
            segmentBases[5] = msrKernelGSBase
            msrKernelGSBase = current
        case .clts:
            try requireKernel()
            cr0 &= ~8
        case .wbinvd:
            try requireKernel()
        case .movFromCR:
            try requireKernel()
            let value: UInt64
            switch instruction.pointee.reg {
            case 0: value = cr0
            case 2: value = cr2
            case 3: value = cr3
            case 4: value = cr4
            case 8: value = 0
            default: throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil)
            }
            writeRegister(instruction.pointee.rm, size: size, value)
        case .movToCR:
            try requireKernel()
            try writeControlRegister(instruction.pointee.reg, readRegister(instruction.pointee.rm, size: size))
        case .movFromDR:
            try requireKernel()
            let value = debugRegisters.read(try debugRegisterIndex(instruction.pointee.reg))
            writeRegister(instruction.pointee.rm, size: size, value)
        case .movToDR:
            try requireKernel()
            let index = try debugRegisterIndex(instruction.pointee.reg)
            try debugRegisters.write(index, readRegister(instruction.pointee.rm, size: size))
        case .movFromSreg:
            let index = Int(instruction.pointee.reg & 7)
            guard index < 6 else { throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil) }
            try writeOperand(instruction, size: instruction.pointee.isRegister ? size : 2, UInt64(selectors[index]))
        case .movToSreg:
            let index = Int(instruction.pointee.reg & 7)
            guard index < 6, index != 1 else { throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil) }
            let selector = UInt16(truncatingIfNeeded: try readOperand(instruction, size: 2))
            var base: UInt64 = 0
            if realMode {
                base = UInt64(selector) << 4
            } else if selector & ~3 != 0 && (!is64BitCode || index >= 4) {
                base = Self.descriptorBase(try descriptor(selector))
            }
            selectors[index] = selector
            if !is64BitCode || index >= 4 { segmentBases[index] = base }
            // MOV SS holds off interrupts for one instruction, so `mov ss; mov rsp` switches
            // stacks atomically (the same shadow as STI's).
            if index == 2 { interruptShadowEnds = retired &+ 1 }
        case .farJmpImm:
            try farJump(
                selector: UInt16(truncatingIfNeeded: instruction.pointee.displacement), offset: instruction.pointee.immediate)
        case .farJmpRm:
            let operand = address(instruction)
            let offsetSize: UInt8 = size == 8 ? 8 : 4
            let target = try read(operand, size: offsetSize)
            let selector = UInt16(truncatingIfNeeded: try read(operand &+ UInt64(offsetSize), size: 2))
            let codeDescriptor = try descriptor(selector)
            setCodeSegment(selector, is64Bit: codeSegmentIs64Bit(codeDescriptor))
            rip = target
        case .farRet:
            let pointer = registers[4]
            let target = try read(stackAddress(pointer & stackPointerMask), size: size)
            let selector = UInt16(
                truncatingIfNeeded: try read(stackAddress((pointer &+ UInt64(size)) & stackPointerMask), size: 2))
            guard Int(selector & 3) == cpl else { throw unimplementedInstruction(instruction) }
            let codeDescriptor = try descriptor(selector)
            setStackPointer((pointer &+ 2 * UInt64(size)) & stackPointerMask)
            setCodeSegment(selector, is64Bit: codeSegmentIs64Bit(codeDescriptor))
            rip = target
        case .vmcall:
            // The hypercall ABI KVM implements: rax = -KVM_EPERM from user mode, else -KVM_ENOSYS
            // for numbers this hypervisor does not define (it defines none).
            registers[0] = cpl == 0 ? UInt64(bitPattern: -1000) : UInt64(bitPattern: -1)
        default:
            throw unimplementedInstruction(instruction)
        }
    }

    /// `int n` / `int3`: a trap, so the saved RIP is the next instruction.
    func softwareInterrupt(_ vector: UInt8) {
        let next = rip
        deviceLog.instructionCompleted()
        deliverException(vector: vector, errorCode: nil, returnAddress: next, software: true)
    }

    func interruptReturn(size: UInt8) throws(X86Fault) {
        guard is64BitCode else { throw .shutdown("iret outside 64-bit mode is not implemented by the emulator") }
        let pointer = registers[4]
        let step = UInt64(size)
        let values = (
            try read(pointer, size: size), try read(pointer &+ step, size: size), try read(pointer &+ 2 * step, size: size),
            try read(pointer &+ 3 * step, size: size), try read(pointer &+ 4 * step, size: size)
        )
        let selector = UInt16(truncatingIfNeeded: values.1)
        let newCPL = Int(selector & 3)
        guard newCPL >= cpl else { throw .exception(vector: X86Vector.generalProtection, errorCode: UInt32(selector & ~3)) }
        let codeDescriptor = try descriptor(selector)
        var writable: UInt64 = 0x25_7FD5 | 0x1_0000
        if cpl > 0 { writable &= ~0x3000 }
        if cpl > iopl { writable &= ~Self.interruptFlag }
        if size == 4 { writable &= 0xFFFF_FFFF }
        rflags = (rflags & ~writable) | (values.2 & writable)
        registers[4] = values.3
        selectors[2] = UInt16(truncatingIfNeeded: values.4)
        setCodeSegment(selector, is64Bit: codeSegmentIs64Bit(codeDescriptor))
        rip = values.0
    }

    /// The debug register a `mov` names: DR8 and up do not exist (#UD); DR4 and DR5 are DR6 and
    /// DR7 unless CR4.DE makes them #UD; with DR7.GD set any access is a #DB (general detect),
    /// which sets DR6.BD and clears GD so the handler can get in.
    func debugRegisterIndex(_ named: UInt8) throws(X86Fault) -> Int {
        guard named < 8 else { throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil) }
        if debugRegisters.dr7 & DebugRegisters.generalDetect != 0 {
            debugRegisters.dr6 |= DebugRegisters.breakpointDetected
            debugRegisters.dr7 &= ~DebugRegisters.generalDetect
            throw .exception(vector: X86Vector.debug, errorCode: nil)
        }
        switch named {
        case 4, 5:
            guard cr4 & 0x8 == 0 else { throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil) }
            return Int(named) + 2
        default: return Int(named)
        }
    }

    func writeControlRegister(_ index: UInt8, _ value: UInt64) throws(X86Fault) {
        switch index {
        case 0:
            let enablingPaging = value & 0x8000_0000 != 0 && !pagingEnabled
            if enablingPaging && efer & 0x100 != 0 {
                guard cr4 & 0x20 != 0 else { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
                efer |= 0x400  // long mode active
            }
            if value & 0x8000_0000 == 0 { efer &= ~0x400 }
            cr0 = value | 0x10
        case 2: cr2 = value
        case 3: cr3 = value
        case 4: cr4 = value
        case 8: break
        default: throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil)
        }
        flushTLB()
        switch index {
        case 2, 8: break  // the fault address and the task priority: no bearing on code
        case 3: addressSpaceChanged()
        default: invalidateDecodedCode()
        }
    }

    func checkIOPermission(port: UInt64, size: UInt8) throws(X86Fault) {
        if cpl <= iopl { return }
        let denied = X86Fault.exception(vector: X86Vector.generalProtection, errorCode: 0)
        guard taskLimit >= 0x67 else { throw denied }
        let bitmap = try systemRead(taskBase &+ 0x66, size: 2)
        let byteOffset = bitmap &+ port / 8
        guard byteOffset + 1 <= UInt64(taskLimit) else { throw denied }
        let bits = try systemRead(taskBase &+ byteOffset, size: 2)
        let mask = ((UInt64(1) << UInt64(size)) - 1) << (port & 7)
        if bits & mask != 0 { throw denied }
    }

    // MARK: String port I/O

    /// `ins`/`outs`, with rep: as many elements as fit in the current page move in one device
    /// access (one VMM exit, as KVM reports `rep insw` with a count).
    func stringPortIO(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        let port = registers[2] & 0xFFFF
        try checkIOPermission(port: port, size: size)
        let addressMask = Self.mask(size: instruction.pointee.addressSize)
        let repeated = instruction.pointee.repeatPrefix != 0
        let requested = repeated ? registers[1] & addressMask : 1
        if requested == 0 { return }
        let backwards = otherFlags & Self.directionFlag != 0
        let delta = backwards ? 0 &- UInt64(size) : UInt64(size)
        let isInput = instruction.pointee.op == .ins
        let register = isInput ? 7 : 6
        let segmentBase: UInt64
        if isInput {
            segmentBase = is64BitCode ? 0 : segmentBases[0]
        } else {
            let segment = instruction.pointee.segment
            segmentBase = segment == 0xFF ? (is64BitCode ? 0 : segmentBases[3]) : segmentBases[Int(segment) % 6]
        }
        let linear = ((registers[register] & addressMask) &+ segmentBase) & (is64BitCode ? ~0 : 0xFFFF_FFFF)
        var count = 1
        if repeated && !backwards {
            let inPage = Int(4096 - (linear & 0xFFF)) / Int(size)
            count = max(1, min(Int(min(requested, 1 << 20)), inPage, 4096 / Int(size)))
        }
        if isInput {
            // Fault before talking to the device, so a faulting ins loses no data.
            _ = try translate(linear, write: true, fetch: false)
            _ = try translate(linear &+ UInt64(count * Int(size) - 1), write: true, fetch: false)
            if count == 1 {
                let value = try deviceAccess(.port, address: port, size: Int(size), count: 1, isWrite: false, value: 0)
                try write(linear, size: size, value)
            } else {
                _ = try deviceAccess(.port, address: port, size: Int(size), count: count, isWrite: false, value: 0)
                let data = deviceLog.buffer + lastReplayedOffset
                for index in 0..<count {
                    var value: UInt64 = 0
                    for byte in 0..<Int(size) {
                        value |= UInt64(data.load(fromByteOffset: index * Int(size) + byte, as: UInt8.self)) << (UInt64(byte) * 8)
                    }
                    try write(linear &+ UInt64(index * Int(size)), size: size, value)
                }
            }
        } else {
            if count == 1 {
                let value = try read(linear, size: size)
                _ = try deviceAccess(.port, address: port, size: Int(size), count: 1, isWrite: true, value: value)
            } else {
                let log = deviceLog
                let replaying = log.replayIndex < log.entries.count
                if !replaying {
                    guard log.used + count * Int(size) <= DeviceLog.bufferSize else {
                        throw .shutdown("string port output larger than the device buffer")
                    }
                    let scratch = log.buffer + log.used
                    for index in 0..<count {
                        let value = try read(linear &+ UInt64(index * Int(size)), size: size)
                        for byte in 0..<Int(size) {
                            scratch.storeBytes(
                                of: UInt8(truncatingIfNeeded: value >> (UInt64(byte) * 8)),
                                toByteOffset: index * Int(size) + byte,
                                as: UInt8.self)
                        }
                    }
                }
                _ = try deviceAccess(.port, address: port, size: Int(size), count: count, isWrite: true, value: 0)
            }
        }
        advance(register, by: delta &* UInt64(count), mask: addressMask)
        if repeated {
            advance(1, by: 0 &- UInt64(count), mask: addressMask)  // rcx -= count
            if registers[1] & addressMask != 0 { rip = rip &- UInt64(instruction.pointee.length) }
        }
    }
}
