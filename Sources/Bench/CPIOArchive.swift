import Foundation

/// A cpio archive in the "newc" format, the one the Linux kernel unpacks as an initramfs
/// (Documentation/driver-api/early-userspace/buffer-format.rst): per entry a 110-byte ASCII
/// header of hexadecimal fields, the NUL-terminated name and the data, each padded to 4 bytes,
/// ended by "TRAILER!!!". No library hvbench keeps writes it, and the format is this small.
struct CPIOArchive {
    private(set) var bytes: [UInt8] = []
    private var nextInode: UInt32 = 1

    enum Kind {
        case directory
        case file(executable: Bool)
        case symlink(target: String)
    }

    mutating func add(_ path: String, _ kind: Kind, data: [UInt8] = []) {
        let mode: UInt32
        var content = data
        switch kind {
        case .directory: mode = 0o040755
        case .file(let executable): mode = executable ? 0o100755 : 0o100644
        case .symlink(let target):
            mode = 0o120777
            content = Array(target.utf8)
        }
        let name = Array(path.utf8) + [0]
        let fields: [UInt32] = [
            nextInode, mode, 0, 0, kindIsDirectory(kind) ? 2 : 1, 0, UInt32(content.count), 0, 0, 0, 0, UInt32(name.count), 0,
        ]
        nextInode += 1
        bytes += Array("070701".utf8) + fields.flatMap { Array(String(format: "%08X", $0).utf8) }
        bytes += name
        pad()
        bytes += content
        pad()
    }

    /// The archive, closed by its trailer.
    mutating func finish() -> [UInt8] {
        add("TRAILER!!!", .file(executable: false))
        return bytes
    }

    private func kindIsDirectory(_ kind: Kind) -> Bool {
        if case .directory = kind { return true }
        return false
    }

    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }
}
