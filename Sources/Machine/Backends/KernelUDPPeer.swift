import Foundation
import Synchronization

/// The far end of a TAP benchmark: an ordinary UDP socket of the host kernel, bound inside
/// hvbench's network namespace, so the host's network stack is part of every measurement.
/// As a sink it checks each datagram's sequence number and payload pattern; as an echo it
/// sends each datagram back to where it came from; as a source it sends numbered datagrams to
/// the guest as fast as the link takes them (a blocking socket: when the TAP's queue backs up,
/// the kernel holds the sender back instead of dropping, as a TCP-less UDP_STREAM would not).
///
/// Payload: bytes 0-3 sequence number, 4-7 payload length (both little-endian), then the
/// in-VMM peer's frame pattern at the same frame offsets: payload byte i is frame byte 42 + i
/// (after Ethernet, IPv4 and UDP headers), (sequence * 31 + (42 + i) * 7 + 0x5A) & 0xFF, so the
/// guest fills both kinds of frame from one template (Workloads/guest/common/udp_frames.c).
public final class KernelUDPPeer: @unchecked Sendable {
    public enum Mode: String, Sendable { case sink, echo, source }

    public struct Counts: Equatable, Sendable {
        public var datagrams = 0
        public var bytes = 0
        /// Sequence numbers skipped (datagrams lost on the way) and ones that came back in time.
        public var missing = 0
        public var outOfOrder = 0
        public var echoed = 0
        public var errors: [String] = []
    }

    public let mode: Mode
    public let address: IPv4Address
    public let port: UInt16
    private let descriptor: Int32
    private let counts = Mutex(Counts())
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private var nextSequence: UInt32 = 0

    /// Where a source sends, and how long its payloads are.
    private let destination: (address: IPv4Address, port: UInt16)?
    private let payloadLength: Int
    private let fallsSilentAfter: Int?
    private let held = Atomic<Bool>(false)

