extension X86CPU {
    /// Runs guest instructions until one needs the VMM, the guest halts or shuts down, or
    /// `maxInstructions` retire / `requestStop()` is called (`.interrupted`).
    public func run(maxInstructions: Int = .max) -> X86Stop {
        var budget = maxInstructions
        while budget > 0 {
            let chunk = min(budget, 8192)
            for _ in 0..<chunk {
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
        return (try read(address, size: size), address)
    }

    @inline(__always)
    func storeDestination(
        _ instruction: UnsafeMutablePointer<Instruction>, address: UInt64, size: UInt8, _ value: UInt64
    ) throws(X86Fault) {
        if instruction.pointee.isRegister {
            writeRegister(instruction.pointee.rm, size: size, value)
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

    @inline(__always) var stackPointerMask: UInt64 { is64BitCode ? ~0 : 0xFFFF_FFFF }

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
            try push(rip, size: size)
            rip = instruction.pointee.immediate
        case .ret:
            let target = try pop(size: size)
            if instruction.pointee.immediate != 0 {
                setStackPointer((registers[4] &+ instruction.pointee.immediate) & stackPointerMask)
            }
            rip = target
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
        case .nop, .pause:
            break
        default:
            try executeLessCommon(instruction)
        }
    }

    @inline(never)
    func executeLessCommon(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
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
                if !instruction.pointee.isRegister { try write(target, size: size, current) }
                writeRegister(0, size: size, current)
            }
            setFlags(.sub, accumulator, current, (accumulator &- current) & mask, size: size)
        case .xadd:
            let source = readRegister(instruction.pointee.reg, size: size)
            let (current, target) = try loadDestination(instruction, size: size)
            let sum = (current &+ source) & mask
            // Memory is written first (it may fault); with two registers the destination is written last.
            if !instruction.pointee.isRegister { try write(target, size: size, sum) }
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
            rip = try readOperand(instruction, size: size)
        case .callRm:
            let target = try readOperand(instruction, size: size)
            try push(rip, size: size)
            rip = target
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

    // MARK: Multiply and divide

    func multiply(_ instruction: UnsafeMutablePointer<Instruction>, signed: Bool) throws(X86Fault) {
        let size = instruction.pointee.size
        let source = try readOperand(instruction, size: size)
        let mask = Self.mask(size: size)
        let accumulator = registers[0] & mask
        var low: UInt64
        var high: UInt64
        var overflow: Bool
        if size == 8 {
            if signed {
                let product = Int64(bitPattern: accumulator).multipliedFullWidth(by: Int64(bitPattern: source))
                low = product.low
                high = UInt64(bitPattern: product.high)
                overflow = product.high != (Int64(bitPattern: low) < 0 ? -1 : 0)
            } else {
                let product = accumulator.multipliedFullWidth(by: source)
                low = product.low
                high = product.high
                overflow = high != 0
            }
        } else {
            let bits = UInt64(size) * 8
            let full: UInt64
            if signed {
                full = UInt64(
                    bitPattern: Int64(bitPattern: Self.signExtend(accumulator, size: size))
                        &* Int64(bitPattern: Self.signExtend(source, size: size)))
                overflow = Self.signExtend(full & mask, size: size) != full
            } else {
                full = accumulator &* source
                overflow = full >> bits != 0
            }
            low = full & mask
            high = (full >> bits) & mask
        }
        switch size {
        case 1: writeRegister(0, size: 2, (high << 8) | low)
        default:
            writeRegister(0, size: size, low)
            writeRegister(2, size: size, high)
        }
        flagCarry = overflow
        setFlags(.mul, 0, 0, low, size: size)
    }

    func divide(_ instruction: UnsafeMutablePointer<Instruction>, signed: Bool) throws(X86Fault) {
        let size = instruction.pointee.size
        let divisor = try readOperand(instruction, size: size)
        let divideError = X86Fault.exception(vector: X86Vector.divide, errorCode: nil)
        guard divisor != 0 else { throw divideError }
        let mask = Self.mask(size: size)
        let bits = UInt64(size) * 8
        var quotient: UInt64
        var remainder: UInt64
        if size == 8 {
            let high = registers[2]
            let low = registers[0]
            if signed {
                let negativeDividend = Int64(bitPattern: high) < 0
                var magnitudeHigh = high
                var magnitudeLow = low
                if negativeDividend {
                    magnitudeLow = ~low &+ 1
                    magnitudeHigh = ~high &+ (magnitudeLow == 0 ? 1 : 0)
                }
                let negativeDivisor = Int64(bitPattern: divisor) < 0
                let magnitudeDivisor = negativeDivisor ? 0 &- divisor : divisor
                guard magnitudeHigh < magnitudeDivisor else { throw divideError }
                let (q, r) = magnitudeDivisor.dividingFullWidth((magnitudeHigh, magnitudeLow))
                if negativeDividend != negativeDivisor {
                    guard q <= 1 << 63 else { throw divideError }
                    quotient = 0 &- q
                } else {
                    guard q <= UInt64(Int64.max) else { throw divideError }
                    quotient = q
                }
                remainder = negativeDividend ? 0 &- r : r
            } else {
                guard high < divisor else { throw divideError }
                (quotient, remainder) = divisor.dividingFullWidth((high, low))
            }
        } else {
            let dividend: UInt64 =
                size == 1 ? registers[0] & 0xFFFF : ((registers[2] & mask) << bits) | (registers[0] & mask)
            if signed {
                let signedDividend = Int64(bitPattern: Self.signExtendBits(dividend, bits * 2))
                let signedDivisor = Int64(bitPattern: Self.signExtend(divisor, size: size))
                let (q, overflowed) = signedDividend.dividedReportingOverflow(by: signedDivisor)
                guard !overflowed else { throw divideError }
                let limit = Int64(1) << (bits - 1)
                guard q >= -limit && q < limit else { throw divideError }
                quotient = UInt64(bitPattern: q) & mask
                remainder =
                    UInt64(bitPattern: signedDividend.remainderReportingOverflow(dividingBy: signedDivisor).partialValue) & mask
            } else {
                let q = dividend / divisor
                guard q <= mask else { throw divideError }
                quotient = q
                remainder = dividend % divisor
            }
        }
        if size == 1 {
            writeRegister(0, size: 2, (remainder << 8) | (quotient & 0xFF))
        } else {
            writeRegister(0, size: size, quotient)
            writeRegister(2, size: size, remainder)
        }
    }

    // MARK: Shifts, rotates and bit tests

    /// shl/sal, shr and sar (kinds 4-7) by a masked, nonzero count; sets the lazy flags.
    @inline(__always)
    func logicalShift(_ kind: UInt8, _ value: UInt64, _ count: UInt64, size: UInt8) -> UInt64 {
        let mask = Self.mask(size: size)
        let result: UInt64
        switch kind {
        case 5:
            result = value >> count
            setFlags(.shr, value, count, result, size: size)
        case 7:
            let bits = UInt64(size) << 3
            result = UInt64(bitPattern: Int64(bitPattern: Self.signExtendBits(value, bits)) >> Int64(min(count, 63))) & mask
            setFlags(.sar, value, count, result, size: size)
        default:
            result = (value << count) & mask
            setFlags(.shl, value, count, result, size: size)
        }
        return result
    }

    func shift(_ instruction: UnsafeMutablePointer<Instruction>, count: UInt64) throws(X86Fault) {
        let size = instruction.pointee.size
        let (value, target) = try loadDestination(instruction, size: size)
        guard count != 0 else {
            // Flags unchanged, but a register destination is still written (zero-extending a 32-bit one).
            if instruction.pointee.isRegister { writeRegister(instruction.pointee.rm, size: size, value) }
            return
        }
        let kind = instruction.pointee.sub
        guard kind < 4 else {
            try storeDestination(instruction, address: target, size: size, logicalShift(kind, value, count, size: size))
            return
        }
        // Rotates change only CF and OF (OF is defined for 1-bit rotates only).
        let bits = UInt64(size) * 8
        let mask = Self.mask(size: size)
        let top = Self.signBit(size: size)
        var result = value
        var carryOut: Bool
        switch kind {
        case 0:
            let amount = count % bits
            if amount != 0 { result = ((value << amount) | (value >> (bits - amount))) & mask }
            carryOut = result & 1 != 0
        case 1:
            let amount = count % bits
            if amount != 0 { result = ((value >> amount) | (value << (bits - amount))) & mask }
            carryOut = result & top != 0
        default:
            // rcl/rcr rotate through CF: a (width + 1)-bit rotation, which may be a whole turn.
            let amount = count % (bits + 1)
            guard amount != 0 else {
                try storeDestination(instruction, address: target, size: size, value)
                return
            }
            let carryIn: UInt64 = carry ? 1 : 0
            if kind == 2 {
                result = ((value << amount) | (carryIn << (amount - 1)) | (amount > 1 ? value >> (bits + 1 - amount) : 0)) & mask
                carryOut = (value >> (bits - amount)) & 1 != 0
            } else {
                result =
                    ((value >> amount) | (carryIn << (bits - amount)) | (amount > 1 ? value << (bits + 1 - amount) : 0)) & mask
                carryOut = (value >> (amount - 1)) & 1 != 0
            }
        }
        // Left rotates: OF = new MSB xor CF; right rotates: OF = the two top bits of the result differ.
        let overflowOut =
            kind == 0 || kind == 2 ? (result & top != 0) != carryOut : (result & top != 0) != (result & (top >> 1) != 0)
        setArithmeticFlags(
            (carryOut ? Self.carryFlag : 0) | (overflowOut ? Self.overflowFlag : 0), mask: Self.carryFlag | Self.overflowFlag)
        try storeDestination(instruction, address: target, size: size, result)
    }

    func doubleShift(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        let op = instruction.pointee.op
        let rawCount = op == .shldImm || op == .shrdImm ? instruction.pointee.immediate : registers[1]
        let count = rawCount & (size == 8 ? 63 : 31)
        let (value, target) = try loadDestination(instruction, size: size)
        guard count != 0 else {
            if instruction.pointee.isRegister { writeRegister(instruction.pointee.rm, size: size, value) }
            return
        }
        let source = readRegister(instruction.pointee.reg, size: size)
        let bits = UInt64(size) * 8
        let mask = Self.mask(size: size)
        let top = Self.signBit(size: size)
        let result: UInt64
        let carryOut: Bool
        if op == .shldImm || op == .shldCL {
            result = ((value << count) | (source >> (bits &- count))) & mask
            carryOut = count <= bits && (value >> (bits - count)) & 1 != 0
        } else {
            result = ((value >> count) | (source << (bits &- count))) & mask
            carryOut = (value >> (count - 1)) & 1 != 0
        }
        var flags = resultFlags(result, size: size)
        if carryOut { flags |= Self.carryFlag }
        if (result & top) != (value & top) { flags |= Self.overflowFlag }
        setArithmeticFlags(flags, mask: Self.arithmeticFlags)
        try storeDestination(instruction, address: target, size: size, result)
    }

    func bitTest(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        let bits = UInt64(size) * 8
        var target: UInt64 = 0
        var bit: UInt64
        if instruction.pointee.op == .bitTestImm {
            bit = instruction.pointee.immediate & (bits - 1)
            if !instruction.pointee.isRegister { target = address(instruction) }
        } else {
            let offset = readRegister(instruction.pointee.reg, size: size)
            bit = offset & (bits - 1)
            if !instruction.pointee.isRegister {
                // A register bit offset addresses memory beyond the operand, signed.
                let signedOffset = Int64(bitPattern: Self.signExtend(offset, size: size))
                let step = (signedOffset >> Int64(bits.trailingZeroBitCount)) &* Int64(size)
                target = address(instruction) &+ UInt64(bitPattern: step)
                if instruction.pointee.addressSize == 4 && !is64BitCode { target &= 0xFFFF_FFFF }
            }
        }
        let value =
            instruction.pointee.isRegister ? readRegister(instruction.pointee.rm, size: size) : try read(target, size: size)
        let wasSet = (value >> bit) & 1 != 0
        let result: UInt64
        switch instruction.pointee.sub {
        case 1: result = value | (1 << bit)
        case 2: result = value & ~(1 << bit)
        case 3: result = value ^ (1 << bit)
        default: result = value
        }
        if instruction.pointee.sub != 0 { try storeDestination(instruction, address: target, size: size, result) }
        setArithmeticFlags(wasSet ? Self.carryFlag : 0, mask: Self.carryFlag)
    }

    // MARK: Strings

    @inline(__always) var iopl: Int { Int((otherFlags >> 12) & 3) }

    /// One `movs/cmps/stos/lods/scas`, or with a rep prefix up to 4096 elements; a longer
    /// repetition continues on the next step (the instruction is re-executed with the
    /// registers updated, as an interrupted rep instruction resumes).
    func stringOperation(_ instruction: UnsafeMutablePointer<Instruction>) throws(X86Fault) {
        let size = instruction.pointee.size
        let op = instruction.pointee.op
        let addressMask = Self.mask(size: instruction.pointee.addressSize)
        let delta = otherFlags & Self.directionFlag != 0 ? 0 &- UInt64(size) : UInt64(size)
        let repeated = instruction.pointee.repeatPrefix != 0
        let sourceSegment = instruction.pointee.segment == 0xFF ? (is64BitCode ? -1 : 3) : Int(instruction.pointee.segment)
        let sourceBase: UInt64 = sourceSegment < 0 ? 0 : segmentBases[sourceSegment]
        let destinationBase: UInt64 = is64BitCode ? 0 : segmentBases[0]
        var remaining = 4096
        while true {
            if repeated {
                if registers[1] & addressMask == 0 { return }
                if remaining == 0 {
                    rip = rip &- UInt64(instruction.pointee.length)
                    return
                }
                remaining -= 1
            }
            let source = ((registers[6] & addressMask) &+ sourceBase) & (is64BitCode ? ~0 : 0xFFFF_FFFF)
            let destination = ((registers[7] & addressMask) &+ destinationBase) & (is64BitCode ? ~0 : 0xFFFF_FFFF)
            var stop = false
            switch op {
            case .movs:
                try write(destination, size: size, try read(source, size: size))
                advance(6, by: delta, mask: addressMask)
                advance(7, by: delta, mask: addressMask)
            case .stos:
                try write(destination, size: size, registers[0])
                advance(7, by: delta, mask: addressMask)
            case .lods:
                let value = try read(source, size: size)
                writeRegister(0, size: size, value)
                advance(6, by: delta, mask: addressMask)
            case .cmps:
                let a = try read(source, size: size)
                let b = try read(destination, size: size)
                _ = alu(7, a, b, size: size)
                advance(6, by: delta, mask: addressMask)
                advance(7, by: delta, mask: addressMask)
                stop = true
            default:  // scas
                let b = try read(destination, size: size)
                _ = alu(7, readRegister(0, size: size), b, size: size)
                advance(7, by: delta, mask: addressMask)
                stop = true
            }
            guard repeated else { return }
            advance(1, by: ~0, mask: addressMask)  // rcx -= 1
            if stop {
                // repe stops on a difference, repne on a match.
                if instruction.pointee.repeatPrefix == 0xF3 ? !zero : zero { return }
            }
        }
    }

    @inline(__always)
    func advance(_ register: Int, by delta: UInt64, mask: UInt64) {
        registers[register] = (registers[register] & ~mask) | ((registers[register] &+ delta) & mask)
    }
}

extension String {
    /// Two lower-case hex digits.
    init(format2 byte: UInt64) {
        let text = String(byte & 0xFF, radix: 16)
        self = text.count == 1 ? "0" + text : text
    }
}
