import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The behaviour log: events are appended in binary form by the tracer
/// thread and turned into JSON lines, in batches, by a writer thread.
/// If more than `capacity` events wait, new ones are dropped and counted;
/// the count is written to the log as a `dropped` event.
public final class EventLog: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let capacity: Int
    private let cond = NSCondition()
    // Guarded by `cond`.
    private var pending: [TraceEvent] = []
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
    public init(path: String, capacity: Int = 1 << 20) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TraceError.logFile(path: path, errno: errno) }
        self.fd = fd
        self.path = path
        self.capacity = capacity
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
        if pending.count >= capacity {
            dropped += 1
            droppedSinceReport += 1
        } else {
            pending.append(event)
            written += 1
            if pending.count == 512 { cond.signal() }
        }
        cond.unlock()
        return seq
    }

    /// Writes everything still pending and closes the file. Returns the errno of a failed write, or 0.
    @discardableResult
    public func close() -> Int32 {
        cond.lock()
        closing = true
        cond.signal()
        cond.unlock()
        done.wait()
        Glibc.close(fd)
        return writeError
    }

    private func writerLoop() {
        var batch: [TraceEvent] = []
        var text = JSONBytes(capacity: 1 << 20)
        defer { text.free() }
        while true {
            cond.lock()
            while pending.isEmpty && droppedSinceReport == 0 && !closing {
                _ = cond.wait(until: Date().addingTimeInterval(0.05))
                if !pending.isEmpty { break }
            }
            swap(&batch, &pending)
            let lost = droppedSinceReport
            droppedSinceReport = 0
            let finish = closing && batch.isEmpty && lost == 0
            cond.unlock()
            if finish { break }
            text.clear()
            // Each event encoded where it lies (borrowed: no copy, so no retain of its strings).
            batch.withUnsafeBufferPointer { events in
                for i in events.indices { events[i].encode(into: &text); text.byte(UInt8(ascii: "\n")) }
            }
            if lost > 0 {
                var d = TraceEvent(kind: .dropped)
                d.time = Clock.nowNs()
                d.bytes = Int64(lost)
                d.reason = "the log writer fell behind; \(lost) events were not recorded (blocking decisions were unaffected)"
                d.encode(into: &text)
                text.byte(UInt8(ascii: "\n"))
            }
            batch.removeAll(keepingCapacity: true)
            writeAll(text.bytes)
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
