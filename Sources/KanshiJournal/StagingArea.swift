import Crypto
import Foundation
import KanshiSystem
#if canImport(Glibc)
import Glibc
#endif

/// Memory between the journal's appenders and its open segment file.
///
/// An append copies its records into a ring of memory and returns. Two
/// threads of the area's own take it from there, neither waiting for the
/// other: one hashes what was appended (the segment's running SHA-256), the
/// other writes it to the segment with direct I/O, in large aligned pieces,
/// from memory that is used over and over: no page cache page is filled for
/// the journal, and nothing is read back to hash it.
///
/// The ring is a file under /dev/shm when it can be: a record whose append
/// returned is then in memory the kernel keeps after the process is killed,
/// and the next writer to open the journal writes it to the segment
/// (`recover`). A crash of the machine loses what `sync()` had not made
/// durable, as it would lose the page cache. Without /dev/shm the ring is
/// private memory and a killed server loses its last unwritten records.
///
/// Layout of the ring's file: a 4096-byte header, then `capacity` bytes;
/// segment byte `x` sits at ring byte `x % capacity`. The header holds the
/// segment index and the range `start..<end` of segment bytes the ring holds
/// that may not be in the file yet.
final class StagingArea: @unchecked Sendable {
    // SAFETY: every mutable field is guarded by `condition`, except `sha`,
    // which the hashing thread alone updates while `hashed < end`, and which
    // `digest()` reads only once `hashed == end` with the appender (the
    // journal writer's lock) holding `end` still. Ring bytes at or past `end`
    // are written by the single appender (the writer's lock) before `end`
    // moves past them, and only where both threads are done (`start`);
    // bytes below `end` are only read.
    static let pointerName = "STAGING"
    /// Names of the shared files start so.
    static let sharedPrefix = "kanshi-journal-"
    static let block = 4096
    private static let headerBytes = 4096
    private static let magic: UInt64 = 0x3145_4741_5453_4A4B  // "KJSTAGE1" little-endian
    /// Wake the writing thread once this much waits; less is written after `linger`.
    private static let eager: UInt64 = 1 << 20
    private static let linger: TimeInterval = 0.002
    private static let maxWrite = 8 << 20
    /// The threads' nice value: measured at queue depth 1 on two cores, the
    /// client and the request thread going first gave 10-20 % more IOPS.
    private static let threadNice: Int32 = 10

    let capacity: Int
    private let memory: MappedMemory
    private let ring: UnsafeMutableRawPointer
    private let header: UnsafeMutableRawPointer
    private let bounce: UnsafeMutableRawBufferPointer
    private let condition = NSCondition()
    private var file: SystemFile?
    private var segment: UInt64 = 0
    private var end: UInt64 = 0
    private var hashed: UInt64 = 0
    private var written: UInt64 = 0
    private var start: UInt64 = 0
    private var sha = SHA256()
    /// Threads asleep with nothing to do: the next append wakes them.
    private var idle = 0
    /// Callers waiting for the threads (space, a digest, written bytes): no lingering then.
    private var waiting = 0
    /// Tests: the threads do nothing once set (a writer killed before they could).
    private var paused = false
    private var stopped = false
    private var failure: (any Error)?
    private var threads: [Thread] = []

    /// The shared file's path, nil for private memory.
    var path: String? { memory.path }

