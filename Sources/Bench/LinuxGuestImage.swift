import Foundation
import Results

/// What every Linux-guest measurement does first: get the guest built (or the outcome that ends
/// the measurement), and, for hvbench's VMM, its files' bytes.
extension LinuxGuestBuilder {
    /// A measurement that cannot go on: skipped where the guest cannot be built here, failed
    /// where building it went wrong.
    struct Stop: Error {
        let outcome: MeasurementOutcome
    }

    static func measuredImage(withWorkloads: Bool = false) async -> Result<Image, Stop> {
        do {
            return .success(try await LinuxGuestBuilder(workspace: try Workspace.locate(), withWorkloads: withWorkloads).build())
        } catch let unavailable as Unavailable {
            return .failure(Stop(outcome: .skipped("the Linux guest cannot be built here: \(unavailable)")))
        } catch {
            return .failure(Stop(outcome: .failed("building the Linux guest: \(error)")))
        }
    }
}

extension LinuxGuestBuilder.Image {
    /// The kernel's and the initramfs's bytes, as hvbench's VMM takes them.
    func bytes() throws -> (kernel: [UInt8], initrd: [UInt8]) {
        ([UInt8](try Data(contentsOf: kernel)), [UInt8](try Data(contentsOf: initramfs)))
    }
}
