/// The other end of the guest's network link, inside the VMM: a sink that counts and verifies
/// what the guest transmits, a source that feeds it frames, and an echo for request/response.
///
/// Frames carry a pattern both sides can check (the guest's C code uses the same function):
/// bytes 0-13 Ethernet header (ethertype 0x88B5, "local experimental"), 14-17 sequence number,
/// 18-21 frame length, then byte i = (sequence * 31 + i * 7 + 0x5A) & 0xFF.
public final class NetworkPeer {
    public enum Mode: String, Sendable, CaseIterable { case sink, source, echo }

    public var mode: Mode
    public let sourceFrameLength: Int
    public private(set) var framesFromGuest = 0
    public private(set) var bytesFromGuest = 0
    public private(set) var framesToGuest = 0
    public private(set) var errors: [String] = []
    private var nextSourceSequence: UInt32 = 0
    private var echoQueue: [[UInt8]] = []

    public static let ethertype: [UInt8] = [0x88, 0xB5]
    public static let peerMAC: [UInt8] = [0x02, 0x68, 0x76, 0x62, 0x00, 0x01]
    public static let headerLength = 22

    public init(mode: Mode, sourceFrameLength: Int = 1514) {
        self.mode = mode
        self.sourceFrameLength = sourceFrameLength
    }

    @inline(__always)
    static func patternByte(sequence: UInt32, index: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: sequence &* 31 &+ UInt32(truncatingIfNeeded: index) &* 7 &+ 0x5A)
    }

    private func record(_ error: String) {
        if errors.count < 16 { errors.append(error) }
    }

    /// A frame the guest transmitted.
    public func received(_ frame: UnsafeRawBufferPointer) {
        framesFromGuest += 1
        bytesFromGuest += frame.count
        guard frame.count >= Self.headerLength, frame[12] == 0x88, frame[13] == 0xB5 else {
            record("frame \(framesFromGuest - 1): not a hvbench frame (\(frame.count) bytes)")
            return
        }
        let sequence = frame.loadUnaligned(fromByteOffset: 14, as: UInt32.self)
        let length = Int(frame.loadUnaligned(fromByteOffset: 18, as: UInt32.self))
        guard length == frame.count else {
            record("frame \(sequence): header says \(length) bytes, \(frame.count) arrived")
            return
        }
        for index in Self.headerLength..<frame.count where frame[index] != Self.patternByte(sequence: sequence, index: index) {
            record(
                "frame \(sequence): byte \(index) is 0x\(String(frame[index], radix: 16)), expected 0x\(String(Self.patternByte(sequence: sequence, index: index), radix: 16))"
            )
            return
        }
        if mode == .echo && echoQueue.count < 1024 { echoQueue.append(Array(frame)) }
    }

    /// Whether a frame is waiting for the guest.
    public var hasFrameForGuest: Bool { mode == .source || !echoQueue.isEmpty }

    /// Writes the next frame for the guest into `buffer`; returns its length, or nil if none is
    /// waiting or it does not fit (the frame then stays queued).
    public func frameForGuest(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        switch mode {
        case .sink: return nil
        case .echo:
            guard let frame = echoQueue.first, frame.count <= buffer.count else { return nil }
            echoQueue.removeFirst()
            buffer.copyBytes(from: frame)
            framesToGuest += 1
            return frame.count
        case .source:
            let length = sourceFrameLength
            guard length <= buffer.count else { return nil }
            Self.writeFrame(into: buffer, sequence: nextSourceSequence, length: length)
            nextSourceSequence &+= 1
            framesToGuest += 1
            return length
        }
    }

    /// Writes a broadcast frame with the pattern for `sequence` (the guest's check accepts it).
    public static func writeFrame(into buffer: UnsafeMutableRawBufferPointer, sequence: UInt32, length: Int) {
        for index in 0..<6 { buffer[index] = 0xFF }
        for index in 0..<6 { buffer[6 + index] = peerMAC[index] }
        buffer[12] = 0x88
        buffer[13] = 0xB5
        buffer.storeBytes(of: sequence.littleEndian, toByteOffset: 14, as: UInt32.self)
        buffer.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 18, as: UInt32.self)
        for index in headerLength..<length { buffer[index] = patternByte(sequence: sequence, index: index) }
    }

    public static func frame(sequence: UInt32, length: Int) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: length)
        frame.withUnsafeMutableBytes { writeFrame(into: $0, sequence: sequence, length: length) }
        return frame
    }
}
