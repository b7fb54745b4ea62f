import Foundation
import Results

/// The workload programs of the Linux guest — Debian's `fio` and `iperf3`, installed on the host
/// by `scripts/setup --with-linux` (the native runs use the same binaries) — copied into the
/// initramfs at their own paths with every shared library `ldd` names and the dynamic loader, so
/// they run unchanged in the guest. A program the host lacks is left out; the workloads that need
/// it are then skipped with that reason.
public struct LinuxGuestPrograms: Sendable {
    public static let names = ["fio", "iperf3"]

    /// A program and the files it needs, as host paths (the guest gets them at the same paths).
    struct Program: Sendable {
        let name: String
        let path: String
        let libraries: [String]
    }

    let programs: [Program]

    /// Finds each program on the host and its libraries (`ldd`). Never throws: a program that
    /// cannot be resolved is left out.
    static func resolve() async -> LinuxGuestPrograms {
        var found: [Program] = []
        for name in names {
            guard let path = ProcessRunner.find(name),
                let ldd = try? LinuxGuestBuilder.tool("ldd"),
                let output = try? await ProcessRunner.run(ldd, [path], timeout: 60), output.succeeded
            else { continue }
            found.append(Program(name: name, path: path, libraries: libraries(inLDDOutput: output.standardOutput)))
        }
        return LinuxGuestPrograms(programs: found)
    }

    /// The absolute paths in `ldd` output: "libaio.so.1 => /lib/x86_64-linux-gnu/libaio.so.1
    /// (0x...)" and the loader's "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
    static func libraries(inLDDOutput lines: [String]) -> [String] {
        lines.compactMap { line in
            let words = line.split(whereSeparator: \.isWhitespace).map(String.init)
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count, words[arrow + 1].hasPrefix("/") {
                return words[arrow + 1]
            }
            return words.first.flatMap { $0.hasPrefix("/") ? $0 : nil }
        }
    }

    /// What identifies this set of programs in the guest image's hash.
    func addIdentity(to hash: inout FNV1a64) {
        for program in programs {
            hash.add(program.name)
            for file in [program.path] + program.libraries {
                hash.add(file)
                let size = ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int) ?? 0
                hash.add(String(size))
            }
        }
    }

    /// Adds every program and library (symlinks followed: the guest gets the files), and the
    /// folders on the way to them that `existing` does not have yet.
    func add(to archive: inout CPIOArchive, folders existing: inout Set<String>) throws {
        var added = Set<String>()
        for program in programs {
            for file in [program.path] + program.libraries where !added.contains(file) {
                added.insert(file)
                let relative = String(file.drop { $0 == "/" })
                let parts = relative.split(separator: "/").dropLast()
                for depth in parts.indices.map({ $0 + 1 }) {
                    let folder = parts.prefix(depth).joined(separator: "/")
                    if existing.insert(folder).inserted { archive.add(folder, .directory) }
                }
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file).resolvingSymlinksInPath())
                archive.add(relative, .file(executable: true), data: [UInt8](bytes))
            }
        }
    }
}
