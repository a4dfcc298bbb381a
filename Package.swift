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
        .library(name: "KanshiTrace", targets: ["KanshiTrace"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
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
        .target(
            name: "KanshiBlock",
            dependencies: [
                "KanshiCore", "KanshiSystem", "KanshiJournal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // ptrace, seccomp BPF and fork+exec for the syscall sensor (x86_64 Linux).
        .target(name: "CKanshiTrace"),
        // The syscall sensor: tracer, decoder, fd tables, managed set, behaviour log.
        .target(
            name: "KanshiTrace",
            dependencies: ["KanshiCore", "CKanshiTrace", .product(name: "Logging", package: "swift-log")]),
        // XGBoost from Debian's libxgboost-dev.
        .systemLibrary(name: "CXGBoost", providers: [.apt(["libxgboost-dev"])]),
        // libsvm from Debian's libsvm-dev.
        .systemLibrary(name: "CLibSVM", providers: [.apt(["libsvm-dev"])]),
        // Reading recordings (RanSAP CSV, journals), windows and features, evaluation.
        .target(name: "KanshiAnalysis", dependencies: ["KanshiCore", "KanshiJournal"]),
        // Classifiers over C libraries.
        .target(name: "KanshiML", dependencies: ["KanshiAnalysis", "CXGBoost", "CLibSVM"]),
        .executableTarget(
            name: "kanshi",
            dependencies: [
                "KanshiCore", "KanshiJournal", "KanshiBlock", "KanshiSystem", "KanshiAnalysis", "KanshiML", "KanshiTrace",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(name: "KanshiCoreTests", dependencies: ["KanshiCore"]),
        .testTarget(name: "KanshiAnalysisTests", dependencies: ["KanshiAnalysis", "KanshiML", "KanshiJournal", "KanshiCore"]),
        .testTarget(name: "KanshiJournalTests", dependencies: ["KanshiJournal", "KanshiCore", "KanshiSystem"]),
        .testTarget(
            name: "KanshiBlockTests",
            dependencies: [
                "KanshiBlock", "KanshiJournal", "KanshiCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(name: "KanshiTraceTests", dependencies: ["KanshiTrace", "KanshiCore"], exclude: ["Fixtures"]),
        .testTarget(
            name: "KanshiIntegrationTests",
            dependencies: ["KanshiJournal", "KanshiCore", "KanshiAnalysis", .product(name: "Crypto", package: "swift-crypto")]),
    ]
)
