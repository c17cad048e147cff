import Foundation
import NIOCore
import NIOEmbedded
import TimelineCore
import TimelineWire

/// What the fuzzer exercises on every input: the byte stream through the line decoder (a small limit, so
/// over-long lines are common), each line through the request parser, each argument and the whole input
/// through the JSON parser and the edit decoder, and the date parser. Each checks an invariant; a broken
/// one, a trap or a hang is a finding.
enum FuzzTargets {
    static let maxLine = 64

    static func run(_ bytes: [UInt8]) {
        for line in frames(bytes) {
            guard case .success(let request) = Request.parse(line) else { continue }
            precondition(Request.isValidTag(Array(request.tag.utf8)), "a parsed request has a valid tag")
            json(Array(request.arguments.utf8))
        }
        json(bytes)
        members(String(decoding: bytes, as: UTF8.self))
        _ = EventDate(parsing: String(decoding: bytes.prefix(256), as: UTF8.self))
    }

    /// Feeds the bytes in pieces whose sizes come from the input itself, and checks each frame.
    static func frames(_ bytes: [UInt8]) -> [ByteBuffer] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(LineFrameDecoder(maxLength: maxLine)))
        defer { _ = try? channel.finish() }
        var lines: [ByteBuffer] = []
        var offset = 0
        var step = Int(bytes.first ?? 7) % 13 + 1
        while offset < bytes.count {
            let end = min(bytes.count, offset + step)
            var buffer = channel.allocator.buffer(capacity: end - offset)
            buffer.writeBytes(bytes[offset..<end])
            _ = try? channel.writeInbound(buffer)
            offset = end
            step = step % 11 + 2
        }
        while let frame = try? channel.readInbound(as: Frame.self) {
            switch frame {
            case .line(let line):
                precondition(line.readableBytes <= maxLine, "a line is never longer than the limit")
                precondition(!line.readableBytesView.contains(10), "a line never holds an LF")
                lines.append(line)
            case .tooLong(let head):
                precondition(head.readableBytes <= LineFrameDecoder.headLength, "the kept head is bounded")
            }
        }
        return lines
    }

    /// JSON: what parses re-encodes canonically and parses back to the same value; the canonical parse accepts
    /// exactly the texts that are their own canonical encoding; edits decode or refuse.
    static func json(_ bytes: [UInt8]) {
        let strict = bytes.withUnsafeBufferPointer { try? JSON.parseCanonical($0, excising: "hash") }
        guard let value = try? JSON(parsingBytes: bytes) else {
            precondition(strict == nil, "the canonical parse accepted what the ordinary one refuses")
            return
        }
        let canonical = value.canonicalBytes
        precondition((strict != nil) == (canonical == bytes), "the canonical parse disagrees with the encoding")
        if let strict {
            precondition(strict.value == value, "the canonical parse reads another value")
            if let range = strict.excised {
                var rest = bytes
                rest.removeSubrange(range)
                guard case .object(var members) = value else { preconditionFailure("excised from a non-object") }
                members["hash"] = nil
                precondition(rest == JSON.object(members).canonicalBytes, "excising a member leaves the rest canonical")
            }
        }
        guard let again = try? JSON(parsingBytes: canonical) else {
            preconditionFailure("canonical JSON does not parse back")
        }
        precondition(again == value && again.canonicalBytes == canonical, "canonical JSON round trip")
        if let proposal = try? EditCodec.decodeProposal(value, author: "fuzz", time: Timestamp(milliseconds: 0)) {
            precondition(proposal.author == "fuzz", "a proposal cannot choose its author")
        }
    }

    /// The member parse that PROPOSE, BATCH and JSONL lines go through refuses what the ordinary parse refuses,
    /// with the same error, and reads the same members; a proposal decodes (or is refused) alike either way.
    static func members(_ text: String) {
        let ordinary = Result { () throws(JSONParseError) in try JSON(parsing: text) }
        let members = Result { () throws(JSONParseError) in try JSON.parseObject(text) }
        switch (ordinary, members) {
        case (.failure(let a), .failure(let b)):
            precondition(a == b, "the member parse refuses with another error")
        case (.success(.object(let o)), .success(let m?)):
            precondition(
                m.pairs.count == o.count && m.pairs.allSatisfy { o[$0.key] == $0.value },
                "the member parse reads other members")
            let time = Timestamp(milliseconds: 0)
            let a = Result { () throws(TimelineError) in
                try EditCodec.decodeProposal(.object(o), author: "fuzz", time: time)
            }
            let b = Result { () throws(TimelineError) in try EditCodec.decodeProposal(m, author: "fuzz", time: time) }
            switch (a, b) {
            case (.success, .success): break
            case (.failure(let x), .failure(let y)):
                precondition(x.code == y.code && x.message == y.message, "a proposal is refused for another reason")
            default: preconditionFailure("a proposal decodes from one parse only")
            }
        case (.success(let value), .success(nil)):
            precondition(value.objectValue == nil, "the member parse missed an object")
        default:
            preconditionFailure("the member parse and the ordinary one disagree")
        }
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        FuzzTargets.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }

    @_silgen_name("LLVMFuzzerRunDriver")
    func runLibFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's `main` to `<module>_main`; under libFuzzer that entry runs libFuzzer's driver.
    @_cdecl("timeline_fuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
        var argc = argc
        var argv = argv
        return runLibFuzzerDriver(&argc, &argv, fuzzOneInput)
    }
#else
    /// Without libFuzzer: replays files (or every file in folders) through the same targets, for regression
    /// tests over the corpus and the inputs that once crashed.
    @main struct Replay {
        static func main() throws {
            var count = 0
            for path in CommandLine.arguments.dropFirst() {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    FileHandle.standardError.write(Data("timeline-fuzz: no such file \(path)\n".utf8))
                    exit(2)
                }
                let files =
                    isDirectory.boolValue
                    ? try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 }
                    : [path]
                for file in files {
                    guard let data = FileManager.default.contents(atPath: file) else { continue }
                    FuzzTargets.run(Array(data))
                    count += 1
                }
            }
            print("replayed \(count) inputs")
        }
    }
#endif
