import Foundation
import FuzzTargets

#if HVBENCH_LIBFUZZER
    import CFuzzerDriver
#endif

// Two builds of one program. Normally (`swift build`) it replays inputs through a target:
//     hvbench-fuzz TARGET FILE|DIR...
// exiting 1 and naming the file when a property fails. Built by scripts/fuzz with
// `-sanitize=fuzzer` and HVBENCH_LIBFUZZER defined, main hands over to libFuzzer's driver,
// which calls the entry points below; the target is chosen by $HVBENCH_FUZZ_TARGET.

nonisolated(unsafe) private var selected: (([UInt8]) -> FuzzProperty)?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
)
    -> Int32
{
    let name = ProcessInfo.processInfo.environment["HVBENCH_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.named(name) else {
        FileHandle.standardError.write(
            Data("set HVBENCH_FUZZ_TARGET to one of: \(FuzzTargets.all.map(\.name).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let violation = selected?(bytes) {
        // A violated property must stop libFuzzer like a crash, so it saves the input.
        fatalError("property violated: \(violation)")
    }
    return 0
}

#if HVBENCH_LIBFUZZER
    /// SwiftPM links an executable's entry point under this name (main is an alias of it).
    @_cdecl("hvbench_fuzz_main")
    public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        var count = argc
        var vector = argv
        return LLVMFuzzerRunDriver(&count, &vector) { data, size in fuzzerTestOneInput(data, size) }
    }
#else
    @main
    struct Replay {
        static func main() {
            let arguments = Array(CommandLine.arguments.dropFirst())
            guard let name = arguments.first, let target = FuzzTargets.named(name), arguments.count > 1 else {
                print("usage: hvbench-fuzz TARGET FILE|DIR...  (targets: \(FuzzTargets.all.map(\.name).joined(separator: ", ")))")
                exit(2)
            }
            var files: [String] = []
            for path in arguments.dropFirst() {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    print("hvbench-fuzz: \(path) does not exist")
                    exit(2)
                }
                if isDirectory.boolValue {
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                    files += names.sorted().map { (path as NSString).appendingPathComponent($0) }
                } else {
                    files.append(path)
                }
            }
            var failed = 0
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                if let violation = target([UInt8](data)) {
                    print("\(file): \(violation)")
                    failed += 1
                }
            }
            print("\(name): \(files.count) inputs replayed, \(failed) violated a property")
            exit(failed == 0 ? 0 : 1)
        }
    }
#endif
