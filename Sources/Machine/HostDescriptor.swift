#if canImport(Glibc)
    import Glibc
#endif

/// A host file descriptor this process owns (an eventfd, an epoll instance, a TAP, a disk
/// image, a statistics file): closed exactly once, when the last reference goes, so no error
/// path has to remember to close it. A class, so tables of them are ordinary dictionaries.
public final class HostDescriptor: Sendable {
    public let rawValue: Int32

    /// Takes ownership of `raw`, the result of open, eventfd, epoll_create and the like; nil for
    /// a failed call's negative result.
    public init?(taking raw: Int32) {
        guard raw >= 0 else { return nil }
        rawValue = raw
    }

    deinit { close(rawValue) }
}
