import Foundation
import KanshiTrace

/// The VM sensor's result for a person (the summary `kanshi trace` prints, plus the sensor's
/// counters) and for a program (a JSON object).
public enum VMSensorReport {
    public static func text(_ r: VMSensor.Result, log: String, managedSet: String) -> String {
        var s = r.summary
        s.notes.append("egress attempts by managed processes (\(r.egressAttempts.count)):")
        for a in r.egressAttempts.prefix(200) { s.notes.append("  \(a)") }
        if r.framesSeen > 0 || r.framesDropped > 0 {
            s.notes.append("network: \(r.framesSeen) frames sent by the guest, \(r.framesDropped) dropped")
            for (flow, n) in r.droppedFlows.sorted(by: { $0.key < $1.key }) {
                let parts = flow.split(separator: " ", maxSplits: 1)
                let who = parts.first == "0" ? "no process (fail closed)" : "pid \(parts.first ?? "?")"
                s.notes.append("  \(n) frames to \(parts.count > 1 ? String(parts[1]) : "?") dropped: \(who)")
            }
        }
        let st = r.stats
        let pti = st.pageTableIsolation.map { $0 ? "on" : "off" } ?? "not seen"
        s.notes.append("VM sensor: \(st.calls) system calls seen, \(st.recorded) recorded (the calls the behaviour model needs, or all with --all-calls), \(st.returns) returns matched, \(r.unreturned) completed without a result (exec, signals); \(r.events) events logged; vCPUs \(st.vcpus); KASLR slide \(st.calibrated ? "0x" + String(st.slide, radix: 16) : "not found"); page-table isolation \(pti); guest memory read \(Self.describe(st.guestMemory))\(st.stackTopUsed == nil ? "" : st.stackTopUsed! ? "; pt_regs found from the per-cpu stack top" : "; pt_regs read from registers (the per-cpu stack top disagreed)")")
        if st.waits > 0 {
            s.notes.append(String(format: "note: the guest was held %.2f s in all (%llu times) while kanshi caught up with a full ring; nothing was lost", Double(st.waitedNs) / 1e9, st.waits))
        }
        if st.dropped > 0 { s.notes.append("WARNING: \(st.dropped) records were dropped by the plugin: the ring was full while kanshi was not reading it") }
        if st.unreadable > 0 { s.notes.append("note: \(st.unreadable) arguments or identities could not be read from guest memory (not paged in at entry nor at return)") }
        if st.evicted > 0 { s.notes.append("note: \(st.evicted) calls waiting for their return were evicted (the plugin's table of pending calls was full)") }
        if !st.calibrated { s.notes.append("WARNING: the plugin never found the guest kernel's system call entry: no call was watched") }
        if let e = st.error { s.notes.append("plugin error: \(e)") }
        if let e = r.error { s.notes.append("ERROR: \(e)") }
        return s.text.replacingOccurrences(of: "== kanshi trace summary ==", with: "== kanshi VM sensor summary ==")
            + "log: \(log)  managed set: \(managedSet)"
    }

    static func describe(_ access: VMIRing.GuestMemoryAccess) -> String {
        switch access {
        case .qemu: return "through QEMU"
        case .notFound: return "through QEMU (the RAM's mapping was not found)"
        case .direct: return "directly (page tables walked in the RAM mapping)"
        case .disagreed: return "through QEMU (a direct read differed from QEMU's: direct reads turned off)"
        }
    }

    public static func json(_ r: VMSensor.Result) -> [String: Any] {
        let st = r.stats
        var o: [String: Any] = [
            "calls": st.calls, "recorded": st.recorded, "returns": st.returns, "dropped": st.dropped, "ringWaits": st.waits,
            "ringWaitedSeconds": Double(st.waitedNs) / 1e9, "unreadable": st.unreadable,
            "evicted": st.evicted, "unreturned": r.unreturned, "events": r.events, "calibrated": st.calibrated,
            "vcpus": st.vcpus, "egressAttempts": r.egressAttempts, "framesSeen": r.framesSeen, "framesDropped": r.framesDropped,
            "managedProcesses": r.managed.processes.map { ["pid": Int($0.pid), "exe": $0.exe, "why": $0.reason.why] as [String: Any] },
            "managedFiles": r.managed.files.values.sorted { $0.path < $1.path }.map { ["path": $0.path, "why": $0.reason.why] },
        ]
        if st.calibrated { o["kaslrSlide"] = "0x" + String(st.slide, radix: 16) }
        if let pti = st.pageTableIsolation { o["pageTableIsolation"] = pti }
        o["guestMemory"] = st.guestMemory.rawValue
        if let used = st.stackTopUsed { o["stackTop"] = used }
        if r.execution.total > 0 {
            let w = r.execution.allWindows
            o["execution"] = ["samples": r.execution.total, "windows": w.count, "pagesMax": w.map(\.pages).max() ?? 0] as [String: Any]
        }
        if let e = r.error ?? st.error { o["error"] = e }
        return o
    }
}

/// Where the plugin is.
public enum VMSensorPaths {
    /// $KANSHI_VMI_PLUGIN, else libkanshi-vmi.so beside the kanshi executable (SwiftPM puts both in .build/<config>).
    public static var plugin: String {
        if let p = ProcessInfo.processInfo.environment["KANSHI_VMI_PLUGIN"], !p.isEmpty { return p }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent + "/libkanshi-vmi.so"
    }
}
