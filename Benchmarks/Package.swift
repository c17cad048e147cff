// swift-tools-version:6.1
// The micro-benchmarks of the per-edit hot paths, with package-benchmark, beside the product rather than inside it
// (as swift-nio keeps its own): building or testing Timeline never builds the benchmark tool and its plugin.
//   cd Benchmarks && swift package benchmark            (Scripts/bench.sh runs them with the other figures)
import PackageDescription

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
                // By name: the root package's identity is its folder's name, which a clone may change.
                "TimelineCore", "TimelineStore",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/TimelineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ],
    swiftLanguageModes: [.v6]
)
