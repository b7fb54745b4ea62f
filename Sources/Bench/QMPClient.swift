import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A client of QEMU's machine protocol (QMP) over the Unix socket of `-qmp unix:PATH,server=on,
/// wait=off`: the greeting, `qmp_capabilities`, then one command at a time, events skipped. It
/// also knows which process is at the other end (SO_PEERCRED), so its memory can be read.
final class QMPClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private let descriptor: Int32
    private var buffer: [UInt8] = []
    /// The QEMU process serving the socket.
    let peerProcess: pid_t

    /// Connects (retrying while QEMU has not yet made the socket, up to `seconds`) and leaves
    /// capabilities negotiation done.
    init(path: String, seconds: Double) throws {
        let deadline = Date().addingTimeInterval(seconds)
        var connected: Int32 = -1
        while connected < 0 {
            connected = Self.connect(path)
            if connected < 0 {
                guard Date() < deadline else { throw Failure(description: "cannot connect to QEMU's QMP socket \(path)") }
                usleep(5_000)
            }
        }
        descriptor = connected
        // struct ucred (pid, uid, gid), which Glibc exports only with _GNU_SOURCE.
        var credentials: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        peerProcess = getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 ? credentials.pid : 0
        _ = try readMessage()  // {"QMP": {...}}
        _ = try execute("qmp_capabilities")
    }

    deinit { close(descriptor) }

    private static func connect(_ path: String) -> Int32 {
        let socket = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { return -1 }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(socket)
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            close(socket)
            return -1
        }
        return socket
    }

    /// Runs `command` and returns its "return" value; QEMU's "error" is thrown.
    @discardableResult
    func execute(_ command: String, arguments: [String: Any]? = nil) throws -> Any {
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        var data = try JSONSerialization.data(withJSONObject: message)
        data.append(0x0A)
        let sent = data.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == data.count else { throw Failure(description: "QMP \(command): the socket closed") }
        while true {
            let reply = try readMessage()
            if reply["event"] != nil { continue }
            if let error = reply["error"] as? [String: Any] {
                throw Failure(description: "QMP \(command): \(error["desc"] as? String ?? "\(error)")")
            }
            if let value = reply["return"] { return value }
        }
    }

    /// One JSON object (QEMU ends each with CRLF).
    private func readMessage() throws -> [String: Any] {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Data(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard !line.allSatisfy({ $0 == 0x0D || $0 == 0x20 }) else { continue }
                guard let object = try JSONSerialization.jsonObject(with: line) as? [String: Any] else {
                    throw Failure(description: "QMP sent something that is not a JSON object")
                }
                return object
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = recv(descriptor, &chunk, chunk.count, 0)
            guard count > 0 else { throw Failure(description: "QEMU closed its QMP socket") }
            buffer += chunk[..<count]
            guard buffer.count < 1 << 20 else { throw Failure(description: "QMP sent a line over 1 MiB") }
        }
    }
}
