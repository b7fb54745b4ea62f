import Foundation
import KVM
import Machine

let path = CommandLine.arguments[1]
let cmdline = CommandLine.arguments.count > 2 ? CommandLine.arguments[2] : ""
let bytes = [UInt8](FileManager.default.contents(atPath: path)!)
let t0 = MonotonicClock.nanoseconds()
let memory = try GuestMemory(size: 256 << 20)
let (entry, proto) = try KernelLoader.load(bytes, into: memory, commandLine: cmdline)
let system = try KVMSystem()
let engine = try KVMEngine(system: system, memory: memory, entry: entry)
let vm = try VirtualMachine(memory: memory, engine: engine, startedAt: t0) { byte in
    var b = byte
    _ = write(1, &b, 1)
}
let outcome = vm.run(timeout: 20)
print(proto, outcome.ending.summary, outcome.counters, outcome.milestones.map { ($0.code, Double($0.nanoseconds - t0) / 1e6) })
