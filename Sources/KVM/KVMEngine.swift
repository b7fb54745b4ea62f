import CKVM
import Foundation
import Glibc
import Machine
import Synchronization

/// The VM descriptor, shared by every vCPU of the VM (closing it would tear the VM down under them).
final class KVMVirtualMachineHandle: @unchecked Sendable {
    let descriptor: KVMDescriptor
    /// Whether its vCPUs see KVM's paravirtual CPU interface (the `paravirt` system).
    let paravirtualCPU: Bool
    init(_ descriptor: consuming KVMDescriptor, paravirtualCPU: Bool) {
        self.descriptor = descriptor
        self.paravirtualCPU = paravirtualCPU
    }
}

/// One vCPU of a KVM virtual machine behind the `CPUEngine` protocol: the bootstrap processor
/// made by `init`, which creates the VM, and application processors made from it
/// (`makeApplicationProcessors`), which start in KVM's wait-for-SIPI state.
///
/// Guest RAM is the `GuestMemory` mapping registered as memory slot 0; everything outside it
/// (the MMIO hole) exits to the VMM. `run()` is KVM_RUN; `requestStop()` sets `immediate_exit`
/// and signals the vCPU thread so a blocked KVM_RUN returns EINTR.
public final class KVMEngine: CPUEngine, @unchecked Sendable {
    public let engineName = "kvm"
    private static let kickSignal = SIGUSR2
    private static let kickSignalInstalled: Bool = ckvm_install_kick_signal(kickSignal) == 0

    private let system: KVMSystem
    /// Held for its lifetime: closing the VM descriptor would tear the VM down under the vCPU.
    private let machine: KVMVirtualMachineHandle
    private var vm: KVMDescriptor { _read { yield machine.descriptor } }
    private let vcpu: KVMDescriptor
    private let runArea: UnsafeMutablePointer<kvm_run>
    /// The vCPU's binary statistics file (KVM_GET_STATS_FD); nil where the kernel has none.
    private let statistics: HostDescriptor?

    /// The vCPU thread, for the signal that kicks it out of KVM_RUN; set by its first run().
    private let vcpuThread = Mutex<pthread_t?>(nil)
    /// Touched only by the vCPU thread, so the first run() alone takes the mutex.
    private var threadRecorded = false

    /// - Parameter paravirtualCPU: present KVM's paravirtual leaves (0x40000000 and
    ///   0x40000001: kvmclock, PV EOI, PV TLB flush, PV IPIs, steal time, ...) as the host
    ///   offers them; without it the guest sees an unmodified machine.
    public convenience init(
        system: KVMSystem, memory: GuestMemory, entry: ProtectedModeEntry, paravirtualCPU: Bool = false
    ) throws {
        let vm = try system.descriptor.create("KVM_CREATE_VM", CKVM_CREATE_VM)
        // Only VMX needs it (real-mode emulation); harmless elsewhere, so a failure is ignored.
        _ = try? vm.call("KVM_SET_TSS_ADDR", CKVM_SET_TSS_ADDR, value: 0xFFFB_D000)
        var region = kvm_userspace_memory_region(
            slot: 0, flags: 0, guest_phys_addr: 0, memory_size: memory.size,
            userspace_addr: UInt64(UInt(bitPattern: memory.base)))
        try vm.call("KVM_SET_USER_MEMORY_REGION", CKVM_SET_USER_MEMORY_REGION, &region)
        // The in-kernel irqchip (local APIC, IOAPIC, PIC), created before the vCPU so the vCPU
        // gets its local APIC. The whole of it stays in the kernel rather than the split
        // irqchip: with the IOAPIC in user space every EOI of a level-triggered interrupt would
        // be an exit to hvbench, and an exit costs 17-40 us on the software-assisted KVM these
        // machines have.
        _ = try vm.call("KVM_CREATE_IRQCHIP", CKVM_CREATE_IRQCHIP)
        try self.init(system: system, machine: KVMVirtualMachineHandle(vm, paravirtualCPU: paravirtualCPU), index: 0)
        try Self.setProtectedModeEntry(entry, on: vcpu)
    }

