import CHostNet
import Foundation

/// A network namespace of hvbench's own, for one run: every TAP device, bridge, address and
/// kernel socket of the TAP backend lives in it, so no frame a guest sends can reach the host's
/// own namespace or leave the machine (the namespace has no route out).
///
/// One thread leaves the process's namespace for a new, empty one and stays there, running
/// the work that must happen inside it (`perform`): creating TAP devices and sockets, which then
/// stay bound to the namespace whichever thread uses them. The namespace, and every interface in
/// it, is gone once that thread has ended (`close`) and the last descriptor into it is closed.
public final class NetworkNamespace: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    private let worker = Worker()
    /// The namespace's identity (its nsfs inode), for checks that it is not the host's.
    public let inode: UInt64
    /// The kernel thread ID of the thread that lives in it.
    public let threadID: Int32

    /// A command prefix that runs a program inside the namespace (QEMU with its own TAP backend).
    public var enterCommand: [String] { ["nsenter", "--net=/proc/\(getpid())/task/\(threadID)/ns/net", "--"] }

    /// Creates the namespace and brings its loopback interface up. Fails, saying why, where the
    /// process may not create namespaces (no CAP_SYS_ADMIN, or a seccomp filter).
    public init() throws {
        let host = try Self.ownNamespaceInode()
        let started = Outcome<(UInt64, Int32)>()
        let worker = self.worker
        let thread = Thread {
            let unshared = chn_unshare_network()
            guard unshared == 0 else {
                return started.set(
                    .failure(Failure("cannot create a network namespace: \(String(cString: strerror(-unshared)))")))
            }
            let up = chn_set_interface_up("lo", 1)
            guard up == 0 else {
                return started.set(
                    .failure(Failure("cannot bring up lo in the new namespace: \(String(cString: strerror(-up)))")))
            }
            worker.markServing()  // from here on, close() waits for this thread to end
            started.set(Result { (try Self.ownNamespaceInode(), chn_thread_id()) })
            worker.serve()  // this thread is what keeps the namespace alive
        }
        thread.name = "hvbench-netns"
        thread.start()
        switch started.wait() {
        case .success(let (inode, thread)):
            self.inode = inode
            threadID = thread
        case .failure(let error):
            worker.close()
            throw error
        }
        guard inode != host else {
            close()
            throw Failure("the new network namespace is the host's own (inode \(host))")
        }
    }

    deinit { close() }

    /// The inode of the calling thread's network namespace.
    static func ownNamespaceInode() throws -> UInt64 {
        var status = stat()
        guard stat("/proc/thread-self/ns/net", &status) == 0 else {
            throw Failure("cannot identify the network namespace: \(String(cString: strerror(errno)))")
        }
        return UInt64(status.st_ino)
    }

    /// Runs `body` on the namespace's thread, inside the namespace, and returns what it returns.
    public func perform<T>(_ body: @escaping () throws -> T) throws -> T {
        let outcome = Outcome<T>()
        guard worker.enqueue({ outcome.set(Result { try body() }) }) else {
            throw Failure("the network namespace is closed")
        }
        return try outcome.wait().get()  // queued work always runs, even when closing
    }

    /// Ends the namespace's thread once the queued work is done, and returns once it has exited
    /// (not just finished its work): no thread of this process is then in the namespace, which
    /// goes with the last descriptor into it. Idempotent.
    public func close() {
        worker.close()
        // The thread is gone from /proc/self/task a moment after its last instruction.
        let deadline = Date().addingTimeInterval(5)
        while access("/proc/self/task/\(threadID)", F_OK) == 0 && Date() < deadline { usleep(100) }
    }

    /// Whether interface `name` exists in the namespace.
    public func hasInterface(_ name: String) throws -> Bool {
        let answer = try perform { chn_interface_exists(name) }
        guard answer >= 0 else { throw Failure("cannot look up \(name): \(String(cString: strerror(-answer)))") }
        return answer == 1
    }

    /// A TAP device `name` that outlives this process's descriptor, for QEMU to attach to by
    /// name from inside the namespace; it goes with the namespace.
    public func makePersistentTAP(name: String, address: IPv4Address?, prefixLength: Int = 24) throws {
        let device = try makeTAP(name: name, address: address, prefixLength: prefixLength)
        try Self.check(device.setPersistent(), "keep \(name) for QEMU")
    }

    /// A TAP device `name` in the namespace, with `address`/`prefixLength` and up.
    public func makeTAP(name: String, address: IPv4Address?, prefixLength: Int = 24) throws -> TAPDevice {
        try perform {
            let opened = chn_open_tap(name)
            guard let file = HostDescriptor(taking: opened) else {
                throw Failure("cannot create TAP device \(name): \(String(cString: strerror(-opened)))")
            }
            let device = TAPDevice(name: name, file: file)
            // The kernel finishes every checksum before a frame reaches the TAP: neither
            // hvbench's reader nor QEMU with vnet_hdr=off can hand a partial one to a guest (QEMU
            // 7.2 asks for checksum offload when it attaches, and this keeps it off).
            try Self.check(chn_set_transmit_checksum_offload(name, 0), "turn checksum offload off on \(name)")
            if let address {
                try Self.check(chn_set_interface_ipv4(name, address.value, Int32(prefixLength)), "give \(name) \(address)")
            }
            try Self.check(chn_set_interface_up(name, 1), "bring \(name) up")
            return device
        }
    }

    /// A veth pair: `name` here with `address` (none for a bridge port), and `peerName` in
    /// `other` with `peerAddress`, both up with IPv6 off. Frames one end sends arrive at the other
    /// through the host kernel, as a TAP's do; the pair goes with either namespace.
    public func makeVethPair(
        name: String, address: IPv4Address?, peerName: String, in other: NetworkNamespace, peerAddress: IPv4Address,
        prefixLength: Int = 24
    ) throws {
        let otherPath = "/proc/\(getpid())/task/\(other.threadID)/ns/net"
        try perform {
            let otherNamespace = open(otherPath, O_RDONLY | O_CLOEXEC)
            guard otherNamespace >= 0 else {
                throw Failure("cannot open the peer namespace \(otherPath): \(String(cString: strerror(errno)))")
            }
            defer { Glibc.close(otherNamespace) }
            try Self.check(chn_add_veth_pair(name, peerName, otherNamespace), "create the veth pair \(name)-\(peerName)")
            if let address {
                try Self.check(chn_set_interface_ipv4(name, address.value, Int32(prefixLength)), "give \(name) \(address)")
            }
            try Self.check(chn_set_interface_up(name, 1), "bring \(name) up")
        }
        try disableIPv6(on: name)
        try other.perform {
            try Self.check(
                chn_set_interface_ipv4(peerName, peerAddress.value, Int32(prefixLength)), "give \(peerName) \(peerAddress)")
            try Self.check(chn_set_interface_up(peerName, 1), "bring \(peerName) up")
        }
        try other.disableIPv6(on: peerName)
    }

    /// A bridge `name` with `ports` (interfaces of this namespace) attached, all up: the
    /// host kernel switches frames between the ports by the MACs it learns.
    /// With `address`, the bridge itself is this namespace's endpoint on the switched segment.
    public func makeBridge(_ name: String, ports: [String], address: IPv4Address? = nil, prefixLength: Int = 24) throws {
        try perform {
            try Self.check(chn_add_bridge(name), "create the bridge \(name)")
            for port in ports { try Self.check(chn_add_bridge_port(name, port), "add \(port) to \(name)") }
            if let address {
                try Self.check(chn_set_interface_ipv4(name, address.value, Int32(prefixLength)), "give \(name) \(address)")
            }
            try Self.check(chn_set_interface_up(name, 1), "bring \(name) up")
        }
    }

    /// The MAC address of `interface`.
    public func macAddress(of interface: String) throws -> MACAddress {
        try perform {
            var mac = [UInt8](repeating: 0, count: 6)
            try Self.check(chn_interface_mac(interface, &mac), "read the MAC of \(interface)")
            return mac
        }
    }

    /// Turns IPv6 off on `interface`, so the kernel sends no neighbour discovery or router
    /// solicitations down a link that carries only the benchmark's IPv4.
    public func disableIPv6(on interface: String) throws {
        try perform {
            // /proc/sys/net shows the namespace of the thread that opens it: this one.
            let path = "/proc/sys/net/ipv6/conf/\(interface)/disable_ipv6"
            guard FileManager.default.fileExists(atPath: path) else { return }  // a kernel without IPv6
            do { try "1".write(toFile: path, atomically: false, encoding: .utf8) } catch {
                throw Failure("cannot turn IPv6 off on \(interface): \(error)")
            }
        }
    }

    /// A permanent neighbour entry: `address` is at `mac` on `interface` (no ARP needed).
    public func setNeighbour(_ address: IPv4Address, mac: MACAddress, on interface: String) throws {
        guard mac.count == 6 else { throw Failure("a MAC address has 6 bytes, not \(mac.count)") }
        try perform { try Self.check(chn_set_neighbour(interface, address.value, mac), "add neighbour \(address)") }
    }

    static func check(_ result: Int32, _ what: String) throws {
        if result != 0 { throw Failure("cannot \(what): \(String(cString: strerror(-result)))") }
    }
}

