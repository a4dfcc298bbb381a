// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Kanshi",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kanshi", targets: ["kanshi"]),
        .library(name: "KanshiCore", targets: ["KanshiCore"]),
        .library(name: "KanshiJournal", targets: ["KanshiJournal"]),
        .library(name: "KanshiBlock", targets: ["KanshiBlock"]),
        .library(name: "KanshiExt4", targets: ["KanshiExt4"]),
        .library(name: "KanshiTrace", targets: ["KanshiTrace"]),
        .library(name: "KanshiGuestKernel", targets: ["KanshiGuestKernel"]),
        // The VM sensor's QEMU plugin (loaded by QEMU with -plugin): libkanshi-vmi.so.
        .library(name: "kanshi-vmi", type: .dynamic, targets: ["KanshiQEMUPlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // Private C shims: CPU intrinsics and anything variadic or macro-shaped.
        .target(name: "CKanshiShims"),
        // The event model: no Glibc, no NIO.
        .target(name: "KanshiCore", dependencies: ["CKanshiShims"]),
        // The one place that calls libc for files.
        .target(name: "KanshiSystem", dependencies: ["CKanshiShims"]),
        .target(
            name: "KanshiJournal",
            dependencies: [
                "KanshiCore", "KanshiSystem",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // xxHash from Debian's libxxhash-dev (sector hashes for search).
        .systemLibrary(name: "CXXHash", providers: [.apt(["libxxhash-dev"])]),
        // Time travel: the block -> versions index, past images, diffs, sector-hash search.
        .target(
            name: "KanshiHistory",
            dependencies: [
                "KanshiCore", "KanshiSystem", "KanshiJournal", "KanshiExt4", "CXXHash",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "KanshiBlock",
            dependencies: [
                "KanshiCore", "KanshiSystem", "KanshiJournal", "KanshiHistory",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Reading ext2/3/4 metadata from a raw image (no mounting, no e2fsprogs).
        .target(name: "KanshiExt4", dependencies: ["KanshiSystem"]),
        // ptrace, seccomp BPF and fork+exec for the syscall sensor (x86_64 Linux).
        .target(name: "CKanshiTrace"),
        // The syscall sensor: tracer, decoder, fd tables, managed set, behaviour log.
        .target(
            name: "KanshiTrace",
            dependencies: ["KanshiCore", "CKanshiTrace", .product(name: "Logging", package: "swift-log")]),
        // The ring between the VM sensor's QEMU plugin and kanshi (header only: one layout for both).
        .target(name: "CKanshiVMIRing"),
        // The VM sensor's QEMU plugin (C; QEMU resolves its API when it loads it).
        .target(name: "KanshiQEMUPlugin", dependencies: ["CKanshiVMIRing"], linkerSettings: [.linkedLibrary("m")]),
        // The VM sensor: the plugin's ring, the guest behaviour model (same log and managed set as kanshi trace).
        .target(name: "KanshiVMSensor", dependencies: ["CKanshiVMIRing", "KanshiSystem", "KanshiTrace", "KanshiGuestKernel"]),
        // XGBoost from Debian's libxgboost-dev.
        .systemLibrary(name: "CXGBoost", providers: [.apt(["libxgboost-dev"])]),
        // libsvm from Debian's libsvm-dev.
        .systemLibrary(name: "CLibSVM", providers: [.apt(["libsvm-dev"])]),
        // libfuse3 from Debian's libfuse3-dev (high-level API).
        .systemLibrary(name: "CFuse3", providers: [.apt(["libfuse3-dev"])]),
        // Host disks without a VM: the journaled disk as a FUSE file, a loop device, a mount.
        .target(
            name: "KanshiMount",
            dependencies: [
                "KanshiBlock", "KanshiSystem", "CFuse3",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Reading recordings (RanSAP CSV, journals), windows and features, evaluation.
        .target(name: "KanshiAnalysis", dependencies: ["KanshiCore", "KanshiJournal", "KanshiTrace"]),
        // Classifiers over C libraries.
        .target(name: "KanshiML", dependencies: ["KanshiAnalysis", "KanshiCore", "KanshiTrace", "KanshiSystem", "CXGBoost", "CLibSVM"]),
        // The sandbox: a QEMU guest on a journaled disk, the live detector, rollback.
        .target(
            name: "KanshiSandbox",
            dependencies: [
                "KanshiCore", "KanshiSystem", "KanshiJournal", "KanshiBlock", "KanshiHistory", "KanshiAnalysis", "KanshiML",
                "KanshiVMSensor", "KanshiMount", "KanshiExt4", "KanshiTrace", "KanshiMemory", "KanshiRules",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        // zlib from Debian's zlib1g-dev (PNG, zip and gzip in the victim corpus).
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        // The sandbox's victim corpus and the ransomware / benign workload programs.
        .target(
            name: "KanshiWorkload",
            dependencies: [
                "KanshiSystem", "CZlib",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]),
        // Decompressors for kernel images: LZ4, zstd and xz from Debian's -dev packages.
        .systemLibrary(name: "CLZ4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CZstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZMA", providers: [.apt(["liblzma-dev"])]),
        // A guest's kernel from its vmlinuz alone: kallsyms symbols and BTF structure offsets.
        .target(name: "KanshiGuestKernel", dependencies: ["KanshiSystem", "CZlib", "CLZ4", "CZstd", "CLZMA"]),
        // The memory sensor: the guest's shared RAM, LiME images, page-table walks, the kernel's task list.
        .target(name: "KanshiMemory", dependencies: ["KanshiCore", "KanshiSystem", "KanshiJournal", "KanshiGuestKernel", "CKanshiShims", "CXXHash"]),
        // Rules: conditions, sequences and counts over behaviour, block and verdict events; alerts and their sinks.
        .target(
            name: "KanshiRules",
            dependencies: [
                "KanshiCore", "KanshiSystem", "KanshiJournal", "KanshiTrace",
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            // The engine's state is touched by one thread at a time (the watch's or the caller's);
            // dynamic exclusivity checks cost a sixth of its time per event.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // The sensor's side of shipping: sends a journal and a behaviour log to `kanshi server` as they grow.
        .target(
            name: "KanshiShip",
            dependencies: [
                "KanshiCore", "KanshiSystem", "KanshiJournal",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The server: receives, verifies and keeps what sensors ship; runs the rules; serves the API and the dashboard.
        .target(
            name: "KanshiServer",
            dependencies: [
                "KanshiCore", "KanshiSystem", "KanshiJournal", "KanshiTrace", "KanshiRules", "KanshiShip", "KanshiML", "KanshiFleet",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The dashboard's page and scripts; Dashboard/vendor/ is filled by scripts/vendor-js.sh.
            resources: [.copy("Dashboard")]),
        // Fleet analysis: journals as Parquet (pyarrow), searched and summarised by PySpark jobs.
        .target(
            name: "KanshiFleet",
            dependencies: ["KanshiCore", "KanshiSystem", "KanshiJournal", "KanshiHistory", "KanshiAnalysis", "KanshiBlock",
                           .product(name: "Logging", package: "swift-log")],
            // The Python side: the Parquet writer and the Spark jobs.
            resources: [.copy("Python")]),
        .executableTarget(
            name: "kanshi",
            dependencies: [
                "KanshiCore", "KanshiJournal", "KanshiBlock", "KanshiSystem", "KanshiAnalysis", "KanshiML", "KanshiHistory", "KanshiSandbox", "KanshiExt4", "KanshiMount",
                "KanshiWorkload", "KanshiTrace", "KanshiVMSensor", "KanshiGuestKernel", "KanshiMemory", "KanshiRules",
                "KanshiShip", "KanshiServer", "KanshiFleet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(name: "KanshiCoreTests", dependencies: ["KanshiCore"]),
        .testTarget(name: "KanshiWorkloadTests", dependencies: ["KanshiWorkload", "KanshiSystem"]),
        .testTarget(name: "KanshiHistoryTests", dependencies: ["KanshiHistory", "KanshiBlock", "KanshiJournal", "KanshiCore", "KanshiSystem"]),
        .testTarget(name: "KanshiGuestKernelTests", dependencies: ["KanshiGuestKernel"]),
        .testTarget(name: "KanshiMemoryTests", dependencies: ["KanshiMemory", "KanshiSystem"]),
        .testTarget(name: "KanshiExt4Tests", dependencies: ["KanshiExt4", "KanshiSystem"]),
        .testTarget(name: "KanshiAnalysisTests", dependencies: ["KanshiAnalysis", "KanshiML", "KanshiJournal", "KanshiCore", "KanshiTrace", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "KanshiRulesTests",
            dependencies: [
                "KanshiRules", "KanshiTrace", "KanshiJournal", "KanshiCore", "KanshiSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        .testTarget(
            name: "KanshiServerTests",
            dependencies: ["KanshiServer", "KanshiShip", "KanshiJournal", "KanshiCore", "KanshiSystem", "KanshiRules", "KanshiTrace",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "KanshiFleetTests", dependencies: ["KanshiFleet", "KanshiHistory", "KanshiJournal", "KanshiCore", "KanshiSystem"]),
        .testTarget(name: "KanshiJournalTests", dependencies: ["KanshiJournal", "KanshiCore", "KanshiSystem"]),
        .testTarget(
            name: "KanshiBlockTests",
            dependencies: [
                "KanshiBlock", "KanshiJournal", "KanshiCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(name: "KanshiVMSensorTests", dependencies: ["KanshiVMSensor", "KanshiTrace", "CKanshiVMIRing"]),
        .testTarget(name: "KanshiTraceTests", dependencies: ["KanshiTrace", "KanshiCore"], exclude: ["Fixtures"]),
        .testTarget(
            name: "KanshiMountTests",
            dependencies: [
                "KanshiMount", "KanshiBlock", "KanshiJournal", "KanshiCore",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "KanshiIntegrationTests",
            dependencies: ["KanshiJournal", "KanshiCore", "KanshiAnalysis", "KanshiVMSensor", "KanshiGuestKernel",
                           "KanshiSandbox", "KanshiBlock", "KanshiMount", "KanshiExt4", "KanshiHistory", "KanshiMemory",
                           .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log")],
            exclude: ["Fixtures"]),
    ]
)
