import CKanshiVMIRing
import KanshiTrace

/// Who made a guest system call, as the guest kernel's task_struct says.
public struct GuestIdentity: Sendable, Equatable {
    /// Guest address of the task_struct.
    public var task: UInt64
    public var tid: Int32
    public var pid: Int32
    public var ppid: Int32
    public var vcpu: UInt32
    public var comm: String
}

/// A string or structure the plugin read from guest memory for a call.
public struct GuestItem: Sendable, Equatable {
    public enum Tag: UInt8, Sendable {
        case path1 = 1, path2, sockaddr, argv, fdPair, cloneFlags, openHow, socketcall, writeEntropy, fileTimes
    }
    public var tag: Tag
    public var bytes: [UInt8]
    /// Not paged in at the time (`bytes` is empty).
    public var unreadable: Bool
    /// Cut at the plugin's limit.
    public var truncated: Bool

    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// A system call at its entry.
public struct GuestEntry: Sendable {
    public var timeNs: UInt64
    /// A 32-bit call (int 0x80, sysenter, 32-bit syscall): i386 numbers and arguments.
    public var i386: Bool
    public var who: GuestIdentity
    public var cookie: UInt64
    public var nr: Int64
    public var args: SyscallArgs
    public var userIP: UInt64
    public var userSP: UInt64
    public var items: [GuestItem]

    public var name: String { GuestSyscalls.name(nr, i386: i386) }

    /// A call the behaviour model decodes (the plugin's list, and reads for --all-calls).
    public var modelled: Bool {
        kvmi_model_needs(Int32(i386 ? KVMI_ABI_I386 : KVMI_ABI_X86_64), nr) != 0
            || x86_64Number.map { GuestCalls.reads.contains($0) } ?? false
    }

    /// The x86_64 number of the same call (for i386 calls the model decodes), else nil.
    public var x86_64Number: Int64? { i386 ? GuestSyscalls.i386ToX86_64[nr] : nr }

    public func item(_ tag: GuestItem.Tag) -> GuestItem? { items.first { $0.tag == tag } }

