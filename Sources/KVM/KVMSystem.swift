import CKVM
import Glibc
import Machine

public enum KVMError: Error, CustomStringConvertible {
    /// /dev/kvm cannot be used at all; the text says why and what to do.
    case unavailable(String)
    case call(String, errno: Int32)

    public var description: String {
        switch self {
        case .unavailable(let why): return why
        case .call(let what, let errno): return "\(what) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        }
    }
}

/// KVM's supported CPUID list (C memory from `ckvm_supported_cpuid`), freed with its system.
final class SupportedCPUID: Sendable {
    nonisolated(unsafe) let list: UnsafeMutableRawPointer
    init(_ list: UnsafeMutableRawPointer) { self.list = list }
    deinit { free(list) }
}

/// An open /dev/kvm: the system-level file descriptor VMs are created from.
public final class KVMSystem: Sendable {
    public static let devicePath = "/dev/kvm"
    public static let expectedAPIVersion: Int32 = 12

    let descriptor: KVMDescriptor
    public var fileDescriptor: Int32 { descriptor.rawValue }
    public let vcpuMappingSize: Int
    /// Whether this host's KVM emulates the guest's CPL0 code instruction by instruction
    /// (`kvm_pvm`, software-assisted) instead of running it under VT-x/AMD-V.
    public let emulatesGuestKernel: Bool
    /// CPUID leaf 1 ECX bits KVM reports but cannot give the guest here: kvm_pvm runs the
    /// guest kernel through KVM's instruction emulator, which has no CMPXCHG16B (bit 13). With it
    /// a Debian kernel died in SLUB's double-word cmpxchg ("KVM internal error (suberror 1)");
    /// without it Linux takes its other path. (XSAVE, which that emulator lacks too, cannot be
    /// hidden this way: measured, the guest still sees bit 26 after KVM_SET_CPUID2 clears it, so
    /// a Linux guest there needs `noxsave` on its command line.)
    public var hiddenLeaf1ECX: UInt32 { emulatesGuestKernel ? 1 << 13 : 0 }
    /// KVM_GET_SUPPORTED_CPUID's list, asked once: every vCPU gets a copy (see `KVMEngine`).
    let supportedCPUID: SupportedCPUID
    /// The paravirtual CPU features this host's KVM offers a guest (leaf 0x40000001).
    public var paravirtualFeatures: KVMParavirtualFeatures {
        KVMParavirtualFeatures(rawValue: ckvm_paravirtual_features(supportedCPUID.list))
    }
    /// Whether the in-kernel local APIC has the TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER).
    let hasTSCDeadlineTimer: Bool
    /// The page of the vCPU mapping that holds KVM's coalesced-MMIO ring (0: none).
    let coalescedMMIOPage: Int

    public init(path: String = KVMSystem.devicePath) throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            let error = errno
            switch error {
            case ENOENT:
                throw KVMError.unavailable(
                    "\(path) does not exist: no KVM module is loaded on this host (hardware-assist and paravirt-io modes need KVM; full-emulation and native still run)"
                )
            case EACCES, EPERM:
                throw KVMError.unavailable(
                    "\(path) exists but is not accessible to this user: run as root or join the 'kvm' group")
            default:
                throw KVMError.unavailable("cannot open \(path): \(String(cString: strerror(error)))")
            }
        }
        let descriptor = KVMDescriptor(taking: fd)
        let version = try descriptor.call("KVM_GET_API_VERSION", CKVM_GET_API_VERSION)
        guard version == Self.expectedAPIVersion else {
            throw KVMError.unavailable("\(path) speaks KVM API \(version); hvbench needs \(Self.expectedAPIVersion)")
        }
        vcpuMappingSize = Int(try descriptor.call("KVM_GET_VCPU_MMAP_SIZE", CKVM_GET_VCPU_MMAP_SIZE))
        emulatesGuestKernel = Self.moduleEmulatesGuestKernel
        guard let list = ckvm_supported_cpuid(fd) else { throw KVMError.call("KVM_GET_SUPPORTED_CPUID", errno: errno) }
        supportedCPUID = SupportedCPUID(list)
        hasTSCDeadlineTimer =
            ((try? descriptor.call("KVM_CHECK_EXTENSION", CKVM_CHECK_EXTENSION, value: CKVM_CAP_TSC_DEADLINE_TIMER)) ?? 0) > 0
        coalescedMMIOPage = Int(
            (try? descriptor.call("KVM_CHECK_EXTENSION", CKVM_CHECK_EXTENSION, value: CKVM_CAP_COALESCED_MMIO)) ?? 0)
        self.descriptor = descriptor
    }

    /// The TSC rate KVM gives a new vCPU, in kHz: asked of a VM (KVM_CAP_VM_TSC_CONTROL kernels
    /// answer on the VM descriptor), else of one bare vCPU. No guest memory, no engine.
    public func defaultTSCKilohertz() throws(KVMError) -> Int {
        let vm = try descriptor.create("KVM_CREATE_VM", CKVM_CREATE_VM)
        if let khz = try? vm.call("KVM_GET_TSC_KHZ", CKVM_GET_TSC_KHZ), khz > 0 { return Int(khz) }
        let vcpu = try vm.create("KVM_CREATE_VCPU", CKVM_CREATE_VCPU, value: 0)
        return Int(try vcpu.call("KVM_GET_TSC_KHZ", CKVM_GET_TSC_KHZ))
    }

    /// Whether the loaded KVM module is kvm_pvm, which emulates a guest's CPL0 code.
    public static var moduleEmulatesGuestKernel: Bool { access("/sys/module/kvm_pvm", F_OK) == 0 }

    /// nil when KVM can be used here, otherwise the reason it cannot.
    public static func unavailabilityReason() -> String? {
        do {
            _ = try KVMSystem()
            return nil
        } catch {
            return "\(error)"
        }
    }
}

/// KVM's paravirtual CPU features, the bits of CPUID 0x40000001 EAX (Documentation/virt/kvm/x86/cpuid.rst).
public struct KVMParavirtualFeatures: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Each feature's bit and the name the kernel's documentation gives it (without KVM_FEATURE_).
    public static let named: [(bit: Int, name: String)] = [
        (0, "clocksource"), (1, "nop-io-delay"), (2, "mmu-op"), (3, "clocksource2"), (4, "async-pf"), (5, "steal-time"),
        (6, "pv-eoi"), (7, "pv-unhalt"), (9, "pv-tlb-flush"), (10, "async-pf-vmexit"), (11, "pv-send-ipi"),
        (12, "poll-control"), (13, "pv-sched-yield"), (14, "async-pf-int"), (15, "msi-ext-dest-id"),
        (16, "hc-map-gpa-range"), (17, "migration-control"), (24, "clocksource-stable"),
    ]

    /// The names of the features set, in bit order; unknown bits as "bit N".
    public var names: [String] {
        (0..<32).filter { rawValue & (1 << $0) != 0 }.map { bit in
            Self.named.first { $0.bit == bit }?.name ?? "bit \(bit)"
        }
    }
}
