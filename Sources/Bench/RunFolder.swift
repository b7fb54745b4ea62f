import Foundation
import Results

#if canImport(Glibc)
    import Glibc
#endif

/// The output folder of one run, checked before anything is measured: created if missing,
/// proven writable, and never mixed with an earlier run. A folder that holds an earlier run is
/// replaced only when the user asks (`--force`), and then only hvbench's own files go; a folder
/// holding anything else is never touched.
public enum RunFolder {
    /// Marks a folder as a hvbench run folder (written first, so it is also the writability probe).
    public static let marker = ".hvbench-run"
    /// Every entry a run (or `baseline check`) writes into its folder.
    public static let ownEntries: Set<String> = [
        marker, "results.json", "results.csv", "summary.md", "report.html", "logs", "disk.img", "compare.md",
        "compare-junit.xml",
    ]

    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// Makes `url` an empty, writable run folder, or says in plain words why it cannot be one.
    public static func prepare(_ url: URL, replacing: Bool) throws {
        let path = url.path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw Problem(description: "output folder \(path) exists and is not a folder")
            }
            let entries = try contents(of: path)
            if !entries.isEmpty {
                let foreign = entries.filter { !ownEntries.contains($0) }.sorted()
                let holdsRun = entries.contains(marker) || entries.contains("results.json")
                guard holdsRun, foreign.isEmpty else {
                    let named = foreign.isEmpty ? entries.sorted() : foreign  // hvbench files without a run are named too
                    let listed = named.prefix(5).joined(separator: ", ") + (named.count > 5 ? ", ..." : "")
                    throw Problem(
                        description:
                            "output folder \(path) is not empty and not only a hvbench run (it holds \(listed)); "
                            + "choose a new or empty folder")
                }
                guard replacing else {
                    throw Problem(
                        description:
                            "output folder \(path) already holds a run; pass --force to replace it, or choose another folder")
                }
                for entry in entries {
                    do { try FileManager.default.removeItem(atPath: (path as NSString).appendingPathComponent(entry)) } catch {
                        throw Problem(description: "cannot remove \(entry) from \(path) to replace the run: \(reason(error))")
                    }
                }
            }
        } else {
            do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
                throw Problem(description: "cannot create output folder \(path): \(reason(error))")
            }
        }
        do { try writeAtomically(Data("hvbench run folder\n".utf8), to: url.appendingPathComponent(marker)) } catch {
            throw Problem(description: "cannot write into output folder \(path): \(reason(error))")
        }
    }

    private static func contents(of path: String) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: path) } catch {
            throw Problem(description: "cannot read output folder \(path): \(reason(error))")
        }
    }

    /// The operating system's words for a Foundation file error ("Permission denied"), not a
    /// Cocoa error dump.
    public static func reason(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if nsError.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(nsError.code))) }
        if let posix = error as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
        return nsError.localizedDescription
    }
}
