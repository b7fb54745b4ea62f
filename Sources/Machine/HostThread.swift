#if canImport(Glibc)
    import Glibc
#endif

/// Starts a detached POSIX thread running `body`. The VMM's own threads (vCPUs, the I/O
/// thread) start this way rather than as Foundation `Thread`s, whose start-up took 100–240 µs
/// per thread here, most of a VM's start before its first guest instruction; pthread_create
/// takes tens of microseconds.
public enum HostThread {
    public struct StartError: Error, CustomStringConvertible {
        public let errno: Int32
        public var description: String { "cannot start a host thread: \(String(cString: strerror(errno)))" }
    }

    /// - Parameters:
    ///   - name: shown by `top -H` and debuggers (cut to the 15 bytes Linux keeps).
    ///   - stackSize: bytes of stack (rounded up to the host's minimum).
    public static func start(name: String, stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) throws(StartError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN)))
        let context = Unmanaged.passRetained(Body(name: name, run: body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, &attributes,
            { context in
                let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
                _ = setThreadName(pthread_self(), String(body.name.utf8.prefix(15))!)
                body.run()
                return nil
            }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw StartError(errno: result)
        }
    }

    private final class Body {
        let name: String
        let run: @Sendable () -> Void
        init(name: String, run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }
}

/// glibc's pthread_setname_np, which Swift's Glibc module leaves out (it is a GNU extension).
@_silgen_name("pthread_setname_np")
private func setThreadName(_ thread: pthread_t, _ name: UnsafePointer<CChar>) -> Int32