    /// The call as the model reads it: its x86_64 number (nil: not one it decodes) and its
    /// arguments, an i386 socketcall unpacked into the call it names and that call's six 32-bit
    /// arguments (nil when the plugin could not read them, or they are cut short).
    var decoded: (nr: Int64?, args: SyscallArgs) {
        guard i386 && nr == GuestCalls.socketcall else { return (x86_64Number, args) }
        let width = MemoryLayout<UInt32>.size
        guard let sc = item(.socketcall), !sc.unreadable, sc.bytes.count >= 6 * width else { return (nil, args) }
        let unpacked = sc.bytes.withUnsafeBytes { b in (0..<6).map { UInt64(b.loadUnaligned(fromByteOffset: $0 * width, as: UInt32.self)) } }
        return (GuestCalls.socketcallNumbers[args[0]], SyscallArgs(unpacked))
    }
}

/// A system call's return, matched to its entry by `cookie`.
public struct GuestReturn: Sendable {
    public var timeNs: UInt64
    public var cookie: UInt64
    public var ret: Int64
    /// Items read again at the return (paths not paged in at entry, descriptors written by the call).
    public var items: [GuestItem]
}

/// One record of the ring.
public enum GuestRecord: Sendable {
    case entry(GuestEntry)
    case ret(GuestReturn)
    /// A whole call written at its return (a call that read nothing at its entry, --all-calls).
    case call(GuestEntry, ret: Int64)
    /// A task ran do_exit with this code (exit status << 8, or the signal).
    case taskExit(timeNs: UInt64, who: GuestIdentity, code: Int64)
    /// The plugin found the guest kernel's KASLR slide.
    case calibrated(timeNs: UInt64, slide: UInt64)
    /// A sample of user code running (exec sampling): the address space (CR3) and the instruction.
    case execSample(timeNs: UInt64, pageTable: UInt64, ip: UInt64, vcpu: UInt32)
    case pad
}

/// A record the decoder cannot make sense of: the plugin and kanshi disagree on the layout.
public struct GuestRecordError: Error, CustomStringConvertible, Sendable {
    public var offset: UInt64
    public var what: String
    public var description: String { "VM sensor ring: bad record at byte \(offset): \(what)" }
}

extension GuestRecord {
    /// Decodes the record at the start of `bytes` (which holds the whole record); returns it and its size.
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(GuestRecordError) -> (GuestRecord, Int) {
        guard bytes.count >= 8 else { throw GuestRecordError(offset: offset, what: "\(bytes.count) bytes left, a record needs 8") }
        let size = Int(bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let type = Int32(bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        guard size >= 8, size % 8 == 0, size <= bytes.count else {
            throw GuestRecordError(offset: offset, what: "size \(size) (room \(bytes.count))")
        }
        func need(_ n: Int) throws(GuestRecordError) {
            guard size >= n else { throw GuestRecordError(offset: offset, what: "type \(type) of \(size) bytes, needs \(n)") }
        }
        switch type {
        case Int32(KVMI_PAD):
            return (.pad, size)
        case Int32(KVMI_ENTRY):
            try need(MemoryLayout<kvmi_entry>.size)
            let e = bytes.loadUnaligned(as: kvmi_entry.self)
            let items = try Self.items(bytes, from: MemoryLayout<kvmi_entry>.size, to: size, offset: offset)
            return (.entry(entry(e, items: items)), size)
        case Int32(KVMI_CALL):
            try need(MemoryLayout<kvmi_call>.size)
            let c = bytes.loadUnaligned(as: kvmi_call.self)
            return (.call(entry(c.e, items: []), ret: c.ret), size)
        case Int32(KVMI_RETURN):
            try need(MemoryLayout<kvmi_return>.size)
            let r = bytes.loadUnaligned(as: kvmi_return.self)
            let items = try Self.items(bytes, from: MemoryLayout<kvmi_return>.size, to: size, offset: offset)
            return (.ret(GuestReturn(timeNs: r.r.time_ns, cookie: r.cookie, ret: r.ret, items: items)), size)
        case Int32(KVMI_TASK_EXIT):
            try need(MemoryLayout<kvmi_task_exit>.size)
            let x = bytes.loadUnaligned(as: kvmi_task_exit.self)
            return (.taskExit(timeNs: x.r.time_ns, who: identity(x.who), code: x.code), size)
        case Int32(KVMI_CALIBRATED):
            try need(MemoryLayout<kvmi_calibration>.size)
            let c = bytes.loadUnaligned(as: kvmi_calibration.self)
            return (.calibrated(timeNs: c.r.time_ns, slide: c.slide), size)
        case Int32(KVMI_EXEC_SAMPLE):
            try need(MemoryLayout<kvmi_exec_sample>.size)
            let x = bytes.loadUnaligned(as: kvmi_exec_sample.self)
            return (.execSample(timeNs: x.r.time_ns, pageTable: x.cr3, ip: x.rip, vcpu: x.vcpu), size)
        default:
            throw GuestRecordError(offset: offset, what: "unknown type \(type)")
        }
    }

    static func entry(_ e: kvmi_entry, items: [GuestItem]) -> GuestEntry {
        let args = withUnsafeBytes(of: e.args) { SyscallArgs($0.bindMemory(to: UInt64.self)) }
        return GuestEntry(timeNs: e.r.time_ns, i386: e.r.abi == UInt16(KVMI_ABI_I386), who: identity(e.who),
                          cookie: e.cookie, nr: e.nr, args: args, userIP: e.user_ip, userSP: e.user_sp, items: items)
    }

    static func identity(_ w: kvmi_identity) -> GuestIdentity {
        let comm = withUnsafeBytes(of: w.comm) { b in String(decoding: b.prefix { $0 != 0 }, as: UTF8.self) }
        return GuestIdentity(task: w.task, tid: w.tid, pid: w.pid, ppid: w.ppid, vcpu: w.vcpu, comm: comm)
    }

    static func items(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, offset: UInt64) throws(GuestRecordError) -> [GuestItem] {
        var out: [GuestItem] = []
        var at = start
        while at + 4 <= end {
            let tag = bytes[at], flags = bytes[at + 1]
            let len = Int(bytes.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self))
            if tag == 0 { break }  // zero padding
            guard at + 4 + len <= end else { throw GuestRecordError(offset: offset, what: "item of \(len) bytes at +\(at) past the record's end") }
            if let t = GuestItem.Tag(rawValue: tag) {
                out.append(GuestItem(tag: t, bytes: Array(bytes[(at + 4)..<(at + 4 + len)]),
                                     unreadable: flags & UInt8(KVMI_ITEM_UNREADABLE) != 0,
                                     truncated: flags & UInt8(KVMI_ITEM_TRUNCATED) != 0))
            }
            at += 4 + ((len + 3) & ~3)
        }
        return out
    }
}
