import CHostNet
import Foundation

/// A TAP interface's descriptor (`IFF_TAP | IFF_NO_PI`, non-blocking): each read is one Ethernet
/// frame the host kernel sends towards the guest, each write one frame from the guest. Created
/// inside a `NetworkNamespace`; closing the descriptor removes the interface.
public final class TAPDevice: @unchecked Sendable {
    public let name: String
    private let file: HostDescriptor
    /// The descriptor, for waiting on readability (an I/O thread's epoll); reads and writes
    /// stay here.
    public var descriptor: Int32 { file.rawValue }
    /// The largest frame a read can return (MTU 1500 plus the Ethernet header).
    public static let maximumFrame = 1514

    init(name: String, file: HostDescriptor) {
        self.name = name
        self.file = file
    }

    func setPersistent() -> Int32 { chn_set_tap_persistent(descriptor, 1) }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Hands a frame to the host kernel. false when the kernel's queue is full (try again).
    public func send(_ frame: [UInt8]) throws -> Bool { try frame.withUnsafeBytes { try send($0) } }

    /// The same, from the device model's buffer (no copy on the transmit path).
    public func send(_ frame: UnsafeRawBufferPointer) throws -> Bool {
        let written = write(descriptor, frame.baseAddress, frame.count)
        if written == frame.count { return true }
        if written < 0 && (errno == EAGAIN || errno == ENOBUFS) { return false }
        throw Failure(
            description: written < 0
                ? "TAP \(name): write failed: \(String(cString: strerror(errno)))"
                : "TAP \(name): wrote \(written) of \(frame.count) bytes")
    }

    /// The next frame the host kernel sent, or nil if none arrives within `timeout` seconds.
    public func receive(timeout: Double) throws -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            // One allocation per frame: read straight into the array that is returned.
            var count = 0
            let frame = [UInt8](unsafeUninitializedCapacity: Self.maximumFrame + 64) { buffer, initialized in
                count = read(descriptor, buffer.baseAddress, buffer.count)
                initialized = max(count, 0)
            }
            if count >= 0 { return frame }
            guard errno == EAGAIN || errno == EINTR else {
                throw Failure(description: "TAP \(name): read failed: \(String(cString: strerror(errno)))")
            }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return nil }
            var waiting = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&waiting, 1, Int32(min(left * 1000, 1000)) + 1)
        }
    }
}
