import GRDB
import GRDBSQLite

/// A prepared statement bound and stepped through SQLite's C API: the writer runs two of these per edit (GRDB's
/// boxed `StatementArguments` there cost about a tenth of a large batch's time), and PULL reads its rows with one.
/// Text and blobs are bound in nested closures that hold their bytes while the statement runs inside: an array
/// of bound values instead, one per row, made S3 18 % slower (four alternating pairs).
struct HotStatement {
    let statement: Statement
    /// SQLITE_STATIC: SQLite uses the caller's bytes where they are.
    private static let `static` = unsafeBitCast(0, to: sqlite3_destructor_type.self)

    init(_ db: Database, sql: String) throws {
        statement = try db.cachedStatement(sql: sql)
    }

    private var handle: OpaquePointer { statement.sqliteStatement }

    func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(handle, index, value)
    }

    func bind(_ index: Int32, _ value: Bool) {
        sqlite3_bind_int64(handle, index, value ? 1 : 0)
    }

    /// Text and blobs are bound without SQLite copying them (SQLITE_STATIC), so the bytes must outlive the step:
    /// each `with…` binding lasts for its closure, inside which the statement is `run` (which clears the bindings).
    /// With SQLITE_TRANSIENT SQLite allocated and copied every value: 2,300 of the 33,400 instructions of an
    /// annotation's two rows (a C program running the store's SQL under callgrind).
    func withText<R>(_ index: Int32, _ value: String?, _ body: () throws -> R) rethrows -> R {
        guard var value else {
            sqlite3_bind_null(handle, index)
            return try body()
        }
        return try value.withUTF8 { utf8 in
            sqlite3_bind_text(handle, index, utf8.baseAddress, Int32(utf8.count), Self.static)
            return try body()
        }
    }

    func withText<R>(_ index: Int32, _ bytes: ArraySlice<UInt8>, _ body: () throws -> R) rethrows -> R {
        try bytes.withUnsafeBufferPointer { buffer in
            sqlite3_bind_text(handle, index, buffer.baseAddress, Int32(buffer.count), Self.static)
            return try body()
        }
    }

    func withBlob<R>(_ index: Int32, _ bytes: [UInt8], _ body: () throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { buffer in
            sqlite3_bind_blob(handle, index, buffer.baseAddress, Int32(buffer.count), Self.static)
            return try body()
        }
    }

    /// Steps to completion (an INSERT or UPDATE); see `rows`.
    func run(_ db: Database) throws { try rows(db) { _ in } }

    /// Steps through the result, handing each row's statement handle to `row` to read its columns there (they
    /// are valid until the next step), then resets the statement and clears its bindings, whatever happens. A
    /// failure becomes GRDB's `DatabaseError` with the extended code.
    func rows(_ db: Database, _ row: (OpaquePointer) throws -> Void) throws {
        let handle = self.handle
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else {
                throw DatabaseError(
                    resultCode: ResultCode(rawValue: sqlite3_extended_errcode(db.sqliteConnection)),
                    message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: statement.sql)
            }
            try row(handle)
        }
    }
}
