import Foundation
import Machine
import Results
import VMM

/// The native baseline: the same workload source built for the host, run as a fresh process.
enum NativeMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool { system.isBaseline }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        let (plan, benchmark) = (context.plan, context.benchmark)
        if benchmark?.vmToVM == true && plan.network.backend != .tap {
            return .skipped("VM to VM runs over the TAP backend's bridge; --net-backend vmm has no second VM")
        }
        var job = context.job()
        // --net-backend tap: an ordinary UDP socket in a namespace of its own, across a veth pair
        // from the same kernel peer the guests talk to; VM to VM, the native runner and the
        // kernel peer stand for the two guests across the bridge. Otherwise the in-process peer.
        let attachments: Attachments
        do { attachments = try Attachments.open(context, attachment: .native, job: &job) } catch { return error.outcome }
        defer { attachments.close() }
        if let role = benchmark?.peerRole {
            if attachments.link != nil {
                job.nic = .socket
            } else {
                job.nic = .loopback
                job.loopbackPeer = role
            }
        }
        if let disk = attachments.disk {
            job.diskPath = disk.image.path
            job.diskReadOnly = !disk.patterned  // the native runner opens a user's image O_RDONLY
        }
        let command: [String]
        switch placedCommand([runner.artifacts.nativeRunner.path] + job.words, context, link: attachments.link) {
        case .success(let placed): command = placed
        case .failure(let problem): return .failed(problem.description)
        }
        let outcome = await runner.measureProcess(
            command, shown: command.joined(separator: " "), context, what: "native run", engine: "host",
            privilege: { _ in "host-user" })
        return attachments.check(outcome, context, by: runner)
    }

    /// The command placed as the plan places VMs (a NUMA node, or pinned CPUs) and, over a TAP
    /// link, run inside the native side's namespace.
    static func placedCommand(_ command: [String], _ context: MeasurementContext, link: TAPLink?)
        -> Result<[String], BenchmarkRunner.StartProblem>
    {
        var command = command
        let placement = context.plan.placement
        var numactlArguments: [String]?
        var placedWhere = ""
        if let node = placement.numaNode {
            // Same placement as the VM: run the native process on the node's CPUs and memory.
            numactlArguments = ["--cpunodebind=\(node)", "--membind=\(node)"]
            placedWhere = "bound to NUMA node \(node)"
        } else if let cpus = placement.pinnedCPUs, !cpus.isEmpty {
            // Pinned as the vCPU threads are: the native process on the first CPU, or on the first
            // two for the SMP benchmarks (whose second thread takes the second).
            let used = Array(cpus.prefix(context.plan.vcpus(for: context.entry.id)))
            numactlArguments = ["--physcpubind=\(used.map(String.init).joined(separator: ","))"]
            placedWhere = "pinned to CPU \(cpus[0])"
        }
        if let numactlArguments {
            guard let numactl = ProcessRunner.find("numactl") else {
                return .failure(
                    .init(
                        description:
                            "numactl is not installed, so the native run cannot be \(placedWhere) (apt-get install numactl)"))
            }
            command = [numactl] + numactlArguments + command
        }
        if let namespace = link?.nativeNamespace, let nsenter = ProcessRunner.find("nsenter") {
            command = [nsenter] + namespace.enterCommand.dropFirst() + command
        }
        return .success(command)
    }
}
