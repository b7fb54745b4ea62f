import CGuestAtomics

extension X86CPU {
    /// Runs guest instructions until one needs the VMM, the guest halts or shuts down, or
    /// `maxInstructions` retire / `requestStop()` is called (`.interrupted`).
    public func run(maxInstructions: Int = .max) -> X86Stop {
        // Two copies of the loop: a uniprocessor has no mail to look for at every boundary.
        if let translation { return runTranslating(maxInstructions, cache: translation, sharesRAM: processors != nil) }
        return processors == nil ? run(maxInstructions, sharesRAM: false) : run(maxInstructions, sharesRAM: true)
    }

    @inline(__always)
    private func run(_ maxInstructions: Int, sharesRAM: Bool) -> X86Stop {
        var budget = maxInstructions
        while budget > 0 {
            let chunk = min(budget, 8192)
            for _ in 0..<chunk {
                // Not while an instruction waits for its device access to complete: it is
                // re-executed against the log, and an interrupt taken first would run it twice.
                if (interruptWork || (sharesRAM && hasMail)) && deviceLog.isEmpty {
                    if let stop = serviceInterrupts() { return stop }
                    if stopPending {
                        let reason = stopReason ?? .interrupted
                        stopReason = nil
                        return reason
                    }
                }
                if step() {
                    let reason = stopReason ?? .interrupted
                    stopReason = nil
                    return reason
                }
            }
            budget -= chunk
            if stopRequested.exchange(false, ordering: .relaxed) { return .interrupted }
        }
        return .interrupted
    }

    /// Executes one instruction (or delivers the exception it raises). Returns true to stop.
    @inline(__always)
    func step() -> Bool {
        let start = rip
        let slot = decodeCache + (Int(truncatingIfNeeded: start ^ (start >> 15)) & (Self.decodeCacheEntries - 1))
        // Entries from pages CPL3 may not execute carry the top generation bit, so at CPL3 they
        // miss (and re-decoding raises the #PF) while at CPL0 they hit.
        let generationMask: UInt32 = cpl == 3 ? ~0 : 0x7FFF_FFFF
        if slot.pointee.rip != start || slot.pointee.generation & generationMask != decodeGeneration {
            do {
                let decoded = try decode(at: start)
                slot.pointee = decoded
                slot.pointee.generation = decodeGeneration | (decoded.userExecutable ? 0 : 0x8000_0000)
                codeLinearPages.insert(start >> 12)
                codeLinearPages.insert((start &+ UInt64(decoded.length) &- 1) >> 12)
            } catch {
                return handle(error, at: start)
            }
        }
        deviceLog.beginInstruction()
        #if DEBUG
            if traceEnabled { traceLine(slot) }
        #endif
        rip = start &+ UInt64(slot.pointee.length)
        do {
            try execute(slot)
        } catch {
            return handle(error, at: start)
        }
        deviceLog.instructionCompleted()
        retired &+= 1
        return stopPending
    }

