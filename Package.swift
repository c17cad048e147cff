// swift-tools-version:6.1
import PackageDescription

// The micro-benchmarks are a package of their own, beside this one: Benchmarks/Package.swift.

let package = Package(
    name: "Timeline",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "TimelineCore", targets: ["TimelineCore"]),
        .library(name: "TimelineStore", targets: ["TimelineStore"]),
        .library(name: "TimelineWire", targets: ["TimelineWire"]),
        .library(name: "TimelineTLS", targets: ["TimelineTLS"]),
        .library(name: "TimelineServer", targets: ["TimelineServer"]),
        .library(name: "TimelineLink", targets: ["TimelineLink"]),
        .library(name: "TimelineClient", targets: ["TimelineClient"]),
        .executable(name: "timelined", targets: ["timelined"]),
        .executable(name: "timeline", targets: ["timeline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // The system's OpenSSL (Debian libssl-dev): security updates reach us without a rebuild.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // C shims for what Swift cannot import from OpenSSL (function-like macros) and small hot helpers.
        // The system's zlib, for the HTML picture's embedded data (browsers inflate it natively).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CTimelineShims", dependencies: ["COpenSSL"]),
        // SQLite's variadic configuration call, for the store (the system SQLite that GRDB links).
        .target(name: "CTimelineSQLite", linkerSettings: [.linkedLibrary("sqlite3")]),
        // Pure values and rules: no I/O.
        .target(name: "TimelineCore", dependencies: ["CTimelineShims"]),
        .target(
            name: "TimelineStore",
            dependencies: [
                "TimelineCore", "CTimelineSQLite", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                // Locks that ThreadSanitizer sees (a pthread mutex); Synchronization.Mutex is invisible to it on Linux.
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // The store on PostgreSQL, for a timeline served by several nodes; apart, so that only the server links it.
        .target(
            name: "TimelinePostgres",
            dependencies: [
                "TimelineCore", "TimelineStore", .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // Line framing, requests and replies; of NIO only NIOCore, so that it runs in an EmbeddedChannel.
        .target(name: "TimelineWire", dependencies: ["TimelineCore", .product(name: "NIOCore", package: "swift-nio")]),
        // TLS over the system's OpenSSL as a channel handler; the protocol never knows it is there.
        .target(
            name: "TimelineTLS",
            dependencies: ["TimelineCore", "CTimelineShims", "COpenSSL", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "TimelineServer",
            dependencies: [
                "TimelineCore", "TimelineStore", "TimelinePostgres", "TimelineWire", "TimelineTLS", "TimelineLink",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // A connection to a timelined and the outbox of edits waiting to reach it: what an office replica and the
        // analyst's client share (the server does not depend on the client).
        .target(
            name: "TimelineLink",
            dependencies: [
                "TimelineCore", "TimelineStore", "TimelineWire", "TimelineTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // The analyst's library: the replica, short IDs, search, conflicts, on top of the link.
        .target(
            name: "TimelineClient",
            dependencies: [
                "TimelineCore", "TimelineStore", "TimelineWire", "TimelineTLS", "TimelineLink", "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "timeline",
            dependencies: [
                "TimelineClient", "TimelineLink", "TimelineCore", "TimelineStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "timelined",
            dependencies: [
                "TimelineServer", "TimelineLink", "TimelineStore", "TimelinePostgres", "TimelineCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // serve --config: a YAML file of serve's options.
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "timeline-bench",
            dependencies: [
                "TimelineCore", "TimelineStore", "TimelineClient", "TimelineLink", "TimelineTLS", "TimelineWire",
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Fuzz targets: built by Scripts/fuzz.sh with -sanitize=fuzzer, otherwise a replayer of saved inputs.
        .executableTarget(
            name: "timeline-fuzz",
            dependencies: [
                "TimelineCore", "TimelineWire", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "TimelineCoreTests", dependencies: ["TimelineCore"]),
        .testTarget(
            name: "TimelineStoreTests",
            dependencies: [
                "TimelineStore", "TimelinePostgres", "TimelineCore", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "TimelineWireTests",
            dependencies: [
                "TimelineWire", "TimelineCore", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TimelineServerTests",
            dependencies: [
                "TimelineServer", "TimelineClient", "TimelineLink", "TimelineTLS", "TimelineWire", "TimelineCore",
                "TimelineStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
