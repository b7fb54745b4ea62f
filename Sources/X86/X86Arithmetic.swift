/// Multiply, divide, shifts, rotates, bit tests and the string instructions' helpers.
extension X86CPU {
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
        if instruction.pointee.locked { beginLockedAccess(value) }
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
        let bulk = repeated && (op == .movs || op == .stos) && delta == UInt64(size) && is64BitCode && addressMask == ~0
        while true {
            if repeated {
                if registers[1] & addressMask == 0 { return }
                if remaining == 0 {
                    rip = rip &- UInt64(instruction.pointee.length)
                    return
                }
                if bulk, case let done = bulkString(op, size: size, sourceBase: sourceBase, limit: remaining), done > 0 {
                    remaining -= done
                    continue
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
