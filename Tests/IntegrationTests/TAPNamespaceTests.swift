import CHostNet
import Foundation
import Results
import Testing

@testable import Bench
@testable import Machine

/// The TAP backend's host side: a namespace of hvbench's own, a TAP device in it, and kernel
/// UDP peers behind it. Frames written into the TAP as a guest would (valid IPv4/UDP) reach the
/// kernel's socket; the echo's answer comes back out of the TAP after the kernel's ARP, which
/// the test answers; nothing appears in the host's own namespace, and nothing is left behind.
/// One at a time: the last checks count this process's namespace threads.
@Suite(.serialized) struct NetworkNamespaceTests {}

extension NetworkNamespaceTests {
    @Suite struct TAPNamespaceTests {
        static let guestMAC: MACAddress = [0x02, 0x68, 0x76, 0x62, 0x00, 0x02]
        static let hostAddress = IPv4Address("10.77.0.1")!
        static let guestAddress = IPv4Address("10.77.0.2")!

        func datagram(to port: UInt16, sequence: UInt32, length: Int, hostMAC: MACAddress) -> [UInt8] {
            IPv4Packets.frame(
                IPv4Packets.Datagram(
                    sourceMAC: Self.guestMAC, destinationMAC: hostMAC, source: Self.guestAddress, destination: Self.hostAddress,
                    sourcePort: 40000, destinationPort: port,
                    payload: KernelUDPPeer.payload(sequence: sequence, length: length)))
        }

        @Test(.enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage))
        func aGuestsDatagramsReachAKernelSocketInTheNamespaceOnly() throws {
            let namespace = try NetworkNamespace()
            defer { namespace.close() }
            let tap = try namespace.makeTAP(name: "hvbtap0", address: Self.hostAddress)
            #expect(try namespace.hasInterface("hvbtap0"))
            #expect(chn_interface_exists("hvbtap0") == 0, "the TAP is not in the host's namespace")
            let sink = try KernelUDPPeer(namespace: namespace, mode: .sink, address: Self.hostAddress, port: 9000)
            defer { sink.stop() }
            // The kernel accepts frames for its address whatever their destination MAC says on a
            // TAP's point-to-point link; the guest learns the real one through ARP (next test).
            for sequence in UInt32(0)..<200 {
                let frame = datagram(to: 9000, sequence: sequence, length: 1472, hostMAC: IPv4Packets.broadcastMAC)
                while try !tap.send(frame) { usleep(100) }
            }
            let deadline = Date().addingTimeInterval(30)
            while sink.snapshot.datagrams < 200 && Date() < deadline { usleep(1000) }
            let counts = sink.snapshot
            #expect(counts.datagrams == 200 && counts.bytes == 200 * 1472)
            #expect(counts.missing == 0 && counts.outOfOrder == 0 && counts.errors.isEmpty, "\(counts)")
        }

