import KanshiTrace
import Testing
@testable import KanshiRules

@Suite struct EventKindTests {
    /// The engine dispatches behaviour events by a hand-written ordinal: it must be each kind's place.
    @Test func everyBehaviourKindHasItsOwnNumberInTheList() {
        for (i, k) in TraceEvent.Kind.allCases.enumerated() {
            #expect(EventKinds.ordinal(k) == i && EventKinds.all[i] == k.rawValue, "\(k)")
        }
        #expect(EventKinds.all.count < 64 && Set(EventKinds.all).count == EventKinds.all.count)
    }

    @Test func pathPartsAreReadFromTheBytes() {
        #expect(Text.baseName("/a/b.c") == "b.c" && Text.baseName("x") == "x" && Text.baseName("/") == "")
        #expect(Text.directory("/a/b.c") == "/a" && Text.directory("/b") == "/" && Text.directory("b") == "")
        #expect(Text.fileExtension("/a/b.tar.gz") == "gz" && Text.fileExtension("/a/.bashrc") == "" && Text.fileExtension("/a.d/b") == "")
        #expect(Text.withoutExtension("/d/f.docx.enc") == "/d/f.docx" && Text.withoutExtension("/d/.x") == "/d/.x")
        #expect(Text.contains("rw,creat,trunc", "creat") && !Text.contains("rw", "creat") && Text.contains("é€x", "€"))
        #expect(Glob.matches("/home/u/.ssh/id_rsa", pattern: "*/.ssh/id_*") && !Glob.matches("/x/id_rsa", pattern: "*/.ssh/id_*"))
    }

    /// `contains` looks for one byte of the needle (not a slash) and compares the rest there:
    /// it finds what comparing at every place finds.
    @Test func containsFindsWhatComparingAtEveryPlaceFinds() {
        let texts = ["/home/u/.ssh/id_rsa", "/", "//", "/./", "a/.b", "rw,creat,trunc", "", "/.config/systemd/user/x.service",
                     "xx/.", "/.x/./", "////.", "é/€.txt", "/a/b.c/"]
        let needles = ["/.", "/.ssh/", "/", "//", ".", "creat", "/.config/systemd/user/", "x/", "./", "/./", "///", "€.", "c/"]
        for t in texts {
            for n in needles {
                let a = Array(t.utf8), b = Array(n.utf8)
                let everywhere = a.count >= b.count && (0...(a.count - b.count)).contains { Array(a[$0..<($0 + b.count)]) == b }
                #expect(Text.contains(t, n) == everywhere, "\(t) contains \(n)")
            }
        }
    }

    /// The conditions' fast path reads path parts as slices of the path's bytes: the same parts
    /// the string functions give (output templates and keys use those).
    @Test func byteSlicesOfPathsAreTheStringParts() {
        let paths = ["/a/b.c", "x", "/", "", "/b", "b", "/a/b.tar.gz", "/a/.bashrc", ".bashrc", "/a.d/b", "/d/f.docx.enc", "/d/.x",
                     "a.", "/a/b.", "/é/€.txt", "//x//y.z", "/a/b/"]
        func text(_ b: UnsafeRawBufferPointer) -> String { String(decoding: b, as: UTF8.self) }
        for p in paths {
            var copy = p
            copy.withUTF8 { u in
                let b = UnsafeRawBufferPointer(u)
                #expect(text(Bytes.baseName(b)) == Text.baseName(p), "name of \(p)")
                #expect(text(Bytes.directory(b)) == Text.directory(p), "dir of \(p)")
                #expect(text(Bytes.fileExtension(b)) == Text.fileExtension(p), "ext of \(p)")
                #expect(text(Bytes.withoutExtension(b)) == Text.withoutExtension(p), "noext of \(p)")
                for part in ["/", ".", "b.", "€", "", "/a/b.tar.gz/"] {
                    var q = part
                    q.withUTF8 { v in
                        let k = UnsafeRawBufferPointer(v)
                        #expect(Bytes.contains(b, k) == Text.contains(p, part), "\(p) contains \(part)")
                        #expect(Bytes.hasPrefix(b, k) == p.utf8.starts(with: part.utf8), "\(p) startswith \(part)")
                        #expect(Bytes.hasSuffix(b, k) == p.utf8.reversed().starts(with: part.utf8.reversed()), "\(p) endswith \(part)")
                    }
                }
            }
        }
        let set = ByteSet(["dpkg", "apt", "apt-get", "é"])
        for (t, want) in [("apt", true), ("apt-get", true), ("ap", false), ("dpkg", true), ("é", true), ("", false), ("rpm", false)] {
            var c = t
            c.withUTF8 { #expect(set.contains(UnsafeRawBufferPointer($0)) == want, "\(t)") }
        }
    }

    /// Keys hash their text once, from its bytes: equal texts hash equal, and a collision of the
    /// 64-bit hash still compares the strings.
    @Test func keyPartsCompareTheirTexts() {
        #expect(KeyPart.text("/a/b") == KeyPart.text("/a/b") && KeyPart.text("/a/b") != KeyPart.text("/a/c"))
        #expect(KeyPart.string("x", 1) != KeyPart.string("y", 1) && KeyPart.text("") != .none)
        var seen: Set<UInt64> = []
        for i in 0..<10_000 { seen.insert(Array("/data/file-\(i).dat".utf8).withUnsafeBytes { KeyPart.hash($0) }) }
        #expect(seen.count == 10_000)
    }
}

@Suite struct RuleBenchTests {
    /// `bench rules --per-rule`: each alerting rule timed alone (a count with the silent rule it
    /// counts), every one of them, none of the silent ones on their own.
    @Test func everyAlertingRuleIsTimedAlone() throws {
        let set = try RuleSet.builtin()
        let ev = Events()
        ev.start(200, ["kanshi", "workload", "inplace"])
        for i in 0..<50 {
            ev.add(.open, pid: 200, path: "/data/f\(i).docx", flags: "rw", ret: 3)
            ev.add(.close, pid: 200, path: "/data/f\(i).docx", ret: 0, entropy: 7.9)
        }
        let costs = RuleBench.perRule(set, RuleBench.replicate(ev.list, to: 2_000), rounds: 1)
        #expect(costs.base > 0)
        #expect(costs.rules.map(\.rule) == set.rules.filter { !$0.silent }.map(\.name))
        #expect(costs.rules.allSatisfy { $0.seconds >= 0 })
    }
}