    /// vCPU `index` (also its local APIC ID) of the VM `machine` holds, with the CPUID the guest
    /// needs and the run area mapped; an application processor keeps KVM's reset state (it
    /// waits for INIT and SIPI).
    private init(system: KVMSystem, machine: KVMVirtualMachineHandle, index: Int) throws {
        self.system = system
        _ = Self.kickSignalInstalled
        let vcpu = try machine.descriptor.create("KVM_CREATE_VCPU", CKVM_CREATE_VCPU, value: UInt(index))
        // The guest switches itself to long mode, which KVM allows only when the guest's CPUID
        // advertises it: give the guest what KVM supports, plus the TSC-deadline timer, which
        // the in-kernel local APIC provides but the supported list leaves out, and this vCPU's
        // APIC ID. KVM's paravirtual leaves (kvmclock, PV EOI, PV TLB flush, ...) only for the
        // paravirt system: the others present an unmodified machine, so the trapping interface
        // is what they measure.
        let cpuidResult = ckvm_set_vcpu_cpuid(
            vcpu.rawValue, system.supportedCPUID.list, system.hasTSCDeadlineTimer ? 1 : 0, UInt32(index),
            system.hiddenLeaf1ECX, machine.paravirtualCPU ? 1 : 0)
        guard cpuidResult == 0 else { throw KVMError.call("KVM_SET_CPUID2", errno: -cpuidResult) }
        tscKilohertz = max(0, Int((try? vcpu.call("KVM_GET_TSC_KHZ", CKVM_GET_TSC_KHZ)) ?? 0))
        let mapping = mmap(nil, system.vcpuMappingSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.rawValue, 0)
        guard let mapping, mapping != MAP_FAILED else { throw KVMError.call("mmap of the vCPU run area", errno: errno) }
        runArea = mapping.bindMemory(to: kvm_run.self, capacity: 1)
        statistics = HostDescriptor(taking: ckvm_stats_fd(vcpu.rawValue))
        self.machine = machine
        self.vcpu = vcpu
    }

    /// vCPUs 1 ..< 1 + count on this VM, in KVM's wait-for-SIPI state, as a PC's application
    /// processors come out of reset: the guest starts them with INIT-SIPI-SIPI through its local
    /// APIC. Interrupts, doorbells and coalesced writes stay the bootstrap processor's (VM-wide).
    public func makeApplicationProcessors(count: Int) throws -> [any CPUEngine] {
        try (0..<count).map { try KVMEngine(system: system, machine: machine, index: 1 + $0) }
    }

    /// Interrupts KVM injected into this vCPU (its `irq_injections` statistic); the in-kernel
    /// local APIC handles EOIs without telling anyone, so those are unknown.
    public var interruptCounts: (taken: Int, endOfInterrupts: Int?)? {
        guard let statistics else { return nil }
        let injected = ckvm_read_stat(statistics.rawValue, "irq_injections")
        return injected >= 0 ? (Int(injected), nil) : nil
    }

    /// Internal for tests, which look at its routes.
    private(set) var interrupts: KVMInterrupts?

    public var interruptsByEventFD: Int? { interrupts.map(\.messagesByEventFD) }

    /// The in-kernel IOAPIC and local APIC; nothing is placed on the MMIO bus, since KVM
    /// handles the IOAPIC's page itself.
    public func connectInterrupts(mmioBus: IOBus) throws -> any InterruptController {
        let controller = KVMInterrupts(vmFileDescriptor: vm.rawValue)
        interrupts = controller
        return controller
    }

    /// Doorbells as ioeventfds served by an I/O thread (see `KVMIOThread`).
    public func makeDoorbellRouter(pollLimitNanoseconds: UInt64) -> (any DoorbellRouter)? {
        KVMIOThread(vmFileDescriptor: vm.rawValue, pollLimitNanoseconds: pollLimitNanoseconds)
    }

    /// KVM's coalesced-MMIO ring, where the kernel has one: KVM_CHECK_EXTENSION gives the page
    /// of the vCPU mapping it lives in.
    public func makeWriteCoalescer() -> (any WriteCoalescer)? {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let page = system.coalescedMMIOPage
        guard page > 0, (page + 1) * pageSize <= system.vcpuMappingSize else { return nil }
        return KVMCoalescedMMIO(
            vmFileDescriptor: vm.rawValue, ring: UnsafeMutableRawPointer(runArea) + page * pageSize, pageSize: pageSize,
            mappingOwner: self)
    }

    public var diagnostics: [String] {
        guard let interrupts else { return [] }
        var findings: [String] = []
        if interrupts.failedCalls > 0 {
            findings.append(
                "kvm: \(interrupts.failedCalls) interrupt calls (KVM_IRQ_LINE/KVM_SIGNAL_MSI) failed, last with errno \(interrupts.lastError)"
            )
        }
        // A message outside the APIC window, or one past a full (or refused) route table.
        if interrupts.messagesByIoctl > 0 {
            findings.append(
                "kvm: \(interrupts.messagesByIoctl) MSI messages went through KVM_SIGNAL_MSI, not an irqfd (\(interrupts.routes.count) routes)"
            )
        }
        return findings
    }

    deinit {
        munmap(runArea, system.vcpuMappingSize)
    }

    /// The TSC frequency KVM gives the guest, in kHz (0 when KVM cannot tell). Read at creation:
    /// vCPU ioctls block while another thread is inside KVM_RUN.
    public private(set) var tscKilohertz = 0