    /// Binds a UDP socket to `address`:`port` inside `namespace` and starts serving it.
    /// - Parameters:
    ///   - destination: a source's target (the guest's address and port).
    ///   - payloadLength: a source's payload bytes (8 to 65507).
    ///   - fallsSilentAfter: a peer that stops answering (echo) or sending (source) after this
    ///     many datagrams, as a hung or crashed far end would: for the tests that the benchmark
    ///     then fails with the reason instead of hanging.
    ///   - startsHeld: a source sends nothing until `release()`: a TAP with no reader yet holds
    ///     what is sent to it in its queue, and hands it on later with the UDP checksum unfinished
    ///     (measured with QEMU attaching to a persistent TAP).
    public init(
        namespace: NetworkNamespace, mode: Mode, address: IPv4Address, port: UInt16,
        destination: (address: IPv4Address, port: UInt16)? = nil, payloadLength: Int = 1472, fallsSilentAfter: Int? = nil,
        startsHeld: Bool = false
    ) throws {
        guard mode != .source || destination != nil else { throw NetworkNamespace.Failure("a UDP source needs a destination") }
        guard (8...65507).contains(payloadLength) else {
            throw NetworkNamespace.Failure("UDP payload of \(payloadLength) bytes is out of range 8...65507")
        }
        self.mode = mode
        self.address = address
        self.port = port
        self.destination = destination
        self.payloadLength = payloadLength
        self.fallsSilentAfter = fallsSilentAfter
        held.store(startsHeld, ordering: .relaxed)
        descriptor = try namespace.perform {
            let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else {
                throw NetworkNamespace.Failure("cannot open a UDP socket: \(String(cString: strerror(errno)))")
            }
            // A sink that falls behind a burst loses datagrams in its receive buffer, as UDP
            // does; a large buffer (as netperf's UDP_STREAM sets) keeps that to real overload.
            var bufferBytes: Int32 = Self.receiveBufferBytes
            if setsockopt(descriptor, SOL_SOCKET, SO_RCVBUFFORCE, &bufferBytes, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &bufferBytes, socklen_t(MemoryLayout<Int32>.size))
            }
            // A source blocks while the link backs up, but wakes to notice stop().
            var timeout = timeval(tv_sec: 0, tv_usec: 50_000)
            _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var socketAddress = Self.socketAddress(address, port)
            let bound = withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else {
                let reason = String(cString: strerror(errno))
                Glibc.close(descriptor)
                throw NetworkNamespace.Failure("cannot bind UDP \(address):\(port): \(reason)")
            }
            return descriptor
        }
        let thread = Thread { [self] in mode == .source ? produce() : serve() }
        thread.name = "hvbench-udp-\(mode.rawValue)"
        thread.start()
    }

    deinit { Glibc.close(descriptor) }

    /// The socket's receive buffer (SO_RCVBUFFORCE where the process may, else SO_RCVBUF's limit).
    public static let receiveBufferBytes: Int32 = 64 << 20

    static func socketAddress(_ address: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        socketAddress.sin_addr.s_addr = address.value.bigEndian
        return socketAddress
    }

    /// Where the payload starts in its Ethernet frame.
    public static let frameOffset = IPv4Packets.udpOverhead

    @inline(__always)
    static func patternByte(sequence: UInt32, index: Int) -> UInt8 {
        NetworkPeer.patternByte(sequence: sequence, index: frameOffset + index)
    }

    /// The payload of datagram `sequence`, `length` bytes (at least 8).
    public static func payload(sequence: UInt32, length: Int) -> [UInt8] {
        var payload = [UInt8](repeating: 0, count: max(length, 8))
        for index in 0..<4 { payload[index] = UInt8(truncatingIfNeeded: sequence >> (8 * index)) }
        for index in 0..<4 { payload[4 + index] = UInt8(truncatingIfNeeded: UInt32(payload.count) >> (8 * index)) }
        for index in 8..<payload.count { payload[index] = patternByte(sequence: sequence, index: index) }
        return payload
    }

    /// The sequence number of a valid payload, or why it is not one.
    public static func check(_ payload: UnsafeRawBufferPointer) -> Result<UInt32, NetworkNamespace.Failure> {
        guard payload.count >= 8 else { return .failure(.init("a \(payload.count)-byte payload")) }
        let sequence = UInt32(littleEndian: payload.loadUnaligned(as: UInt32.self))
        let length = Int(UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        guard length == payload.count else {
            return .failure(.init("datagram \(sequence): says \(length) bytes, \(payload.count) arrived"))
        }
        for index in 8..<payload.count where payload[index] != patternByte(sequence: sequence, index: index) {
            return .failure(.init("datagram \(sequence): byte \(index) is corrupt"))
        }
        return .success(sequence)
    }

    public var snapshot: Counts { counts.withLock { $0 } }

    /// Lets a source created with `startsHeld` send. Idempotent; any thread.
    public func release() { held.store(false, ordering: .releasing) }

    /// Stops serving (within a poll interval) and waits for the thread to end. Idempotent.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }

    /// The source's loop: numbered datagrams until stopped; a send that times out is retried
    /// with the same number, so the guest sees every number in order unless the kernel drops one.
    private func produce() {
        defer { finished.signal() }
        guard let destination else { return }
        var target = Self.socketAddress(destination.address, destination.port)
        let templates = (0..<256).map { Self.payload(sequence: UInt32($0), length: payloadLength) }
        var payload = [UInt8](repeating: 0, count: payloadLength)
        var sequence: UInt32 = 0
        while !stopping.load(ordering: .acquiring) {
            if held.load(ordering: .acquiring) {
                usleep(1000)
                continue
            }
            if let limit = fallsSilentAfter, Int(sequence) >= limit {
                usleep(10_000)
                continue
            }
            payload = templates[Int(sequence & 0xFF)]
            for index in 0..<4 { payload[index] = UInt8(truncatingIfNeeded: sequence >> (8 * index)) }
            let sent = payload.withUnsafeBytes { bytes in
                withUnsafePointer(to: &target) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(descriptor, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            if sent == payload.count {
                counts.withLock {
                    $0.datagrams += 1
                    $0.bytes += sent
                }
                sequence &+= 1
            } else if sent < 0 && errno != EAGAIN && errno != ENOBUFS && errno != EINTR {
                let reason = String(cString: strerror(errno))
                counts.withLock { if $0.errors.count < 16 { $0.errors.append("send failed: \(reason)") } }
                usleep(1000)
            }
        }
    }

    private func serve() {
        defer { finished.signal() }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopping.load(ordering: .acquiring) {
            var waiting = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 50) > 0 else { continue }
            var sender = sockaddr_in()
            var senderLength = socklen_t(MemoryLayout<sockaddr_in>.size)
            let count = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &sender) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, &senderLength)
                    }
                }
            }
            guard count >= 0 else { continue }
            let checked = buffer.withUnsafeBytes { Self.check(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            var echoed = false
            let silent = fallsSilentAfter.map { limit in counts.withLock { $0.datagrams >= limit } } ?? false
            if mode == .echo && !silent {
                let sent = buffer.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &sender) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(descriptor, bytes.baseAddress, count, 0, $0, senderLength)
                        }
                    }
                }
                echoed = sent == count
            }
            counts.withLock { counts in
                counts.datagrams += 1
                counts.bytes += count
                if echoed { counts.echoed += 1 }
                switch checked {
                case .failure(let failure):
                    if counts.errors.count < 16 { counts.errors.append(failure.description) }
                case .success(let sequence):
                    if sequence >= nextSequence {
                        counts.missing += Int(sequence - nextSequence)
                        nextSequence = sequence &+ 1
                    } else {
                        counts.outOfOrder += 1
                    }
                }
            }
        }
    }
}
