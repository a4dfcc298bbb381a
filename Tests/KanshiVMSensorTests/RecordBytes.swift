import CKanshiVMIRing
@testable import KanshiVMSensor

/// Records laid out as the plugin writes them (the C structs of CKanshiVMIRing.h).
enum RecordBytes {
    static func item(_ tag: GuestItem.Tag, _ bytes: [UInt8], flags: UInt8 = 0) -> [UInt8] {
        var out: [UInt8] = [tag.rawValue, flags, UInt8(bytes.count & 0xff), UInt8(bytes.count >> 8)] + bytes
        out += [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4)
        return out
    }
    static func path(_ s: String, _ tag: GuestItem.Tag = .path1) -> [UInt8] { item(tag, Array(s.utf8)) }

    static func identity(tid: Int32, pid: Int32, ppid: Int32, comm: String) -> kvmi_identity {
        var w = kvmi_identity()
        w.task = 0xffff_8880_0000_0000 &+ UInt64(tid) * 0x1000
        w.tid = tid; w.pid = pid; w.ppid = ppid; w.vcpu = 0
        withUnsafeMutableBytes(of: &w.comm) { b in for (i, c) in comm.utf8.prefix(15).enumerated() { b[i] = c } }
        return w
    }

    static func finish(_ head: [UInt8], _ items: [[UInt8]]) -> [UInt8] {
        var out = head + items.flatMap { $0 }
        out += [UInt8](repeating: 0, count: (8 - out.count % 8) % 8)
        let size = UInt32(out.count)
        out.withUnsafeMutableBytes { $0.storeBytes(of: size, toByteOffset: 0, as: UInt32.self) }
        return out
    }

    static func entryStruct(type: Int, cookie: UInt64, tid: Int32, pid: Int32?, ppid: Int32, comm: String, nr: Int64,
                            args: [UInt64], i386: Bool, time: UInt64) -> kvmi_entry {
        var e = kvmi_entry()
        e.r.type = UInt16(type); e.r.abi = UInt16(i386 ? KVMI_ABI_I386 : KVMI_ABI_X86_64); e.r.time_ns = time
        e.who = identity(tid: tid, pid: pid ?? tid, ppid: ppid, comm: comm)
        e.cookie = cookie; e.nr = nr
        let a = args + [UInt64](repeating: 0, count: 6 - args.count)
        e.args = (a[0], a[1], a[2], a[3], a[4], a[5])
        return e
    }

    static func entry(cookie: UInt64, tid: Int32, pid: Int32? = nil, ppid: Int32 = 1, comm: String = "prog", nr: Int64,
                      args: [UInt64] = [], items: [[UInt8]] = [], i386: Bool = false, time: UInt64 = 1) -> [UInt8] {
        let e = entryStruct(type: KVMI_ENTRY, cookie: cookie, tid: tid, pid: pid, ppid: ppid, comm: comm, nr: nr, args: args,
                            i386: i386, time: time)
        return finish(withUnsafeBytes(of: e) { Array($0) }, items)
    }

    /// A whole call (KVMI_CALL): the entry as `entry` makes it, with its result.
    static func call(cookie: UInt64, tid: Int32, nr: Int64, args: [UInt64] = [], ret value: Int64, time: UInt64 = 1) -> [UInt8] {
        var c = kvmi_call()
        c.e = entryStruct(type: KVMI_CALL, cookie: cookie, tid: tid, pid: nil, ppid: 1, comm: "prog", nr: nr, args: args,
                          i386: false, time: time)
        c.ret = value
        return finish(withUnsafeBytes(of: c) { Array($0) }, [])
    }

    static func ret(cookie: UInt64, _ value: Int64, items: [[UInt8]] = [], time: UInt64 = 2) -> [UInt8] {
        var r = kvmi_return()
        r.r.type = UInt16(KVMI_RETURN); r.r.time_ns = time
        r.cookie = cookie; r.ret = value
        return finish(withUnsafeBytes(of: r) { Array($0) }, items)
    }

    static func exit(tid: Int32, pid: Int32? = nil, code: Int64) -> [UInt8] {
        var x = kvmi_task_exit()
        x.r.type = UInt16(KVMI_TASK_EXIT); x.r.time_ns = 3
        x.who = identity(tid: tid, pid: pid ?? tid, ppid: 1, comm: "prog")
        x.code = code
        return finish(withUnsafeBytes(of: x) { Array($0) }, [])
    }

    static func decode(_ bytes: [UInt8]) throws -> GuestRecord {
        try bytes.withUnsafeBytes { try GuestRecord.decode($0, at: 0).0 }
    }
}
