import Foundation
import Machine
import VMM
import Results

/// A native round: the same workload source built for the host, run as a fresh process.
extension BenchmarkRunner {
    func nativeRound(_ entry: Suite.Entry, _ configuration: RunConfiguration) async -> RoundOutcome {
        var words = jobWords(
            entry, configuration, repetitions: entry.repetitions, warmups: entry.warmups, tscKHz: TSC.calibratedKilohertz)
        let definition = BenchmarkDefinition.named(entry.id)
        var disk: DiskImage?
        // --net-backend tap: an ordinary UDP socket in a namespace of its own, across a veth pair
        // from the same kernel peer the guests talk to; otherwise the in-process peer.
        var link: TAPLink?
        defer { link?.close() }
        if definition?.vmToVM == true && configuration.netBackend != .tap {
            return .skipped("VM to VM runs over the TAP backend's bridge; --net-backend vmm has no second VM")
        }
        if let role = definition?.peerRole {
            // VM to VM natively: the native runner and the kernel peer, two native endpoints
            // across the veth pair, stand for the two guests across the bridge.
            if configuration.netBackend == .tap {
                switch TAPLink.make(for: role, attachment: .native, configuration) {
                case .success(let made): link = made
                case .failure(let problem): return .skipped(problem.description)
                }
                words += (link?.jobWords ?? []) + ["nic=socket"]
            } else {
                words += ["nic=loopback", "peer=\(role.rawValue)"]
            }
        }
        if let definition, definition.needsDisk {
            do {
                let opened = try openDisk(definition, configuration)
                disk = opened.image
                words += ["disk_path=\(opened.image.path)", "region_sectors=\(configuration.diskRegionSectors)"]
                words += opened.jobWords
                if !opened.patterned { words.append("disk_readonly=1") }  // the native runner opens it O_RDONLY
            } catch { return .failed("\(error)") }
        }
        var command = [artifacts.nativeRunner.path] + words
        if let node = configuration.numaNode {
            // Same placement as the VM: run the native process on the node's CPUs and memory.
            guard let numactl = ProcessRunner.find("numactl") else {
                return .failed(
                    "numactl is not installed, so the native run cannot be bound to NUMA node \(node) (apt-get install numactl)")
            }
            command = [numactl, "--cpunodebind=\(node)", "--membind=\(node)"] + command
        }
        if let cpus = configuration.pinnedCPUs, !cpus.isEmpty {
            // Pinned as the vCPU threads are: the native process on the first CPU, or on the first
            // two for the SMP benchmarks (whose second thread takes the second).
            let used = Array(cpus.prefix(configuration.vcpus(for: entry.id)))
            guard let numactl = ProcessRunner.find("numactl") else {
                return .failed(
                    "numactl is not installed, so the native run cannot be pinned to CPU \(cpus[0]) (apt-get install numactl)")
            }
            command = [numactl, "--physcpubind=\(used.map(String.init).joined(separator: ","))"] + command
        }
        if let namespace = link?.nativeNamespace, let nsenter = ProcessRunner.find("nsenter") {
            command = [nsenter] + namespace.enterCommand.dropFirst() + command
        }
        let output: ProcessRunner.Output
        do {
            output = try await ProcessRunner.run(command[0], Array(command.dropFirst()), timeout: entry.timeoutSeconds) {
                self.reportSamples($0)
            }
        } catch {
            return .failed("\(error)")
        }
        let console = output.standardOutput.joined(separator: "\n")
        saveLog(
            "$ \(command.joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
            system: "native",
            benchmark: entry.id, configuration)
        if output.timedOut { return .failed("native run exceeded its \(Int(entry.timeoutSeconds)) s time limit and was killed") }
        let outcome = interpret(
            console, entry: entry, tscHertz: Double(TSC.calibratedKilohertz) * 1000, privilege: { _ in "host-user" })
        if case .measured = outcome, let disk, let problem = verifyWrites(entry, disk, configuration) { return .failed(problem) }
        if case .measured = outcome, let link {
            let problem = link.problem(afterGuestSent: (entry.warmups + entry.repetitions) * Int(entry.iterations))
            saveLog("# \(link.summary)\n", system: "native", benchmark: entry.id + ".tap", configuration)
            if let problem { return .failed(problem) }
        }
        return outcome
    }
}
