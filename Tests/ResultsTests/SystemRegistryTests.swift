import Testing

@testable import Results

/// The system registry is the one place a system is defined: names, axes and comparisons.
@Suite struct SystemRegistryTests {
    @Test func everySystemIsDefinedOnceWithItsOwnColour() {
        let names = SystemRegistry.all.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(Set(SystemRegistry.all.map(\.colour)).count == names.count)
        #expect(SystemRegistry.defaultModes.map(\.name) == ["native", "hardware-assist", "full-emulation", "paravirt-io"])
        #expect(SystemRegistry.peers.map(\.name) == ["qemu-tcg", "qemu-kvm", "qemu-kvm-virtio", "container-runc"])
        // Every system a derived figure compares with exists.
        for system in SystemRegistry.all {
            for other in system.comparedWith { #expect(SystemRegistry.named(other) != nil, "\(system.name) -> \(other)") }
        }
    }

    @Test func containerSystemsAreTheNativeRunnerUnderARuntime() {
        let containers = SystemRegistry.all.filter { $0.container != nil }
        #expect(containers.map(\.name) == ["container", "container-bridge", "container-quota", "container-runc"])
        for system in containers {
            #expect(!system.needsKVM && system.devices == nil && !system.isBaseline && !system.usesEmulator)
            #expect(!system.runByDefault, "\(system.name) runs only when named")
        }
        #expect(SystemDefinition.container.container == ContainerShape(runtime: .crun))
        #expect(SystemDefinition.containerBridge.container?.network == .bridge)
        #expect(SystemDefinition.containerQuota.container?.cpuQuota == true)
        #expect(SystemDefinition.containerRunc.isPeer && !SystemDefinition.container.isPeer)
        #expect(SystemRegistry.modes.contains(.container) && !SystemRegistry.modes.contains(.containerRunc))
    }

    @Test func theTwoAxesNameOneVMEach() {
        #expect(SystemRegistry.vm(cpu: .kvm, devices: .legacy) == .hardwareAssist)
        #expect(SystemRegistry.vm(cpu: .kvm, devices: .virtio) == .paravirtIO)
        #expect(SystemRegistry.vm(cpu: .emulator(nil), devices: .legacy) == .fullEmulation)
        #expect(SystemRegistry.vm(cpu: .emulator(nil), devices: .virtio) == .emulatorVirtio)
        #expect(SystemDefinition.fullEmulation.pinning(.interpret) == .fullEmulationInterpret)
        let pinned = SystemDefinition.emulatorVirtio.pinning(.interpret)
        #expect(
            pinned?.name == "emulator-virtio-interpret" && pinned?.runner == .vm(cpu: .emulator(.interpret), devices: .virtio))
        #expect(SystemDefinition.hardwareAssist.pinning(.interpret) == nil)
    }

    @Test func theBaselineIsFoundInMergedReportsToo() {
        #expect(SystemRegistry.isBaseline("native") && SystemRegistry.isBaseline("hostA/native"))
        #expect(!SystemRegistry.isBaseline("hostA/hardware-assist") && !SystemRegistry.isBaseline("native-ish"))
        #expect(SystemRegistry.order("native") == 0 && SystemRegistry.order("unknown") == SystemRegistry.all.count)
    }

    @Test func jobsSayEachKeyOnce() {
        var job = GuestJob(bench: "net.rr", iterations: 10, repetitions: 2, warmups: 1, tscKilohertz: 2_000_000)
        job.nic = .virtio
        job.udp = GuestJob.UDPEndpoints(
            guestAddress: "10.77.0.2", guestPort: 40000, peerAddress: "10.77.0.3", peerMAC: "02:68:76:62:00:03", peerPort: 9000)
        job.diskVerify = false
        let keys = job.words.map { $0.split(separator: "=")[0] }
        #expect(Set(keys).count == keys.count)
        #expect(
            job.commandLine
                == "bench=net.rr iterations=10 repetitions=2 warmups=1 tsc_khz=2000000 nic=virtio disk_verify=0 udp=1 "
                + "guest_ip=10.77.0.2 guest_port=40000 peer_ip=10.77.0.3 peer_mac=02:68:76:62:00:03 peer_port=9000")
    }

    @Test func servingAndLitmusLinesAreInTheGrammar() throws {
        #expect(try ResultLine.parse("HVB1 serving bench=net.rr-irq") == .serving(bench: "net.rr-irq"))
        #expect(
            try ResultLine.parse("HVB1 litmus bench=mp iterations=5 forbidden=0 overlap=2 relaxed=1")
                == .litmus(test: "mp", iterations: 5, forbidden: 0, overlap: 2, relaxed: 1))
        #expect(throws: ResultLine.ParseError.self) { try ResultLine.parse("HVB1 serving") }
        #expect(throws: ResultLine.ParseError.self) { try ResultLine.parse("HVB1 skip litmus=iriw-needs-four-cpus") }
    }
}