/// The namespace thread's work queue.
private final class Worker: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var closing = false
    private var finished = false

    /// Runs jobs until closed and drained. Called once, on the namespace's thread.
    func serve() {
        condition.lock()
        while true {
            while jobs.isEmpty && !closing { condition.wait() }
            if jobs.isEmpty { break }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
            condition.lock()
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// false once closing: the job is not taken.
    func enqueue(_ job: @escaping () -> Void) -> Bool {
        condition.withLock {
            guard !closing else { return false }
            jobs.append(job)
            condition.broadcast()
            return true
        }
    }

    /// Stops taking work and waits until the thread has drained its queue and ended (at once if
    /// it never started serving).
    func close() {
        condition.withLock {
            closing = true
            condition.broadcast()
            while !finished && serving { condition.wait() }
        }
    }

    /// Set by the namespace thread once the namespace exists; a thread that failed never does.
    private var serving = false

    func markServing() { condition.withLock { serving = true } }
}

/// One job's result, handed from the namespace's thread to the caller.
private final class Outcome<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<T, Error>?

    func set(_ result: Result<T, Error>) {
        condition.withLock {
            self.result = result
            condition.signal()
        }
    }

    func wait() -> Result<T, Error> {
        condition.withLock {
            while result == nil { condition.wait() }
            return result!
        }
    }
}
