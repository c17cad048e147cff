// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Timeline",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "TimelineCore", targets: ["TimelineCore"]),
        .library(name: "TimelineStore", targets: ["TimelineStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0")
    ],
    targets: [
        // The system's OpenSSL (Debian libssl-dev): security updates reach us without a rebuild.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // C shims for what Swift cannot import from OpenSSL (function-like macros) and small hot helpers.
        .target(name: "CTimelineShims", dependencies: ["COpenSSL"]),
        // Pure values and rules: no I/O.
        .target(name: "TimelineCore", dependencies: ["CTimelineShims"]),
        .target(
            name: "TimelineStore",
            dependencies: [
                "TimelineCore", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "timeline-bench",
            dependencies: ["TimelineCore", "TimelineStore", .product(name: "GRDBSQLite", package: "GRDB.swift")]
        ),
        .testTarget(name: "TimelineCoreTests", dependencies: ["TimelineCore"]),
        .testTarget(
            name: "TimelineStoreTests",
            dependencies: ["TimelineStore", "TimelineCore", .product(name: "GRDB", package: "GRDB.swift")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
