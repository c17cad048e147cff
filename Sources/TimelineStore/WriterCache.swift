import CTimelineSQLite
import Dispatch
import Foundation
import GRDB
import NIOConcurrencyHelpers
import TimelineCore

/// Proposals with all of their encoding that does not depend on the store's state: each edit's body but its
/// version and revision. Built on the caller's thread (an event loop, or the task decoding a BATCH), so that the
/// single writer, which every write waits for, only splices two integers in, hashes and writes. In B1 this
/// encoding was a sixth of the writer's time.
///
/// Units larger than `limit` (an offline import is one unit) are encoded by the writer as it goes: holding all of
/// their encodings at once cost about 570 bytes per edit more at the peak (`timelined import` of 1,000,000 edits:
/// 1.50 → 2.06 GiB), while a unit that size gains nothing from its encoding being done in parallel.
struct PreparedProposals: Sendable {
    static let limit = 20_000
    let proposals: [Proposal]
    /// Empty when the unit is larger than `limit`.
    private let templates: [EditCodec.BodyTemplate]

    init(_ proposals: [Proposal], limit: Int = Self.limit) {
        self.proposals = proposals
        templates = proposals.count <= limit ? proposals.map { EditCodec.BodyTemplate($0) } : []
    }

    /// The canonical body of the proposal at `index` as the edit with this version and revision.
    func body(_ index: Int, version: Int64, revision: Int64) -> [UInt8] {
        if templates.isEmpty {
            return EditCodec.canonicalBody(version: version, revision: revision, proposal: proposals[index])
        }
        return templates[index].body(version: version, revision: revision)
    }
}

/// Events and annotations as the writer last saw them; `nil` values record rows known not to exist.
///
/// Every change is journaled so that a unit rolled back to its savepoint can take its changes back. Saving a copy
/// of the cache per unit instead made the next write copy the whole dictionary (copy-on-write), once per unit:
/// O(cached events) per single PROPOSE.
struct WriterCache {
    private(set) var events: [EventID: Event?] = [:]
    private(set) var annotations: [AnnotationID: Annotation?] = [:]
    private var undo: [Undo] = []

    private enum Undo {
        case event(EventID, Event??)
        case revision(EventID, Int64)
        case annotation(AnnotationID, Annotation??)
    }

    mutating func set(_ id: EventID, _ event: Event?) {
        undo.append(.event(id, events[id]))
        events[id] = .some(event)
    }

    /// Records `event` after an edit that moved only its revision (an annotation edit). When the event before it
    /// is cached, only the revision is set, in place, and journaled: storing and journaling the whole event cost
    /// the writer two copies of it (a retain and a release of each of its strings and arrays) per annotation.
    mutating func set(revisionOf event: Event) {
        if let index = events.index(forKey: event.id),
            // Through the slot in place: reading `events.values[index]` copied the whole event.
            let old = Self.exchangeRevision(&events.values[index], event.revision)
        {
            undo.append(.revision(event.id, old))
        } else {
            set(event.id, event)
        }
    }

    private static func exchangeRevision(_ slot: inout Event?, _ revision: Int64) -> Int64? {
        guard let old = slot?.revision else { return nil }
        slot?.revision = revision
        return old
    }

    /// The cached annotation, without hashing the ID while none is cached (a pull or a batch of additions).
    func annotation(_ id: AnnotationID) -> Annotation?? { annotations.isEmpty ? nil : annotations[id] }

    mutating func set(_ id: AnnotationID, _ annotation: Annotation?) {
        undo.append(.annotation(id, annotations[id]))
        annotations[id] = .some(annotation)
    }

    /// Forgets the journal: what is cached now stays.
    mutating func keep() { undo.removeAll(keepingCapacity: true) }

    /// Takes back every change since the last `keep()`, newest first.
    mutating func takeBack() {
        while let last = undo.popLast() {
            switch last {
            case .event(let id, let old): events[id] = old
            case .revision(let id, let old): events[id]??.revision = old
            case .annotation(let id, let old): annotations[id] = old
            }
        }
    }

    /// Keeps the cache bounded; a cleared cache only costs re-reading rows.
    mutating func trim() {
        if events.count > 50_000 { events.removeAll() }
        if annotations.count > 200_000 { annotations.removeAll() }
    }
}
