/// The machine-specific registers the emulated CPU has; any other index is #GP, as on
/// hardware for an MSR that does not exist.
extension X86CPU {
    static let msrEFER: UInt32 = 0xC000_0080
    static let msrArchitectureCapabilities: UInt32 = 0x10A
    /// IA32_BIOS_SIGN_ID: the microcode revision (bits 63:32), which Linux's Intel set-up reads.
    static let msrMicrocodeSignature: UInt32 = 0x8B

    /// IA32_ARCH_CAPABILITIES (CPUID.7.EDX[29]): the emulated CPU is not affected by the
    /// speculative-execution flaws these bits rule out (Meltdown: RDCL_NO; L1TF's flush: SKIP_L1DFL;
    /// SSB_NO; MDS_NO; machine check on page size change: IF_PSCHANGE_MC_NO; TAA_NO; the MMIO
    /// stale-data family SBDR/FBSDP/PSDP; PBRSB_NO; GDS_NO; RFDS_NO). Its permission checks and
    /// buffers are the emulator's own code, which a guest's mitigations (page-table isolation,
    /// verw buffer clearing) could not change anyway; without these bits Linux would pay for them.
    static let architectureCapabilities: UInt64 =
        (1 << 0) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 13) | (1 << 14) | (1 << 15)
        | (1 << 24) | (1 << 26) | (1 << 27)

    func readMSR(_ index: UInt32) throws(X86Fault) -> UInt64 {
        switch index {
        case 0x10: return timestamp()
        case Self.msrArchitectureCapabilities: return Self.architectureCapabilities
        case Self.msrMicrocodeSignature: return 0  // no microcode: revision 0
        case 0x174: return msrSysenter[0]
        case 0x175: return msrSysenter[1]
        case 0x176: return msrSysenter[2]
        case 0x1A0: return msrMiscEnable
        case 0x277: return msrPAT
        case Self.msrEFER: return efer
        case 0xC000_0081: return msrSTAR
        case 0xC000_0082: return msrLSTAR
        case 0xC000_0083: return msrCSTAR
        case 0xC000_0084: return msrFMASK
        case 0xC000_0100: return segmentBases[4]
        case 0xC000_0101: return segmentBases[5]
        case 0xC000_0102: return msrKernelGSBase
        case 0xC000_0103: return msrTSCAux
        case _ where LocalAPIC.owns(msr: index): return try apicReadMSR(index)
        default: throw .exception(vector: X86Vector.generalProtection, errorCode: 0)
        }
    }

    func writeMSR(_ index: UInt32, _ value: UInt64) throws(X86Fault) {
        switch index {
        case Self.msrMicrocodeSignature: break  // software writes 0 before cpuid to have it refreshed
        case 0x174: msrSysenter[0] = value
        case 0x175: msrSysenter[1] = value
        case 0x176: msrSysenter[2] = value
        case 0x1A0: msrMiscEnable = value
        case 0x277: msrPAT = value
        case Self.msrEFER:
            guard value & ~0xD01 == 0 else { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
            // LMA is read-only: it follows LME when paging is turned on.
            efer = (value & ~0x400) | (efer & 0x400)
            flushTLB()
        case 0xC000_0081: msrSTAR = value
        case 0xC000_0082: msrLSTAR = value
        case 0xC000_0083: msrCSTAR = value
        case 0xC000_0084: msrFMASK = value & 0xFFFF_FFFF
        case 0xC000_0100: segmentBases[4] = value
        case 0xC000_0101: segmentBases[5] = value
        case 0xC000_0102: msrKernelGSBase = value
        case 0xC000_0103: msrTSCAux = value & 0xFFFF_FFFF
        case _ where LocalAPIC.owns(msr: index): try apicWriteMSR(index, value)
        default: throw .exception(vector: X86Vector.generalProtection, errorCode: 0)
        }
    }
}