    func traceLine(_ slot: UnsafeMutablePointer<Instruction>) {
        var line =
            "\(retired) rip=\(String(rip, radix: 16)) op=\(slot.pointee.op) len=\(slot.pointee.length) size=\(slot.pointee.size)"
        for (index, name) in ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"].enumerated() {
            line += " \(name)=\(String(registers[index], radix: 16))"
        }
        print(line)
    }

    private func handle(_ fault: X86Fault, at start: UInt64) -> Bool {
        rip = start
        switch fault {
        case .deviceExit:
            stopReason = .deviceAccess
            return true
        case .shutdown(let why):
            stopReason = .shutdown(why)
            return true
        case .retry:
            return false
        case .exception(let vector, let errorCode):
            deviceLog.instructionCompleted()
            deliverException(vector: vector, errorCode: errorCode, returnAddress: start)
            return stopPending
        }
    }

    // MARK: Operands

    /// Effective address of the memory operand: base + index << scale + displacement, plus the
    /// segment base when one applies (FS/GS in long mode, any segment in 32-bit mode).
    @inline(__always)
    func address(_ instruction: UnsafeMutablePointer<Instruction>) -> UInt64 {
        var address = offset(instruction)
        let segment = instruction.pointee.segment
        if segment != 0xFF {
            address &+= segmentBases[Int(segment & 7) % 6]
            if !is64BitCode { address &= 0xFFFF_FFFF }
        }
        return address
    }

    /// The address computation without any segment base (what `lea` stores).
    @inline(__always)
    func offset(_ instruction: UnsafeMutablePointer<Instruction>) -> UInt64 {
        var address = instruction.pointee.displacement
        let base = instruction.pointee.rm
        if base != 0xFF { address &+= registers[Int(base & 15)] }
        let index = instruction.pointee.index
        if index != 0xFF { address &+= registers[Int(index & 15)] << UInt64(instruction.pointee.scale) }
        if instruction.pointee.addressSize == 4 { address &= 0xFFFF_FFFF }
        if instruction.pointee.addressSize == 2 { address &= 0xFFFF }
        return address
    }

    @inline(__always)
    func readOperand(_ instruction: UnsafeMutablePointer<Instruction>, size: UInt8) throws(X86Fault) -> UInt64 {
        if instruction.pointee.isRegister { return readRegister(instruction.pointee.rm, size: size) }
        return try read(address(instruction), size: size)
    }

    /// The r/m operand of a read-modify-write instruction: its value and, for memory, its address
    /// (computed once, so the write goes where the read came from).
    @inline(__always)
    func loadDestination(_ instruction: UnsafeMutablePointer<Instruction>, size: UInt8) throws(X86Fault) -> (
        value: UInt64, address: UInt64
    ) {
        if instruction.pointee.isRegister { return (readRegister(instruction.pointee.rm, size: size), 0) }
        let address = address(instruction)
        let value = try read(address, size: size)
        if instruction.pointee.locked { beginLockedAccess(value) }
        return (value, address)
    }

    @inline(__always)
    func storeDestination(
        _ instruction: UnsafeMutablePointer<Instruction>, address: UInt64, size: UInt8, _ value: UInt64
    ) throws(X86Fault) {
        if instruction.pointee.isRegister {
            writeRegister(instruction.pointee.rm, size: size, value)
        } else if instruction.pointee.locked {
            try lockedWrite(address, size: size, value)
        } else {
            try write(address, size: size, value)
        }
    }

    @inline(__always)
    func writeOperand(_ instruction: UnsafeMutablePointer<Instruction>, size: UInt8, _ value: UInt64) throws(X86Fault) {
        if instruction.pointee.isRegister {
            writeRegister(instruction.pointee.rm, size: size, value)
        } else {
            try write(address(instruction), size: size, value)
        }
    }

    // MARK: Stack

    @inline(__always) var stackPointerMask: UInt64 { is64BitCode ? ~0 : (is16BitCode ? 0xFFFF : 0xFFFF_FFFF) }

    /// RIP holds the linear address of the next instruction; in 16-bit code that is CS.base + IP,
    /// and near calls push (and returns and indirect branches load) IP.
    @inline(__always) var instructionPointer: UInt64 { is16BitCode ? (rip &- segmentBases[1]) & 0xFFFF : rip }
    @inline(__always) func linearCodeAddress(_ pointer: UInt64) -> UInt64 {
        is16BitCode ? segmentBases[1] &+ (pointer & 0xFFFF) : pointer
    }

    @inline(__always)
    func stackAddress(_ pointer: UInt64) -> UInt64 {
        is64BitCode ? pointer : (pointer &+ segmentBases[2]) & 0xFFFF_FFFF
    }

    @inline(__always)
    func push(_ value: UInt64, size: UInt8) throws(X86Fault) {
        let pointer = (registers[4] &- UInt64(size)) & stackPointerMask
        try write(stackAddress(pointer), size: size, value)
        setStackPointer(pointer)
    }

    @inline(__always)
    func pop(size: UInt8) throws(X86Fault) -> UInt64 {
        let pointer = registers[4]
        let value = try read(stackAddress(pointer & stackPointerMask), size: size)
        setStackPointer((pointer &+ UInt64(size)) & stackPointerMask)
        return value
    }

    @inline(__always)
    func setStackPointer(_ value: UInt64) {
        if is64BitCode { registers[4] = value } else { registers[4] = (registers[4] & ~0xFFFF_FFFF) | (value & 0xFFFF_FFFF) }
    }

    // MARK: ALU

    /// add, or, and, sub, xor, cmp inline; adc and sbb (which read CF) out of line, so the
    /// common kinds stay small enough to inline into the dispatch loop.
    @inline(__always)
    func alu(_ kind: UInt8, _ a: UInt64, _ b: UInt64, size: UInt8) -> UInt64 {
        let mask = Self.mask(size: size)
        switch kind {
        case 0:
            let result = (a &+ b) & mask
            setFlags(.add, a, b, result, size: size)
            return result
        case 1:
            setFlags(.logic, 0, 0, a | b, size: size)
            return a | b
        case 4:
            setFlags(.logic, 0, 0, a & b, size: size)
            return a & b
        case 6:
            setFlags(.logic, 0, 0, a ^ b, size: size)
            return a ^ b
        case 5, 7:
            let result = (a &- b) & mask
            setFlags(.sub, a, b, result, size: size)
            return result
        default:
            return aluWithCarry(kind, a, b, size: size)
        }
    }

    @inline(never)
    func aluWithCarry(_ kind: UInt8, _ a: UInt64, _ b: UInt64, size: UInt8) -> UInt64 {
        let carryIn = carry
        let mask = Self.mask(size: size)
        let result = (kind == 2 ? a &+ b &+ (carryIn ? 1 : 0) : a &- b &- (carryIn ? 1 : 0)) & mask
        flagCarry = carryIn
        setFlags(kind == 2 ? .adc : .sbb, a, b, result, size: size)
        return result
    }

    /// PF, ZF and SF of a result.
    @inline(__always)
    func resultFlags(_ value: UInt64, size: UInt8) -> UInt64 {
        var flags: UInt64 = 0
        if (value & 0xFF).nonzeroBitCount & 1 == 0 { flags |= Self.parityFlag }
        if value & Self.mask(size: size) == 0 { flags |= Self.zeroFlag }
        if value & Self.signBit(size: size) != 0 { flags |= Self.signFlag }
        return flags
    }

    // MARK: Execute

    @inline(__always)
    func execute(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        switch instruction.pointee.op {
        case .movRegRm:
            writeRegister(instruction.pointee.reg, size: size, try readOperand(instruction, size: size))
        case .movRmReg:
            try writeOperand(instruction, size: size, readRegister(instruction.pointee.reg, size: size))
        case .movRmImm:
            try writeOperand(instruction, size: size, instruction.pointee.immediate)
        case .aluRmReg, .aluRmImm:
            let kind = instruction.pointee.sub
            let b =
                instruction.pointee.op == .aluRmImm
                ? instruction.pointee.immediate : readRegister(instruction.pointee.reg, size: size)
            let (a, target) = try loadDestination(instruction, size: size)
            let result = alu(kind, a, b, size: size)
            if kind != 7 { try storeDestination(instruction, address: target, size: size, result) }
        case .aluRegRm:
            let kind = instruction.pointee.sub
            let b = try readOperand(instruction, size: size)
            let result = alu(kind, readRegister(instruction.pointee.reg, size: size), b, size: size)
            if kind != 7 { writeRegister(instruction.pointee.reg, size: size, result) }
        case .testRmReg:
            let value = try readOperand(instruction, size: size) & readRegister(instruction.pointee.reg, size: size)
            setFlags(.logic, 0, 0, value, size: size)
        case .testRmImm:
            let value = try readOperand(instruction, size: size) & instruction.pointee.immediate
            setFlags(.logic, 0, 0, value, size: size)
        case .lea:
            writeRegister(instruction.pointee.reg, size: size, offset(instruction))
        case .jcc:
            if condition(instruction.pointee.sub) { rip = instruction.pointee.immediate }
        case .jmp:
            rip = instruction.pointee.immediate
        case .call:
            try push(instructionPointer, size: size)
            rip = instruction.pointee.immediate
        case .ret:
            let target = try pop(size: size)
            if instruction.pointee.immediate != 0 {
                setStackPointer((registers[4] &+ instruction.pointee.immediate) & stackPointerMask)
            }
            rip = linearCodeAddress(target)
        case .pushReg:
            try push(readRegister(instruction.pointee.reg, size: size), size: size)
        case .popReg:
            let value = try pop(size: size)
            writeRegister(instruction.pointee.reg, size: size, value)
        case .incRm, .decRm:
            let increment = instruction.pointee.op == .incRm
            let carryIn = carry  // inc/dec leave CF as it was
            let (a, target) = try loadDestination(instruction, size: size)
            let result = (increment ? a &+ 1 : a &- 1) & Self.mask(size: size)
            try storeDestination(instruction, address: target, size: size, result)
            flagCarry = carryIn
            setFlags(increment ? .inc : .dec, a, 1, result, size: size)
        case .movzx:
            let value = try readOperand(instruction, size: instruction.pointee.size2)
            writeRegister(instruction.pointee.reg, size: size, value)
        case .movsx:
            let value = try readOperand(instruction, size: instruction.pointee.size2)
            writeRegister(
                instruction.pointee.reg, size: size,
                Self.signExtend(value, size: instruction.pointee.size2) & Self.mask(size: size))
        case .setcc:
            try writeOperand(instruction, size: 1, condition(instruction.pointee.sub) ? 1 : 0)
        case .cmovcc:
            let value = try readOperand(instruction, size: size)
            if condition(instruction.pointee.sub) {
                writeRegister(instruction.pointee.reg, size: size, value)
            } else if size == 4 {
                writeRegister(instruction.pointee.reg, size: 4, readRegister(instruction.pointee.reg, size: 4))
            }
        case .shiftImm where instruction.pointee.isRegister && instruction.pointee.sub >= 4:
            // shl/shr/sar of a register by an immediate: the compiled-code common case, inline. A count
            // of 0 changes nothing but still writes the register (zero-extending a 32-bit one).
            let count = instruction.pointee.immediate & (size == 8 ? 63 : 31)
            let value = readRegister(instruction.pointee.rm, size: size)
            writeRegister(
                instruction.pointee.rm, size: size,
                count == 0 ? value : logicalShift(instruction.pointee.sub, value, count, size: size))
        case .imulRegRm, .imulRegRmImm:
            let a = try readOperand(instruction, size: size)
            let b =
                instruction.pointee.op == .imulRegRm
                ? readRegister(instruction.pointee.reg, size: size) : instruction.pointee.immediate
            let product = Int64(bitPattern: Self.signExtend(a, size: size)).multipliedFullWidth(
                by: Int64(bitPattern: Self.signExtend(b, size: size)))
            let low = product.low & Self.mask(size: size)
            let fits: Bool
            if size == 8 {
                fits = product.high == (Int64(bitPattern: product.low) < 0 ? -1 : 0)
            } else {
                fits =
                    Self.signExtend(low, size: size) == product.low
                    && product.high == (Int64(bitPattern: product.low) < 0 ? -1 : 0)
            }
            writeRegister(instruction.pointee.reg, size: size, low)
            flagCarry = !fits
            setFlags(.mul, 0, 0, low, size: size)
        case .fence:
            cga_fence()
        case .nop, .pause:
            break
        default:
            try executeOutOfLine(instruction)
        }
    }

    /// The operations the hot switch above leaves out, kept out of line (`@inline(never)`) so
    /// the common ones stay small enough to inline.
    @inline(never)
    func executeOutOfLine(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        let mask = Self.mask(size: size)
        switch instruction.pointee.op {
        case .notRm:
            let (value, target) = try loadDestination(instruction, size: size)
            try storeDestination(instruction, address: target, size: size, ~value & mask)
        case .negRm:
            let (value, target) = try loadDestination(instruction, size: size)
            let result = (0 &- value) & mask
            try storeDestination(instruction, address: target, size: size, result)
            setFlags(.neg, value, 0, result, size: size)
        case .mulRm, .imulRm:
            try multiply(instruction, signed: instruction.pointee.op == .imulRm)
        case .divRm, .idivRm:
            try divide(instruction, signed: instruction.pointee.op == .idivRm)
        case .shiftImm, .shiftCL:
            let rawCount = instruction.pointee.op == .shiftImm ? instruction.pointee.immediate : registers[1]
            try shift(instruction, count: rawCount & (size == 8 ? 63 : 31))
        case .shldImm, .shldCL, .shrdImm, .shrdCL:
            try doubleShift(instruction)
        case .xchgRmReg:
            let other = readRegister(instruction.pointee.reg, size: size)
            let (value, target) = try loadDestination(instruction, size: size)
            try storeDestination(instruction, address: target, size: size, other)
            writeRegister(instruction.pointee.reg, size: size, value)
        case .cmpxchg:
            let accumulator = readRegister(0, size: size)
            let (current, target) = try loadDestination(instruction, size: size)
            if accumulator == current {
                try storeDestination(instruction, address: target, size: size, readRegister(instruction.pointee.reg, size: size))
            } else {
                // A memory destination is written back unchanged (the access is a locked read-modify-write).
                if !instruction.pointee.isRegister { try storeDestination(instruction, address: target, size: size, current) }
                writeRegister(0, size: size, current)
            }
            setFlags(.sub, accumulator, current, (accumulator &- current) & mask, size: size)
        case .cmpxchg8b:
            // EDX:EAX against m64: equal, m64 gets ECX:EBX; not, EDX:EAX gets m64 (zero-extended)
            // and m64 is written back unchanged. Only ZF changes.
            let (current, target) = try loadDestination(instruction, size: 8)
            let matches = current == (registers[2] & 0xFFFF_FFFF) << 32 | registers[0] & 0xFFFF_FFFF
            if matches {
                try storeDestination(
                    instruction, address: target, size: 8, (registers[1] & 0xFFFF_FFFF) << 32 | registers[3] & 0xFFFF_FFFF)
            } else {
                try storeDestination(instruction, address: target, size: 8, current)
                registers[0] = current & 0xFFFF_FFFF
                registers[2] = current >> 32
            }
            setArithmeticFlags(matches ? Self.zeroFlag : 0, mask: Self.zeroFlag)
        case .xadd:
            let source = readRegister(instruction.pointee.reg, size: size)
            let (current, target) = try loadDestination(instruction, size: size)
            let sum = (current &+ source) & mask
            // Memory is written first (it may fault); with two registers the destination is written last.
            if !instruction.pointee.isRegister { try storeDestination(instruction, address: target, size: size, sum) }
            writeRegister(instruction.pointee.reg, size: size, current)
            if instruction.pointee.isRegister { writeRegister(instruction.pointee.rm, size: size, sum) }
            setFlags(.add, current, source, sum, size: size)
        case .pushImm:
            try push(instruction.pointee.immediate & mask, size: size)
        case .pushRm:
            try push(try readOperand(instruction, size: size), size: size)
        case .popRm:
            let pointer = registers[4]
            let value = try read(stackAddress(pointer & stackPointerMask), size: size)
            // The destination address is computed with the incremented stack pointer.
            setStackPointer((pointer &+ UInt64(size)) & stackPointerMask)
            do { try writeOperand(instruction, size: size, value) } catch {
                registers[4] = pointer
                throw error
            }
        case .pushf:
            try push(rflags & 0x00FC_FFFF, size: size)
        case .popf:
            let value = try pop(size: size)
            var writable: UInt64 = 0x24_7FD5
            if cpl > 0 { writable &= ~0x3000 }
            if cpl > iopl { writable &= ~Self.interruptFlag }
            if size == 2 { writable &= 0xFFFF }
            rflags = (rflags & ~writable) | (value & writable)
        case .sahf:
            setArithmeticFlags((registers[0] >> 8) & 0xD5, mask: 0xD5)
        case .lahf:
            writeRegister(16, size: 1, (rflags & 0xD5) | 2)
        case .convertA:
            switch size {
            case 2: writeRegister(0, size: 2, Self.signExtend(registers[0], size: 1) & 0xFFFF)
            case 4: writeRegister(0, size: 4, Self.signExtend(registers[0], size: 2) & 0xFFFF_FFFF)
            default: registers[0] = Self.signExtend(registers[0], size: 4)
            }
        case .convertD:
            let negative = registers[0] & Self.signBit(size: size) != 0
            writeRegister(2, size: size, negative ? mask : 0)
        case .jmpRm:
            rip = linearCodeAddress(try readOperand(instruction, size: size))
        default:
            try executeMoreRarely(instruction)
        }
    }

    @inline(never)
    func executeMoreRarely(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        switch instruction.pointee.op {
        case .callRm:
            let target = try readOperand(instruction, size: size)
            try push(instructionPointer, size: size)
            rip = linearCodeAddress(target)
        case .loop:
            let counterSize: UInt8 = instruction.pointee.addressSize
            let counter = (readRegister(1, size: counterSize) &- 1) & Self.mask(size: counterSize)
            writeRegister(1, size: counterSize, counter)
            let taken: Bool
            switch instruction.pointee.sub {
            case 0: taken = counter != 0 && !zero
            case 1: taken = counter != 0 && zero
            default: taken = counter != 0
            }
            if taken { rip = instruction.pointee.immediate }
        case .jrcxz:
            if readRegister(1, size: instruction.pointee.addressSize) == 0 { rip = instruction.pointee.immediate }
        case .bitTestReg, .bitTestImm:
            try bitTest(instruction)
        case .bsf, .bsr:
            let value = try readOperand(instruction, size: size)
            if value == 0 {
                setArithmeticFlags(Self.zeroFlag, mask: Self.arithmeticFlags)
            } else {
                let bit = instruction.pointee.op == .bsf ? value.trailingZeroBitCount : 63 - value.leadingZeroBitCount
                writeRegister(instruction.pointee.reg, size: size, UInt64(bit))
                setArithmeticFlags(0, mask: Self.arithmeticFlags)
            }
        case .tzcnt, .lzcnt, .popcnt:
            let value = try readOperand(instruction, size: size)
            let bits = Int(size) * 8
            let result: Int
            switch instruction.pointee.op {
            case .tzcnt: result = value == 0 ? bits : value.trailingZeroBitCount
            case .lzcnt: result = value.leadingZeroBitCount - (64 - bits)
            default: result = value.nonzeroBitCount
            }
            writeRegister(instruction.pointee.reg, size: size, UInt64(result))
            var flags: UInt64 = result == 0 ? Self.zeroFlag : 0
            if instruction.pointee.op == .popcnt {
                flags = value == 0 ? Self.zeroFlag : 0
            } else if value == 0 {
                flags |= Self.carryFlag
            }
            setArithmeticFlags(flags, mask: Self.arithmeticFlags)
        case .bswap:
            let value = readRegister(instruction.pointee.reg, size: size)
            switch size {
            case 8: writeRegister(instruction.pointee.reg, size: 8, value.byteSwapped)
            case 4: writeRegister(instruction.pointee.reg, size: 4, UInt64(UInt32(truncatingIfNeeded: value).byteSwapped))
            default: writeRegister(instruction.pointee.reg, size: 2, 0)  // undefined; zero, as hardware does
            }
        case .movs, .cmps, .stos, .lods, .scas:
            try stringOperation(instruction)
        case .ins, .outs:
            try stringPortIO(instruction)
        case .leave:
            let frame = registers[5] & stackPointerMask
            let value = try read(stackAddress(frame), size: size)
            setStackPointer((frame &+ UInt64(size)) & stackPointerMask)
            writeRegister(5, size: size, value)
        case .enter:
            guard instruction.pointee.sub == 0 else { throw unimplementedInstruction(instruction) }
            try push(registers[5], size: size)
            let frame = registers[4]
            writeRegister(5, size: size, frame)
            setStackPointer((frame &- instruction.pointee.immediate) & stackPointerMask)
        case .clc: setArithmeticFlags(0, mask: Self.carryFlag)
        case .stc: setArithmeticFlags(Self.carryFlag, mask: Self.carryFlag)
        case .cmc: setArithmeticFlags(carry ? 0 : Self.carryFlag, mask: Self.carryFlag)
        case .cld: otherFlags &= ~Self.directionFlag
        case .std: otherFlags |= Self.directionFlag
        case .hostFloat:
            try executeHostFloat(instruction)
        case .fxsave, .fxrstor, .ldmxcsr, .stmxcsr, .fwait, .maskMove:
            try executeFloatState(instruction)
        case .undefined:
            throw .exception(vector: X86Vector.invalidOpcode, errorCode: nil)
        case .unimplemented:
            throw unimplementedInstruction(instruction)
        default:
            try executeSystem(instruction)
        }
    }

    /// Records an instruction the interpreter does not implement and returns the #UD to raise.
    func unimplementedInstruction(_ instruction: UnsafeMutablePointer<Instruction>) -> X86Fault {
        let start = rip &- UInt64(instruction.pointee.length)
        if unimplemented.count < 16 {
            // The decoder stops where it gave up, so show a few bytes from rip whatever it consumed.
            let bytes = peekCode(at: start, count: max(8, min(15, Int(instruction.pointee.length))))
            let entry =
                "rip 0x\(String(start, radix: 16)): \(bytes.map { String(format2: UInt64($0)) }.joined(separator: " ")) (bytes from rip)"
            if !unimplemented.contains(entry) { unimplemented.append(entry) }
        }
        return .exception(vector: X86Vector.invalidOpcode, errorCode: nil)
    }

}

extension String {
    /// Two lower-case hex digits.
    init(format2 byte: UInt64) {
        let text = String(byte & 0xFF, radix: 16)
        self = text.count == 1 ? "0" + text : text
    }
}
