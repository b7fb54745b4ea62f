// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "hvbench",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hvbench", targets: ["hvbench"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/yaslab/CSV.swift", from: "2.5.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // The vocabulary every layer shares, with no dependencies: which emulator, which device
        // set, and the exit and interrupt counters a VM keeps and results report.
        .target(name: "VMTypes"),
        // The kernel-facing bottom layer: <linux/kvm.h> and typed ioctl wrappers.
        .target(name: "CKVM"),
        // libnuma (Debian libnuma-dev) for guest-RAM and vCPU placement.
        .systemLibrary(
            name: "CNUMA", pkgConfig: "numa",
            providers: [.apt(["libnuma-dev"])]),
        // The results model and schema, result lines, statistics, comparison, derived figures,
        // claims, suites and the benchmark catalogue: pure, nothing kernel-facing.
        .target(
            name: "Results",
            dependencies: [
                "VMTypes",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]),
        // Host networking at the bottom: a private network namespace, TAP devices, interface
        // addresses, neighbours and bridges through the classic ioctls.
        .target(name: "CHostNet"),
        // Guest memory, buses, devices, boot loaders, the engine protocol and the VM.
        .target(
            name: "Machine",
            dependencies: ["CNUMA", "CHostNet", "VMTypes"]),
        // The host's time-stamp counter for the emulator's rdtsc (no KVM dependency).
        .target(name: "CHostTimer"),
        // Guest RAM shared by the emulator's vCPU threads: TSO-ordered loads and stores,
        // compare-and-swap for locked instructions, and a futex for halted vCPUs.
        .target(name: "CGuestAtomics"),
        // hvbench's x86-64 interpreter and its CPU engine; no KVM import.
        // Release builds drop the run-time exclusivity checks here: the CPU's state is class
        // properties touched on every guest instruction, and the checks (a thread-local access
        // set per property access) took a quarter of the emulator's time. Debug builds and
        // the tests keep them.
        .target(
            name: "X86",
            dependencies: ["Machine", "CHostTimer", "CGuestAtomics"],
            // Optimised in debug builds too: the test suite boots Linux in the emulator, which
            // unoptimised runs about 17 times slower (minutes instead of seconds).
            swiftSettings: [
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
                .unsafeFlags(["-O"], .when(configuration: .debug)),
            ]),
        // Differential testing of the emulator against KVM: a generated long-mode test kernel,
        // a seeded case generator and a small assembler (used by `selftest` and the tests).
        .target(
            name: "Differential",
            dependencies: ["X86", "Machine", "Results"]),
        // KVM system/VM/vCPU wrappers and the KVM CPU engine.
        .target(
            name: "KVM",
            dependencies: ["CKVM", "Machine", .product(name: "SystemPackage", package: "swift-system")]),
        // The VM builder: a VM description (engine, memory, kernel, command line, devices) ->
        // a running VM, with the engine factory. Knows KVM and the emulator; devices do not.
        .target(
            name: "VMM",
            dependencies: ["Machine", "KVM", "X86", "CHostTimer"]),
        // Scheduling, guest/native/QEMU rounds, artifacts, host environment, disk safety.
        .target(
            name: "Bench",
            dependencies: [
                "Results", "Machine", "VMM", "KVM", "X86", "Differential", "CNUMA",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Output writers: JSON, CSV, Markdown, HTML with SVG charts, terminal table, JUnit.
        .target(
            name: "Report",
            dependencies: ["Results", .product(name: "CSV", package: "CSV.swift")]),
        // The results store: every run recorded into SQLite (GRDB, a file under Results/) or a
        // fleet's shared PostgreSQL (postgres-nio), one schema with versioned migrations.
        .target(
            name: "Store",
            dependencies: [
                "Results",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // `hvbench serve`: the dashboard's trend pages from a store, over Hummingbird.
        .target(
            name: "Dashboard",
            dependencies: [
                "Results", "Report", "Store",
                .product(name: "Hummingbird", package: "hummingbird"),
            ]),
        .executableTarget(
            name: "hvbench",
            dependencies: [
                "Results", "Bench", "Report", "Machine", "VMM", "KVM", "Store", "Dashboard",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Coverage-guided fuzz targets (parsers, the emulator, device models) and their driver:
        // replays inputs normally; built by scripts/fuzz with -sanitize=fuzzer for libFuzzer.
        .target(name: "FuzzTargets", dependencies: ["Results", "Report", "Machine", "X86"]),
        .target(name: "CFuzzerDriver"),
        .executableTarget(name: "hvbench-fuzz", dependencies: ["FuzzTargets", "CFuzzerDriver"]),
        // Hand-assembled kernels shared by the unit and integration tests.
        .target(name: "TestSupport", dependencies: ["Machine"], path: "Tests/TestSupport"),
        .testTarget(name: "MachineTests", dependencies: ["Machine", "Results", "TestSupport"]),
        .testTarget(name: "X86Tests", dependencies: ["X86", "Machine", "TestSupport"]),
        .testTarget(name: "ResultsTests", dependencies: ["Results", "Report"]),
        .testTarget(
            name: "StoreTests",
            dependencies: [
                "Store", "Results", "Dashboard", "Report", "TestSupport", .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Results", "Bench", "Report", "VMM", "KVM", "X86", "Differential", "Machine", "CHostNet", "TestSupport", "Store",
            ]),
    ]
)