        @Test(.enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage))
        func theEchoAnswersThroughTheKernelAfterARP() throws {
            let namespace = try NetworkNamespace()
            defer { namespace.close() }
            let tap = try namespace.makeTAP(name: "hvbtap1", address: Self.hostAddress)
            let echo = try KernelUDPPeer(namespace: namespace, mode: .echo, address: Self.hostAddress, port: 9001)
            defer { echo.stop() }
            _ = try tap.send(datagram(to: 9001, sequence: 5, length: 64, hostMAC: IPv4Packets.broadcastMAC))
            // The kernel does not know the guest's MAC: it asks, the "guest" answers, the answer follows.
            var answer: IPv4Packets.Datagram?
            var hostMAC: MACAddress?
            let deadline = Date().addingTimeInterval(30)
            while answer == nil, Date() < deadline, let frame = try tap.receive(timeout: 1) {
                if let request = IPv4Packets.parseARP(frame),
                    let reply = IPv4Packets.reply(to: request, from: Self.guestAddress, mac: Self.guestMAC)
                {
                    hostMAC = request.senderMAC
                    _ = try tap.send(IPv4Packets.frame(reply))
                } else if case .success(let datagram) = IPv4Packets.parseUDP(frame) {
                    answer = datagram
                }
            }
            let echoed = try #require(answer, "no answer came out of the TAP")
            #expect(hostMAC != nil, "the kernel asked for the guest's MAC")
            #expect(echoed.source == Self.hostAddress && echoed.sourcePort == 9001)
            #expect(echoed.destination == Self.guestAddress && echoed.destinationPort == 40000)
            #expect(echoed.destinationMAC == Self.guestMAC && echoed.sourceMAC == hostMAC)
            #expect(echoed.payload == KernelUDPPeer.payload(sequence: 5, length: 64))
            // The peer counts after its sendto returns, which can be after the answer left the TAP.
            let counted = Date().addingTimeInterval(10)
            while echo.snapshot.echoed < 1 && Date() < counted { usleep(1000) }
            #expect(echo.snapshot.echoed == 1 && echo.snapshot.errors.isEmpty)
        }

        /// A guest's hostile frames: oversized, runt, spoofed, broadcast floods, addressed outside
        /// the namespace. None crashes anything; the kernel refuses what it cannot take; and
        /// nothing can leave, since the namespace has no route but its own subnet.
        @Test(.enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage))
        func hostileFramesStayInTheNamespace() throws {
            let namespace = try NetworkNamespace()
            defer { namespace.close() }
            let backend = TAPBackend(tap: try namespace.makeTAP(name: "hvbtap4", address: Self.hostAddress))
            defer { backend.stop() }
            let sink = try KernelUDPPeer(namespace: namespace, mode: .sink, address: Self.hostAddress, port: 9000)
            defer { sink.stop() }
            func send(_ frame: [UInt8]) { frame.withUnsafeBytes { backend.received($0) } }
            send([])
            send([0x42])
            send([UInt8](repeating: 0xFF, count: 65535))  // more than any MTU
            for index in 0..<2000 {  // a broadcast flood of garbage
                send(
                    IPv4Packets.broadcastMAC + Self.guestMAC + [0x08, 0x00] + [UInt8](repeating: UInt8(index & 0xFF), count: 100))
            }
            for destination in ["8.8.8.8", "10.77.0.1", "255.255.255.255", "127.0.0.1"] {  // spoofed source, foreign targets
                send(
                    IPv4Packets.frame(
                        IPv4Packets.Datagram(
                            sourceMAC: Self.guestMAC, destinationMAC: IPv4Packets.broadcastMAC,
                            source: IPv4Address("192.0.2.66")!,
                            destination: IPv4Address(destination)!, sourcePort: 1, destinationPort: 9000,
                            payload: KernelUDPPeer.payload(sequence: 0, length: 64))))
            }
            #expect(backend.framesFromGuest.load(ordering: .relaxed) == 2007)
            #expect(backend.framesRefused.load(ordering: .relaxed) >= 1, "a frame shorter than an Ethernet header is refused")
            // No route out: inside the namespace, an outside address is unreachable.
            let unreachable = try namespace.perform { () -> Int32 in
                let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
                defer { Glibc.close(descriptor) }
                var outside = KernelUDPPeer.socketAddress(IPv4Address("8.8.8.8")!, 53)
                let connected = withUnsafePointer(to: &outside) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                return connected == 0 ? 0 : errno
            }
            #expect(unreachable == ENETUNREACH, "the namespace has no default route")
            // The sink is unharmed and still works: a good datagram arrives intact.
            send(
                IPv4Packets.frame(
                    IPv4Packets.Datagram(
                        sourceMAC: Self.guestMAC, destinationMAC: IPv4Packets.broadcastMAC, source: Self.guestAddress,
                        destination: Self.hostAddress, sourcePort: 40000, destinationPort: 9000,
                        payload: KernelUDPPeer.payload(sequence: 0, length: 64))))
            let deadline = Date().addingTimeInterval(10)
            while sink.snapshot.datagrams == 0 && Date() < deadline { usleep(1000) }
            #expect(sink.snapshot.errors.isEmpty && sink.snapshot.datagrams >= 1)
        }

        /// The native side's link: a veth pair from hvbench's namespace into a second one, where
        /// an ordinary UDP socket with the guest's address reaches the kernel sink; neither end is
        /// ever in the host's namespace, and both go with the namespaces.
        @Test(.enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage))
        func aVethPairCarriesANativeSocketsDatagramsBetweenTwoNamespaces() throws {
            let namespace = try NetworkNamespace()
            let native = try NetworkNamespace()
            try namespace.makeVethPair(
                name: "hvbveth0", address: Self.hostAddress, peerName: "hvbveth1", in: native, peerAddress: Self.guestAddress)
            #expect(try namespace.hasInterface("hvbveth0") && !(try namespace.hasInterface("hvbveth1")))
            #expect(try native.hasInterface("hvbveth1"))
            #expect(chn_interface_exists("hvbveth0") == 0 && chn_interface_exists("hvbveth1") == 0)
            let sink = try KernelUDPPeer(namespace: namespace, mode: .sink, address: Self.hostAddress, port: 9000)
            let sent = try native.perform { () -> Int in
                let socket = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
                defer { close(socket) }
                var own = KernelUDPPeer.socketAddress(Self.guestAddress, 40000)
                var peer = KernelUDPPeer.socketAddress(Self.hostAddress, 9000)
                let length = socklen_t(MemoryLayout<sockaddr_in>.size)
                _ = withUnsafePointer(to: &own) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) }
                }
                _ = withUnsafePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, length) }
                }
                return (UInt32(0)..<100).filter { sequence in
                    let payload = KernelUDPPeer.payload(sequence: sequence, length: 1472)
                    return payload.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) } == 1472
                }.count
            }
            #expect(sent == 100)
            let deadline = Date().addingTimeInterval(30)
            while sink.snapshot.datagrams < 100 && Date() < deadline { usleep(1000) }
            sink.stop()
            let counts = sink.snapshot
            #expect(counts.datagrams == 100 && counts.missing == 0 && counts.errors.isEmpty, "\(counts)")
            native.close()
            namespace.close()
            #expect(threadsIn(namespace) == 0 && threadsIn(native) == 0)
        }

        /// This process's threads whose network namespace is `namespace`'s.
        func threadsIn(_ namespace: NetworkNamespace) -> Int {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            return tasks.filter { task in
                var status = stat()
                return stat("/proc/self/task/\(task)/ns/net", &status) == 0 && UInt64(status.st_ino) == namespace.inode
            }.count
        }

        /// Closing the namespace ends its thread; work after that is refused, not run in the host's
        /// namespace, and the TAP's interface never existed in the host's.
        @Test(.enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage))
        func aClosedNamespaceRunsNothing() throws {
            let namespace = try NetworkNamespace()
            #expect(namespace.inode != (try NetworkNamespace.ownNamespaceInode()))
            _ = try namespace.makeTAP(name: "hvbtap2", address: nil)
            #expect(threadsIn(namespace) == 1, "its thread lives in it")
            namespace.close()
            namespace.close()
            #expect(threadsIn(namespace) == 0, "no thread of this process is left in the namespace")
            #expect(throws: NetworkNamespace.Failure.self) { try namespace.makeTAP(name: "hvbtap3", address: nil) }
            #expect(chn_interface_exists("hvbtap2") == 0 && chn_interface_exists("hvbtap3") == 0)
        }
    }

}

