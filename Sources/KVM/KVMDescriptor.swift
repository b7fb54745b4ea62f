import CKVM
import Glibc
import SystemPackage

/// A KVM file descriptor — /dev/kvm, a VM or a vCPU — with one owner that closes it, and the
/// one place where an ioctl's failure becomes an error naming the call. Non-copyable, so a
/// descriptor is closed exactly once, however construction of what holds it ends.
struct KVMDescriptor: ~Copyable, Sendable {
    let fileDescriptor: FileDescriptor

    /// Takes ownership of `raw` (from open or a creating ioctl).
    init(taking raw: Int32) { fileDescriptor = FileDescriptor(rawValue: raw) }

    var rawValue: Int32 { fileDescriptor.rawValue }

    deinit { try? fileDescriptor.close() }

    /// An ioctl whose argument is a value and whose result is a number (a new descriptor, a
    /// size, a version); a negative result throws with the call's name and errno.
    @discardableResult
    func call(_ name: String, _ request: UInt, value: UInt = 0) throws(KVMError) -> Int32 {
        let result = ckvm_ioctl_value(rawValue, request, value)
        guard result >= 0 else { throw .call(name, errno: errno) }
        return result
    }

    /// An ioctl that reads or writes a structure.
    func call<Argument: BitwiseCopyable>(_ name: String, _ request: UInt, _ argument: inout Argument) throws(KVMError) {
        guard ckvm_ioctl(rawValue, request, &argument) == 0 else { throw .call(name, errno: errno) }
    }

    /// An ioctl that creates a descriptor (a VM from /dev/kvm, a vCPU from a VM).
    func create(_ name: String, _ request: UInt, value: UInt = 0) throws(KVMError) -> KVMDescriptor {
        KVMDescriptor(taking: try call(name, request, value: value))
    }
}