    public var guestTSCKilohertz: Int? { tscKilohertz > 0 ? tscKilohertz : nil }

    private static func setProtectedModeEntry(_ entry: ProtectedModeEntry, on vcpu: borrowing KVMDescriptor) throws {
        var sregs = kvm_sregs()
        try vcpu.call("KVM_GET_SREGS", CKVM_GET_SREGS, &sregs)
        func flat(_ selector: UInt16, type: UInt8) -> kvm_segment {
            kvm_segment(
                base: 0, limit: 0xFFFF_FFFF, selector: selector, type: type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1,
                avl: 0, unusable: 0, padding: 0)
        }
        sregs.cs = flat(ProtectedModeEntry.codeSelector, type: 0xB)
        let data = flat(ProtectedModeEntry.dataSelector, type: 0x3)
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.tr = kvm_segment(
            base: 0, limit: 0x67, selector: ProtectedModeEntry.taskSelector, type: 0xB, present: 1, dpl: 0, db: 0, s: 0,
            l: 0, g: 0, avl: 0, unusable: 0, padding: 0)
        sregs.gdt.base = UInt64(entry.gdtBase)
        sregs.gdt.limit = entry.gdtLimit
        sregs.idt.base = 0
        sregs.idt.limit = 0
        sregs.cr0 = 0x11  // PE | ET: protected mode, paging off
        sregs.cr3 = 0
        sregs.cr4 = 0
        sregs.efer = 0
        try vcpu.call("KVM_SET_SREGS", CKVM_SET_SREGS, &sregs)

        var regs = kvm_regs()
        regs.rip = UInt64(entry.entryPoint)
        regs.rax = UInt64(entry.eax)
        regs.rbx = UInt64(entry.ebx)
        regs.rsi = UInt64(entry.esi)
        regs.rflags = 0x2
        try vcpu.call("KVM_SET_REGS", CKVM_SET_REGS, &regs)
    }

    public func run() throws -> VMExit {
        if !threadRecorded {
            _ = ckvm_unblock_kick_signal(Self.kickSignal)
            vcpuThread.withLock { $0 = pthread_self() }
            threadRecorded = true
        }
        while true {
            // KVM_RUN is the hot path: the raw call, with errno read at once.
            if ckvm_ioctl_value(vcpu.rawValue, CKVM_RUN, 0) < 0 {
                let error = errno
                if error == EINTR {
                    ckvm_set_immediate_exit(runArea, 0)
                    return .interrupted
                }
                if error == EAGAIN { continue }
                throw KVMError.call("KVM_RUN", errno: error)
            }
            let reason = Int32(ckvm_exit_reason(runArea))
            switch reason {
            case KVM_EXIT_IO:
                let io = ckvm_io_exit(runArea)
                return .portIO(
                    PortIOExit(port: io.port, size: Int(io.size), count: Int(io.count), isWrite: io.is_write != 0, data: io.data))
            case KVM_EXIT_MMIO:
                let access = ckvm_mmio_exit(runArea)
                return .mmio(
                    MMIOExit(address: access.address, size: Int(access.length), isWrite: access.is_write != 0, data: access.data))
            case KVM_EXIT_HLT:
                // Not seen with the in-kernel irqchip, which sleeps a halted vCPU in the kernel
                // until an interrupt (or the watchdog's kick) arrives.
                return .halt
            case KVM_EXIT_SHUTDOWN:
                return .shutdown("triple fault (KVM_EXIT_SHUTDOWN)")
            case KVM_EXIT_SYSTEM_EVENT:
                return .shutdown("system event \(ckvm_system_event_type(runArea))")
            case KVM_EXIT_INTR:
                return .interrupted
            case KVM_EXIT_FAIL_ENTRY:
                throw EngineError(
                    "KVM could not enter the guest (hardware entry failure reason 0x\(String(ckvm_fail_entry_reason(runArea), radix: 16)))"
                )
            case KVM_EXIT_INTERNAL_ERROR:
                throw EngineError(
                    "KVM internal error (suberror \(ckvm_internal_error(runArea))), guest at rip 0x\(String(currentInstructionPointer(), radix: 16))"
                )
            default:
                throw EngineError("unhandled KVM exit reason \(reason)")
            }
        }
    }

    public func requestStop() {
        ckvm_set_immediate_exit(runArea, 1)
        if let thread = vcpuThread.withLock({ $0 }) { pthread_kill(thread, Self.kickSignal) }
    }

    public func currentInstructionPointer() -> UInt64 {
        var regs = kvm_regs()
        return (try? vcpu.call("KVM_GET_REGS", CKVM_GET_REGS, &regs)) != nil ? regs.rip : 0
    }
}
