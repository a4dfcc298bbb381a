import Foundation
import Testing
@testable import KanshiTrace

/// The behaviour log's JSON lines, made byte by byte: exact text, escaping, extremes.
struct TraceEventJSONTests {
    @Test func everyFieldIsWrittenExactly() {
        var e = TraceEvent(kind: .call)
        e.seq = 7; e.time = 1_700_000_000_123_456_789; e.pid = 42; e.tid = -1
        e.call = "getppid"; e.fd = 3; e.fd2 = -100; e.path = "/a\"b\\c\nd\u{1}e é/📀\t"; e.path2 = "/x"
        e.bytes = Int64.min; e.ret = -2; e.argv = ["cat", "", "\u{1f}"]; e.addr = "10.0.2.2:80"; e.child = 0
        e.flags = "O_RDONLY"; e.managed = true; e.blocked = true; e.reason = "why"; e.args = [0, UInt64.max, 10]; e.vm = "sandbox"
        let want = #"{"seq":7,"t":1700000000123456789,"pid":42,"tid":-1,"ev":"call","call":"getppid","fd":3,"fd2":-100,"#
            + #""path":"/a\"b\\c\nd\u0001e é/📀\u0009","path2":"/x","bytes":-9223372036854775808,"ret":-2,"err":"ENOENT","#
            + #""argv":["cat","","\u001f"],"addr":"10.0.2.2:80","child":0,"flags":"O_RDONLY","managed":true,"blocked":true,"#
            + #""reason":"why","args":[0,18446744073709551615,10],"vm":"sandbox"}"#
        #expect(e.json == want)
        let obj = try? JSONSerialization.jsonObject(with: Data(e.json.utf8)) as? [String: Any]
        #expect(obj?["path"] as? String == e.path)
        #expect((obj?["argv"] as? [String]) == e.argv)
    }

    @Test func minimalEventsAndOddResults() {
        var e = TraceEvent(kind: .exit)
        #expect(e.json == #"{"seq":0,"t":0,"pid":0,"tid":0,"ev":"exit"}"#)
        e.ret = -4095  // no name known: E4095
        #expect(e.json.hasSuffix(#""ret":-4095,"err":"E4095"}"#))
        e.ret = -4096  // not an errno: no err
        #expect(e.json.hasSuffix(#""ret":-4096}"#))
        e.ret = 9
        e.path = "plain"
        #expect(e.json.hasSuffix(#""path":"plain","ret":9}"#))
        var lines: [UInt8] = Array("x".utf8)
        e.appendJSON(to: &lines)
        #expect(String(decoding: lines, as: UTF8.self) == "x" + e.json)
    }
}

/// The log reader's direct path gives what the general JSON reader gives, line for line.
struct BehaviourLogParserTests {
    static func same(_ a: TraceEvent, _ b: TraceEvent) -> Bool {
        a.seq == b.seq && a.time == b.time && a.pid == b.pid && a.tid == b.tid && a.kind == b.kind && a.call == b.call
            && a.fd == b.fd && a.fd2 == b.fd2 && a.path == b.path && a.path2 == b.path2 && a.bytes == b.bytes && a.ret == b.ret
            && a.argv == b.argv && a.addr == b.addr && a.child == b.child && a.flags == b.flags && a.managed == b.managed
            && a.blocked == b.blocked && a.reason == b.reason && a.vm == b.vm && a.entropy == b.entropy
    }

    @Test func writtenEventsReadBackTheSameBothWays() throws {
        var rng = SystemRandomNumberGenerator()
        let texts = ["/a\"b\\c\nd\u{1}e é/📀\t", "", "plain", "\u{7f}x\u{2028}", "a/b c", "\\u0041", "𝄞 music"]
        for i in 0..<2000 {
            var e = TraceEvent(kind: TraceEvent.Kind.allCases.randomElement(using: &rng)!)
            e.seq = UInt64(i); e.time = UInt64.random(in: 0...UInt64.max, using: &rng)
            e.pid = Int32.random(in: Int32.min...Int32.max, using: &rng); e.tid = Int32.random(in: -5...5, using: &rng)
            if Bool.random(using: &rng) { e.call = texts.randomElement(using: &rng) }
            if Bool.random(using: &rng) { e.fd = Int32.random(in: -100...100, using: &rng) }
            if Bool.random(using: &rng) { e.path = texts.randomElement(using: &rng) }
            if Bool.random(using: &rng) { e.path2 = texts.randomElement(using: &rng) }
            if Bool.random(using: &rng) { e.bytes = Int64.random(in: Int64.min...Int64.max, using: &rng) }
            if Bool.random(using: &rng) { e.ret = [Int64(0), -2, -4096, 7, Int64.max].randomElement(using: &rng) }
            if Bool.random(using: &rng) { e.argv = (0..<Int.random(in: 0...3, using: &rng)).map { _ in texts.randomElement(using: &rng)! } }
            if Bool.random(using: &rng) { e.addr = "10.0.2.\(i % 255):80" }
            if Bool.random(using: &rng) { e.child = Int32(i) }
            if Bool.random(using: &rng) { e.flags = "rw,creat" }
            e.managed = Bool.random(using: &rng); e.blocked = Bool.random(using: &rng)
            if Bool.random(using: &rng) { e.reason = texts.randomElement(using: &rng) }
            if Bool.random(using: &rng) { e.args = [1, UInt64.max] }
            if Bool.random(using: &rng) { e.entropy = Double(Int.random(in: 0...8000, using: &rng)) / 1000 }
            if Bool.random(using: &rng) { e.vm = "sandbox" }
            let line = Data(e.json.utf8)
            let fast = try #require(line.withUnsafeBytes { BehaviourLogParser.event($0) }, "\(e.json)")
            let general = try BehaviourLogReader.generalEvent(fromJSON: line)
            #expect(Self.same(fast, general), "\(e.json)")
            #expect(Self.same(fast, e), "\(e.json)")
        }
    }

    @Test(arguments: [
        #"{"seq":1,"ev":"open","pid":1e3}"#, #"{"ev":"open","path":null}"#, #"{"ev":"open","x":{"a":1}}"#,
        #"{"ev":"open"} trailing"#, #"{"ev":"teleport"}"#, #"{"seq":1}"#, #"{"ev":"open","managed":1}"#,
        #"{"ev":"open","path":"\ud800"}"#, #"{"ev":"open","seq":-1}"#, #"{ "ev" : "open" , "pid" : 3 }"#,
    ])
    func unusualLinesGoTheGeneralWayAndGiveItsAnswer(_ line: String) {
        let data = Data(line.utf8)
        let viaReader: Result<TraceEvent, Error> = Result { try BehaviourLogReader.event(fromJSON: data) }
        let general: Result<TraceEvent, Error> = Result { try BehaviourLogReader.generalEvent(fromJSON: data) }
        switch (viaReader, general) {
        case (.success(let a), .success(let b)): #expect(Self.same(a, b), "\(line)")
        case (.failure(let a), .failure(let b)): #expect("\(a)" == "\(b)", "\(line)")
        default: Issue.record("\(line): \(viaReader) vs \(general)")
        }
    }
}
