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