extension NetworkNamespaceTests {
    /// The NIC benchmarks with `--net-backend tap`: the guest speaks IPv4/UDP through a TAP into the
    /// host kernel, whose socket in the run's namespace checks every datagram (or, for the
    /// receive benchmarks, sends them); results record the backend, and no namespace thread
    /// outlives the run.
    @Suite struct TAPBackendBenchmarkTests {
        static let benchmarks = ["net.tx-64", "net.tx-1500", "net.rr", "net.rx-1500", "net.tx-1500-irq", "net.rr-irq"]

        func run(_ id: String, system: SystemDefinition, peerFallsSilentAfter: Int? = nil) async throws -> BenchmarkResult {
            let artifacts = try await Built.artifacts.value
            let output = temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: output) }
            var configuration = RunPlan(systems: [system], suite: tinySuite(id), outputDirectory: output)
            configuration.network.backend = .tap
            configuration.network.peerFallsSilentAfter = peerFallsSilentAfter
            let result = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results.first)
            #expect(namespaceThreads() == 0, "no namespace thread is left after \(id)")
            return result
        }

        func namespaceThreads() -> Int {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            return tasks.filter {
                (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8))?.hasPrefix("hvbench-netns") == true
            }.count
        }

        func expectOutcome(_ result: BenchmarkResult, _ id: String) {
            #expect(result.status == .ok, "\(result.system) \(id): \(result.reason ?? "")")
            #expect(result.netBackend == "tap")
        }

        @Test(
            .enabled(if: Host.hasKVM && Host.canMakeNamespaces, "needs /dev/kvm, /dev/net/tun and network namespaces"),
            arguments: benchmarks)
        func eachRunsThroughTheHostKernelUnderKVM(_ id: String) async throws {
            for system in [SystemDefinition.hardwareAssist, .paravirtIO] { expectOutcome(try await run(id, system: system), id) }
        }

        /// QEMU peers run inside the namespace (nsenter) on a TAP hvbench made, with the same
        /// kernel peers: hvbench versus QEMU compares VMMs, not backends.
        @Test(
            .enabled(
                if: Host.hasKVM && Host.qemu != nil && Host.canMakeNamespaces, "needs /dev/kvm, QEMU and network namespaces"),
            arguments: ["net.tx-1500", "net.rr", "net.rx-1500"])
        func qemuPeersUseTheSameTAP(_ id: String) async throws {
            let artifacts = try await Built.artifacts.value
            let output = temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: output) }
            var configuration = RunPlan(systems: [], suite: tinySuite(id), outputDirectory: output)
            configuration.systems += [.qemuKVM, .qemuKVMVirtio]
            configuration.network.backend = .tap
            let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results
            #expect(results.count == 2)
            for result in results {
                #expect(result.status == .ok, "\(result.system) \(id): \(result.reason ?? "")")
                #expect(result.netBackend == "tap")
            }
            #expect(namespaceThreads() == 0)
        }

        /// Native is the same socket path: the native runner's UDP socket, in a namespace of its
        /// own across a veth pair, talks to the same kernel peers.
        @Test(
            .enabled(if: Host.canMakeNamespaces && Host.hasNsenter, "needs network namespaces and nsenter"),
            arguments: ["net.tx-64", "net.tx-1500", "net.rr", "net.rx-1500"])
        func theNativeRunnerUsesAKernelSocketAcrossAVethPair(_ id: String) async throws {
            expectOutcome(try await run(id, system: .native), id)
        }

        /// A far end that stops answering (the echo) or sending (the source) fails the benchmark
        /// with the reason after the guest's or the native socket's time limit; the run goes on.
        @Test(
            .enabled(if: Host.hasKVM && Host.canMakeNamespaces && Host.hasNsenter, "needs /dev/kvm, namespaces and nsenter"),
            arguments: ["net.rr", "net.rx-1500"])
        func aPeerThatFallsSilentFailsTheBenchmark(_ id: String) async throws {
            for system in [SystemDefinition.hardwareAssist, .paravirtIO, .native] {
                let result = try await run(id, system: system, peerFallsSilentAfter: 20)
                #expect(result.status == .failed, "\(system) \(id): \(result.status)")
                #expect(
                    result.reason?.contains("timeout") == true || result.reason?.contains("timed-out") == true,
                    "\(result.reason ?? "")")
            }
        }

        @Test(
            .enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage), arguments: ["net.tx-1500", "net.rr", "net.rx-1500"])
        func theEmulatorsNICsUseItToo(_ id: String) async throws {
            for system in [SystemDefinition.fullEmulation, .emulatorVirtio] {
                expectOutcome(try await run(id, system: system), id)
            }
        }
    }
}