    /// Maps the ring: a new file under `sharedDirectory` when possible
    /// (recorded in the journal directory's STAGING file), else private memory.
    init(journal directory: String, capacity requested: Int, sharedDirectory: String? = "/dev/shm") throws {
        let cap = max(requested, JournalFormat.maxRecordLength + 2 * Self.block)
        capacity = (cap + Self.block - 1) / Self.block * Self.block
        let size = Self.headerBytes + capacity
        var mem: MappedMemory?
        if let shm = sharedDirectory, FileSystem.isDirectory(shm) {
            let path = shm + "/" + Self.sharedPrefix + "\(getpid())-\(UInt64.random(in: 0...UInt64.max).hex)"
            do {
                let m = try MappedMemory(path: path, size: size, create: true)
                try Self.writePointer(directory: directory, to: path)
                mem = m
            } catch {
                try? FileSystem.remove(path)
            }
        }
        if mem == nil {
            try? FileSystem.remove(directory + "/" + Self.pointerName)
            mem = try wrap { () throws in try MappedMemory(anonymousSize: size) }
        }
        memory = mem!
        header = memory.bytes.baseAddress!
        ring = memory.bytes.baseAddress! + Self.headerBytes
        bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.block, alignment: Self.block)
        header.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt64.self)
        header.storeBytes(of: UInt64(capacity).littleEndian, toByteOffset: 8, as: UInt64.self)
        let identity = Self.identity(of: directory)
        header.storeBytes(of: identity.0.littleEndian, toByteOffset: 40, as: UInt64.self)
        header.storeBytes(of: identity.1.littleEndian, toByteOffset: 48, as: UInt64.self)
        for job in [Job.hash, Job.write] {
            let t = Thread { [self] in loop(job) }
            t.name = job == .hash ? "kanshi.journal.hash" : "kanshi.journal.write"
            threads.append(t)
            t.start()
        }
    }

    deinit { bounce.deallocate() }

    /// Starts on a segment whose bytes `start..<start+tail.count` are `tail`
    /// (the file already holds them) and whose bytes before `start + tail.count`
    /// hash to `sha`. `start` must be a multiple of 4096. Call only when the
    /// previous segment is finished (`finishSegment()`).
    func begin(file: SystemFile, segment: UInt64, start: UInt64, tail: UnsafeRawBufferPointer, sha: SHA256) {
        precondition(start % UInt64(Self.block) == 0 && tail.count <= capacity)
        condition.lock()
        defer { condition.unlock() }
        self.file = file
        self.segment = segment
        self.start = start
        end = start + UInt64(tail.count)
        hashed = end
        written = end
        self.sha = sha
        copyIn(tail, at: start)
        header.storeBytes(of: segment.littleEndian, toByteOffset: 16, as: UInt64.self)
        publishHeader()
    }

    /// Copies records to the ring after what is there; returns the new end.
    /// `flat` is every record's pieces in order; `split` gives them record by
    /// record, asked for only when the ring is too full to take all at once
    /// (then it waits for room record by record).
    func append(_ flat: [UnsafeRawBufferPointer], split: () -> [[UnsafeRawBufferPointer]]) throws -> UInt64 {
        let room = UInt64(capacity)
        condition.lock()
        var at = end
        let total = UInt64(flat.reduce(0) { $0 + $1.count })
        // The usual case: room for all of it now, one piece of work.
        let groups = at + total - start <= room ? [flat] : split()
        condition.unlock()
        for pieces in groups {
            let n = UInt64(pieces.reduce(0) { $0 + $1.count })
            condition.lock()
            if at + n - start > room {
                // Hand over what is copied so far, and wait for the threads to make room.
                publish(at)
                waitForThreads { at + n - start <= room }
            }
            if let failure { condition.unlock(); throw failure }
            condition.unlock()
            for p in pieces where p.count > 0 {
                copyIn(p, at: at)
                at += UInt64(p.count)
            }
        }
        condition.lock()
        publish(at)
        condition.unlock()
        return at
    }

    /// The SHA-256 of the segment's bytes before the current end. The caller
    /// keeps appends out while it waits.
    func digest() throws -> [UInt8] {
        condition.lock()
        defer { condition.unlock() }
        waitForThreads { hashed >= end }
        if let failure { throw failure }
        return Array(sha.finalizeCopy())
    }

    /// Waits until the segment file holds every byte before `target`; at
    /// once if the area has moved on from `segment` (it drained it first).
    func waitWritten(_ target: UInt64, segment: UInt64? = nil) throws {
        condition.lock()
        defer { condition.unlock() }
        waitForThreads { written >= target || (segment != nil && segment != self.segment) }
        if let failure { throw failure }
    }

    /// Waits until both threads are done with everything appended (the file
    /// holds it and it is hashed), then cuts the zeros that padded the file's
    /// last block. `begin` may then switch segments: neither thread is still
    /// working on the old one.
    func finishSegment() throws {
        condition.lock()
        defer { condition.unlock() }
        waitForThreads { written >= end && hashed >= end }
        if let failure { throw failure }
        if let file { try wrap { () throws in try file.truncate(to: end) } }
    }

    /// Tests: the threads stop working (records stay in memory).
    func pause() {
        condition.lock()
        paused = true
        condition.unlock()
    }

    /// Ends the threads (after `finishSegment()` if nothing may be lost). With
    /// `journal`, also removes the shared file and the journal's pointer to
    /// it; without, leaves them for the next writer to recover from.
    func stop(journal directory: String?) {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
        if let directory, let p = memory.path {
            try? FileSystem.remove(directory + "/" + Self.pointerName)
            try? FileSystem.remove(p)
        }
    }

    // MARK: - Internals

    /// Wakes the threads and waits (lock held) until `done` holds, a thread
    /// failed, or the area stopped.
    private func waitForThreads(until done: () -> Bool) {
        while !done() && failure == nil && !stopped {
            waiting += 1
            condition.broadcast()
            condition.wait()
            waiting -= 1
        }
    }

    /// Called with the lock held.
    private func publish(_ newEnd: UInt64) {
        guard newEnd > end else { return }
        end = newEnd
        header.storeBytes(of: end.littleEndian, toByteOffset: 32, as: UInt64.self)
        if idle > 0 || end - min(written, hashed) >= Self.eager { condition.broadcast() }
    }

    /// Called with the lock held.
    private func publishHeader() {
        header.storeBytes(of: start.littleEndian, toByteOffset: 24, as: UInt64.self)
        header.storeBytes(of: end.littleEndian, toByteOffset: 32, as: UInt64.self)
    }

    private func copyIn(_ p: UnsafeRawBufferPointer, at offset: UInt64) {
        var done = 0
        while done < p.count {
            let r = Int((offset + UInt64(done)) % UInt64(capacity))
            let n = min(p.count - done, capacity - r)
            (ring + r).copyMemory(from: p.baseAddress! + done, byteCount: n)
            done += n
        }
    }

    /// Calls `body` with the ring's pieces holding segment bytes `range`.
    private func pieces(_ range: Range<UInt64>, maxPiece: Int = .max, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) rethrows {
        var at = range.lowerBound
        while at < range.upperBound {
            let r = Int(at % UInt64(capacity))
            let n = min(Int(range.upperBound - at), capacity - r, maxPiece)
            try body(at, UnsafeRawBufferPointer(start: ring + r, count: n))
            at += UInt64(n)
        }
    }

    private enum Job { case hash, write }

    /// Where `job` has got to (called with the lock held).
    private func done(_ job: Job) -> UInt64 { job == .hash ? hashed : written }

    /// One of the two threads: one hashes what was appended, the other
    /// writes it to the file; neither waits for the other.
    private func loop(_ job: Job) {
        // Background work: the threads serving requests, and the client on
        // the same machine, go first; a full ring makes room by stalling appends.
        Host.setCurrentThreadNice(Self.threadNice)
        condition.lock()
        while true {
            // Wait for work: at once when much waits or someone waits on us,
            // else give more records `linger` to arrive.
            while !stopped {
                if failure != nil { condition.wait(); continue }
                let pending = end - done(job)
                if pending == 0 || paused {
                    idle += 1
                    condition.wait()
                    idle -= 1
                    continue
                }
                if pending >= Self.eager || waiting > 0 { break }
                if !condition.wait(until: Date(timeIntervalSinceNow: Self.linger)) { break }
            }
            if stopped { break }
            let target = end, from = done(job)
            let f = file!
            condition.unlock()

            var error: (any Error)?
            switch job {
            case .hash:
                pieces(from..<target) { _, p in sha.update(bufferPointer: p) }
            case .write:
                do { try write(from..<target, to: f) } catch let e { error = e }
            }

            condition.lock()
            if let error {
                failure = error
            } else {
                if job == .hash { hashed = target } else { written = target }
                // Ring bytes both threads are done with can be reused; the
                // block holding `written` is rewritten whole next time.
                let b = UInt64(Self.block)
                start = min(written / b * b, hashed / b * b)
                publishHeader()
            }
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Writes segment bytes `range` from the ring: whole blocks straight from
    /// the ring (starting at the block holding `range`'s start, which the
    /// ring still holds), a last partial block padded with zeros.
    private func write(_ range: Range<UInt64>, to f: SystemFile) throws {
        let b = UInt64(Self.block)
        let alignedStart = range.lowerBound / b * b, alignedEnd = range.upperBound / b * b
        if alignedEnd > alignedStart {
            try pieces(alignedStart..<alignedEnd, maxPiece: Self.maxWrite) { at, p in
                try wrap { () throws in try f.write(p, at: at) }
            }
        }
        if range.upperBound > alignedEnd {
            var k = 0
            pieces(alignedEnd..<range.upperBound) { _, p in
                (bounce.baseAddress! + k).copyMemory(from: p.baseAddress!, byteCount: p.count)
                k += p.count
            }
            UnsafeMutableRawBufferPointer(rebasing: bounce[k...]).initializeMemory(as: UInt8.self, repeating: 0)
            try wrap { () throws in try f.write(UnsafeRawBufferPointer(bounce), at: alignedEnd) }
        }
    }

    // MARK: - The shared file across a crash

    private static func identity(of directory: String) -> (UInt64, UInt64) {
        var st = stat()
        guard stat(directory, &st) == 0 else { return (0, 0) }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    private static func writePointer(directory: String, to path: String) throws {
        let pointer = directory + "/" + pointerName
        let tmp = pointer + ".tmp"
        try wrap { () throws in
            let f = try SystemFile(path: tmp, mode: [.readWrite, .create, .truncate])
            let text = Array((path + "\n").utf8)
            try text.withUnsafeBytes { (b) throws in try f.write(b, at: 0) }
            try FileSystem.rename(tmp, pointer)
        }
    }

    /// What `recover` did.
    struct Recovered {
        var segment: UInt64
        var bytes: UInt64
        var sharedFile: String
    }

    /// Writes to the last segment the records a killed writer had staged in
    /// shared memory but not yet written, then removes that memory. Call with
    /// the journal locked, before the last segment is scanned. Returns nil
    /// when there was nothing to recover.
    static func recover(directory: String, lastSegment: UInt64?, segmentPath: (UInt64) -> String) throws -> Recovered? {
        let pointer = directory + "/" + pointerName
        try? FileSystem.remove(pointer + ".tmp")
        guard FileSystem.exists(pointer) else { return nil }
        let shared = JournalWriter.stagingFile(of: directory) ?? ""
        // Only a ring this journal made is ever read or removed: the name a
        // writer gives it, and a header naming this directory. Anything else
        // (a damaged or copied pointer) loses the pointer and nothing more.
        let name = shared.split(separator: "/").last.map(String.init) ?? ""
        guard shared.hasPrefix("/"), name.hasPrefix(sharedPrefix), let last = lastSegment,
              let fileSize = try? SystemFile(path: shared, mode: .readOnly).size(), fileSize > UInt64(headerBytes),
              let memory = try? MappedMemory(path: shared, size: Int(fileSize), create: false) else {
            try? FileSystem.remove(pointer)
            return nil
        }
        let h = UnsafeRawPointer(memory.bytes.baseAddress!)
        func field(_ at: Int) -> UInt64 { UInt64(littleEndian: h.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        let capacity = field(8), segment = field(16), start = field(24), end = field(32)
        let id = identity(of: directory)
        guard field(0) == magic, field(40) == id.0, field(48) == id.1 else {
            try? FileSystem.remove(pointer)
            return nil
        }
        func forget() {
            try? FileSystem.remove(shared)
            try? FileSystem.remove(pointer)
        }
        guard capacity > 0, capacity % UInt64(block) == 0, UInt64(headerBytes) + capacity <= fileSize,
              segment == last, start <= end, end - start <= capacity else {
            // Ours, but for a segment already sealed (drained before) or damaged.
            forget()
            return nil
        }
        // An error from here on keeps the shared file, so a later open can try again.
        let file = try wrap { () throws in try SystemFile(path: segmentPath(segment), mode: .readWrite) }
        let ring = h + headerBytes
        var at = start
        while at < end {
            let r = at % capacity
            let n = min(end - at, capacity - r)
            try wrap { () throws in try file.write(UnsafeRawBufferPointer(start: ring + Int(r), count: Int(n)), at: at) }
            at += n
        }
        // Zeros a writer padded its last block with are not records.
        if try wrap({ () throws in try file.size() }) > end { try wrap { () throws in try file.truncate(to: end) } }
        try wrap { () throws in try file.syncData() }
        forget()
        return Recovered(segment: segment, bytes: end - start, sharedFile: shared)
    }
}

extension UInt64 {
    fileprivate var hex: String { String(self, radix: 16) }
}
