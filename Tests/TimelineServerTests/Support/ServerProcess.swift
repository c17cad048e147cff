import Foundation
import TimelineTLS

/// A real `timelined` process on a port the OS chose, with its own data folder.
final class ServerProcess: @unchecked Sendable {
    let data: URL
    let process: Process
    let port: Int
    let fingerprint: Fingerprint
    let adminToken: String
    private let output: Pipe
    /// The server's standard error (its log), kept beside the data folder.
    let logFile: URL
    private var ownsData: Bool
    /// Set when the test itself stops the process; a process that ended otherwise died (a crash, a sanitizer).
    private var stoppedByTest = false

    /// The built `timelined` beside the test bundle.
    static let binary: URL = {
        var dir = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("timelined")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let fromSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/timelined")
        return fromSource
    }()

    /// Another built executable beside `timelined` (the `timeline` CLI).
    static func sibling(_ name: String) -> URL { binary.deletingLastPathComponent().appendingPathComponent(name) }

    static func newDataFolder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("timelined-test-\(UUID().uuidString)")
    }

    /// Removes a data folder a test kept (`stopKeepingData`, `newDataFolder`) and the server log beside it.
    static func removeData(_ folder: URL) {
        try? FileManager.default.removeItem(at: folder)
        try? FileManager.default.removeItem(at: URL(fileURLWithPath: folder.path + ".log"))
    }

    /// Starts a server; `data` reuses a folder (a restart), otherwise a new one is made and removed at the end.
    init(
        data: URL? = nil, port fixedPort: Int? = nil, arguments: [String] = [], environment: [String: String] = [:]
    ) throws {
        ownsData = data == nil
        self.data = data ?? Self.newDataFolder()
        process = Process()
        process.executableURL = Self.binary
        // A connection has 30 s to authenticate by default. Under ThreadSanitizer, with every suite starting servers
        // at once on two cores, a test's AUTH has taken longer (the server then closed the connection: "I/O on
        // closed channel"); tests that are about that limit set their own.
        let patience = arguments.contains("--auth-timeout") ? [] : ["--auth-timeout", "600"]
        process.arguments =
            ["serve", "--data", self.data.path, "--listen", "127.0.0.1:\(fixedPort ?? 0)", "--log-level", "warning"]
            + patience + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        output = Pipe()
        logFile = URL(fileURLWithPath: self.data.path + ".log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let errors = try FileHandle(forWritingTo: logFile)
        _ = try errors.seekToEnd()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // The server prints "listening on HOST:PORT" once it accepts connections.
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        let handle = output.fileHandleForReading
        while !text.contains("listening on ") || !text.hasSuffix("\n") {
            guard Date() < deadline, process.isRunning else {
                let err = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
                throw TestFailure("timelined did not start: \(text) \(err)")
            }
            let chunk = handle.availableData
            if chunk.isEmpty { Thread.sleep(forTimeInterval: 0.01) }
            text += String(decoding: chunk, as: UTF8.self)
        }
        func value(after marker: String) -> String? {
            text.components(separatedBy: "\n").first { $0.hasPrefix(marker) }.map { String($0.dropFirst(marker.count)) }
        }
        guard let listening = value(after: "listening on "), let port = Int(listening.split(separator: ":").last ?? ""),
            let fp = value(after: "certificate SHA-256 fingerprint ").flatMap(Fingerprint.init(hex:))
        else { throw TestFailure("unexpected start-up output: \(text)") }
        self.port = port
        fingerprint = fp
        // A node joining a PostgreSQL timeline has none: the first node's is every node's.
        adminToken =
            (try? String(contentsOf: self.data.appendingPathComponent("admin.token"), encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        startupOutput = text
    }

    let startupOutput: String

    /// Runs `timelined` with arguments against this server's data folder; returns (status, stdout, stderr).
    func tool(_ arguments: [String]) throws -> (Int32, String, String) {
        try Self.run(arguments + ["--data", data.path])
    }

    /// Runs a built executable to its end; `environment` is added to this process's.
    static func run(
        _ arguments: [String], stdin: Data? = nil, executable: URL = binary, environment: [String: String?] = [:]
    ) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        if !environment.isEmpty {
            var env = ProcessInfo.processInfo.environment
            for (key, value) in environment { env[key] = value }
            p.environment = env
        }
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        if let stdin {
            let input = Pipe()
            p.standardInput = input
            try p.run()
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        } else {
            try p.run()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func addToken(_ name: String, role: String) throws -> String {
        let (status, out, err) = try tool(["token", "add", name, "--role", role])
        guard status == 0 else { throw TestFailure("token add failed: \(err)") }
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func connect(token: String? = nil) async throws -> TestClient {
        let client = try await TestClient.connect(port: port, fingerprint: fingerprint)
        if let token { try await client.auth(token) }
        return client
    }

    /// SIGKILL: no chance to flush anything that was not already durable.
    func kill9() {
        stoppedByTest = true
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func terminate() -> Int32 {
        stoppedByTest = true
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Stops the process and keeps the data folder (for a restart).
    func stopKeepingData() -> URL {
        ownsData = false
        terminate()
        return data
    }

    deinit {
        if !process.isRunning && !stoppedByTest {
            // The server died under the test (a crash or a sanitizer's report): its log is the only evidence.
            let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            let tail = log.split(separator: "\n", omittingEmptySubsequences: false).suffix(120).joined(separator: "\n")
            FileHandle.standardError.write(
                Data("timelined on port \(port) died (status \(process.terminationStatus)); its log:\n\(tail)\n".utf8))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        if ownsData {
            try? FileManager.default.removeItem(at: data)
            try? FileManager.default.removeItem(at: logFile)
        }
    }
}

/// The page size an SQLite file was made with, read from its header (offset 16, big-endian; 1 stands for 65,536),
/// so that a test can look at a running server's store without opening a connection to it.
func sqlitePageSize(of path: String) -> Int? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    guard let header = try? handle.read(upToCount: 18), header.count == 18,
        header.prefix(16) == Data("SQLite format 3\0".utf8)
    else { return nil }
    let size = Int(header[16]) << 8 | Int(header[17])
    return size == 1 ? 65_536 : size
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a bash command; returns (status, stdout, stderr).
func shell(_ command: String, environment: [String: String] = [:]) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", command]
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

extension ServerProcess {
    /// A reader's token that expires within moments, and a connection to `user` (this server unless given) that
    /// authenticated with it and had a GET answered before it did. The first expiry tried is 5 s, then three times as long each time: on a
    /// loaded machine (ThreadSanitizer) `token add` and the AUTH after it can take longer than a short expiry.
    func expiringToken(name: String, usedOn user: ServerProcess? = nil) async throws -> (
        token: String, name: String, client: TestClient, seconds: Int
    ) {
        var seconds = 5
        for attempt in 0..<5 {
            let named = "\(name)\(attempt)"
            let (status, out, err) = try tool(["token", "add", named, "--role", "reader", "--expires", "\(seconds)s"])
            guard status == 0 else { throw TestFailure("token add failed: \(err)") }
            let token = out.trimmingCharacters(in: .whitespacesAndNewlines)
            let client = try await (user ?? self).connect()
            // Used: authenticated, and a request that needs the token answered, both before it expired.
            if try await client.request("a AUTH \(token)").last?.hasPrefix("a OK ") == true,
                try await client.request("g GET 019ECZQW007TKPA8XK03963NRD").last == "g OK"
            {
                return (token, named, client, seconds)
            }
            seconds *= 3
        }
        throw TestFailure("no token lived long enough to be used")
    }
}
