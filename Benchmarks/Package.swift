// swift-tools-version:6.1
// The micro-benchmarks of the per-edit hot paths, with package-benchmark, beside the product rather than inside it
// (as swift-nio keeps its own): building or testing Timeline never builds the benchmark tool and its plugin.
//   cd Benchmarks && swift package benchmark            (Scripts/bench.sh runs them with the other figures)
import Foundation
import PackageDescription

// SwiftPM names a package given by path after its folder, which a clone may change ("main", "timeline", ...).
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "TimelineBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "TimelineBenchmarks",
            dependencies: [
                .product(name: "TimelineCore", package: root),
                .product(name: "TimelineStore", package: root),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/TimelineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ],
    swiftLanguageModes: [.v6]
)
