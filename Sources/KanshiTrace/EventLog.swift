import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The behaviour log: events are appended in binary form by the tracer
/// thread and turned into JSON lines, in batches, by a writer thread.
/// Events wait in chunks of `chunkEvents` that the writer hands back once
/// written, so a busy log reuses the same warm memory instead of growing
/// (and faulting in) ever larger arrays. If more than `capacity` events
/// wait, new ones are dropped and counted; the count is written to the log
/// as a `dropped` event.
///
/// With `Writer.caller` there is no writer thread: the thread that appends
/// encodes and writes each full chunk itself, and `flush()` writes the rest.
/// For a reader that already has a queue in front of it (the VM sensor's
/// ring), so that on a small machine it takes one core, not two, beside the
/// guest's vCPUs. Nothing is dropped then: a slow file slows the appender.
public final class EventLog: @unchecked Sendable {
    public enum Writer: Sendable {
        /// A thread of the log's own (appends never wait for the file).
        case thread
        /// The appending thread, a chunk at a time, and at `flush()`.
        case caller
    }

    /// Events per chunk: small enough to stay in cache between the tracer
    /// and the writer, large enough that a chunk is one write of the file.
    static let chunkEvents = 1024
    /// At most this long between an event and its line in the file.
    static let flushInterval: TimeInterval = 0.05
    /// Emptied chunks kept for reuse; a burst beyond them is allocated and freed.
    static let spareChunks = 8

    private let fd: Int32
    private let path: String
    private let capacity: Int
    private let writer: Writer
    /// `Writer.caller`: the text of the chunk being written (guarded by `cond`).
    private var callerText: JSONBytes?
    private let cond = NSCondition()
    // Guarded by `cond`.
    private var filling: [TraceEvent] = []
    private var full: [[TraceEvent]] = []
    private var spare: [[TraceEvent]] = []
    private var waiting = 0
    private var closing = false
    private var droppedSinceReport: UInt64 = 0
    private var writeError: Int32 = 0
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private var nextSeq: UInt64 = 0
    /// Events dropped because the writer fell behind (total).
    public private(set) var dropped: UInt64 = 0
    /// Events accepted.
    public private(set) var written: UInt64 = 0

    /// Opens (truncates) the log file. Throws `TraceError.logFile` naming the path.
    public init(path: String, capacity: Int = 1 << 20, writer: Writer = .thread) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TraceError.logFile(path: path, errno: errno) }
        self.fd = fd
        self.path = path
        self.capacity = capacity
        self.writer = writer
        filling.reserveCapacity(Self.chunkEvents)
        if writer == .caller {
            callerText = JSONBytes(capacity: 1 << 18)
            return
        }
        // The thread keeps the log alive until `close` ends it (an unowned reference would
        // crash if the last owner let go without closing).
        let t = Thread { self.writerLoop() }
        t.name = "kanshi-trace-log"
        thread = t
        t.start()
    }

    /// Adds an event (tracer thread); stamps its sequence number and time.
    @discardableResult
    public func append(_ event: consuming TraceEvent) -> UInt64 {
        cond.lock()
        nextSeq += 1
        let seq = nextSeq
        event.seq = seq
        if event.time == 0 { event.time = Clock.nowNs() }
        if writer == .thread && waiting >= capacity {
            dropped += 1
            droppedSinceReport += 1
        } else {
            filling.append(event)
            waiting += 1
            written += 1
            if filling.count == Self.chunkEvents && writer == .caller {
                writeFilling()
            } else if filling.count == Self.chunkEvents {
                retireFilling()
                if full.count == 1 { cond.signal() }
            }
        }
        cond.unlock()
        return seq
    }

    /// `Writer.caller`: writes the events appended since the last chunk (the
    /// appender calls it when it goes idle, so readers of the file are not
    /// kept waiting). With a writer thread the thread does this by itself.
    public func flush() {
        guard writer == .caller else { return }
        cond.lock()
        if !filling.isEmpty { writeFilling() }
        cond.unlock()
    }

    /// Under `cond`: the filling chunk goes to the writer thread, a spare one takes its place.
    private func retireFilling() {
        full.append(filling)
        filling = spare.popLast() ?? []
        if filling.capacity < Self.chunkEvents { filling.reserveCapacity(Self.chunkEvents) }
    }

    /// A chunk's JSON lines, in place of what `text` held.
    private static func encode(_ chunk: borrowing [TraceEvent], into text: inout JSONBytes) {
        text.clear()
        // Each event encoded where it lies (borrowed: no copy, so no retain of its strings).
        chunk.withUnsafeBufferPointer { events in
            for j in events.indices { events[j].encode(into: &text); text.byte(UInt8(ascii: "\n")) }
        }
    }

    /// `Writer.caller`, under `cond`: encodes and writes the filling chunk, and empties it.
    private func writeFilling() {
        guard var text = callerText else { return }
        Self.encode(filling, into: &text)
        writeAll(text.bytes)
        callerText = text
        waiting -= filling.count
        filling.removeAll(keepingCapacity: true)
    }

    /// Writes everything still pending and closes the file. Returns the errno of a failed write, or 0.
    @discardableResult
    public func close() -> Int32 {
        if writer == .caller {
            flush()
            cond.lock()
            callerText?.free()
            callerText = nil
            cond.unlock()
            Glibc.close(fd)
            return writeError
        }
        cond.lock()
        closing = true
        cond.signal()
        cond.unlock()
        done.wait()
        Glibc.close(fd)
        return writeError
    }

    private func writerLoop() {
        var batch: [[TraceEvent]] = []
        var text = JSONBytes(capacity: 1 << 20)
        defer { text.free() }
        while true {
            cond.lock()
            if full.isEmpty && droppedSinceReport == 0 && !closing {
                _ = cond.wait(until: Date().addingTimeInterval(Self.flushInterval))
            }
            // Whole chunks first; a partial one when nothing else waits (quiet log, or closing).
            if full.isEmpty && !filling.isEmpty { retireFilling() }
            swap(&batch, &full)
            let lost = droppedSinceReport
            droppedSinceReport = 0
            let finish = closing && batch.isEmpty && lost == 0
            cond.unlock()
            if finish { break }
            var out = 0
            for i in batch.indices {
                out += batch[i].count
                Self.encode(batch[i], into: &text)
                writeAll(text.bytes)
                batch[i].removeAll(keepingCapacity: true)
            }
            if lost > 0 {
                text.clear()
                var d = TraceEvent(kind: .dropped)
                d.time = Clock.nowNs()
                d.bytes = Int64(lost)
                d.reason = "the log writer fell behind; \(lost) events were not recorded (blocking decisions were unaffected)"
                d.encode(into: &text)
                text.byte(UInt8(ascii: "\n"))
                writeAll(text.bytes)
            }
            cond.lock()
            waiting -= out
            for chunk in batch where spare.count < Self.spareChunks { spare.append(chunk) }
            cond.unlock()
            batch.removeAll(keepingCapacity: true)
        }
        done.signal()
    }

    private func writeAll(_ buf: UnsafeBufferPointer<UInt8>) {
        var off = 0
        while off < buf.count {
            let r = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
            if r < 0 {
                if errno == EINTR { continue }
                writeError = errno
                return
            }
            off += r
        }
    }
}

enum Clock {
    static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
