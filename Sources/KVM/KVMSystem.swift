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

/// An open /dev/kvm: the system-level file descriptor VMs are created from.
public final class KVMSystem: Sendable {
    public static let devicePath = "/dev/kvm"
    public static let expectedAPIVersion: Int32 = 12

    let descriptor: KVMDescriptor
    public var fileDescriptor: Int32 { descriptor.rawValue }
    public let vcpuMappingSize: Int

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
