import Foundation
import KanshiRules
import KanshiTrace
import Testing

/// Bad rules are refused before anything runs, with FILE:LINE:COLUMN and what is wrong.
@Suite struct RuleFileTests {
    func refusal(_ yaml: String) -> String {
        do {
            let s = try Rules.parse(yaml)
            return "accepted \(s.rules.count) rules"
        } catch {
            return "\(error)"
        }
    }

    @Test(arguments: [
        // YAML itself.
        ("- rule: a\n  condition: ev = open\n   severity: high\n", "test.yaml:3:"),
        ("", "test.yaml:1:1: empty rules file"),
        ("rule: a\n", "test.yaml:1:1: expected a list of items"),
        ("- rule: a\n  condition: ev = open\n  condition: ev = close\n", "given twice"),
        // Items and keys.
        ("- rule: a\n  condition: ev = open\n  severty: high\n", "test.yaml:3:3: unknown key 'severty'"),
        ("- name: a\n", "test.yaml:1:3: an item needs list:, macro: or rule:"),
        ("- rule: a\n  severity: high\n", "test.yaml:1:3: rule 'a' needs one of condition:, sequence: or count:"),
        ("- rule: a\n  condition: ev = open\n  severity: urgent\n", "test.yaml:3:13: severity 'urgent': one of informational, low, medium, high, critical"),
        ("- rule: a\n  condition: ev = open\n  actions: [alert, reboot]\n", "test.yaml:3:20: action 'reboot'"),
        ("- rule: a\n  condition: ev = open\n- rule: a\n  condition: ev = close\n", "test.yaml:3:9: rule 'a' is defined twice"),
        // Conditions: the column of the bad word, on its own line in a folded condition.
        ("- rule: a\n  condition: ev = open and pth = /etc/shadow\n", "test.yaml:2:28: unknown field 'pth'"),
        ("- rule: a\n  condition: >\n    ev = open\n    and proc.nam = cat\n", "test.yaml:4:9: unknown field 'proc.nam'"),
        ("- rule: a\n  condition: ev = open and not_a_macro\n", "test.yaml:2:28: unknown field or macro 'not_a_macro'"),
        ("- rule: a\n  condition: ev = open and (path = /x\n", "test.yaml:2:37: expected ')' to close the '(' of column 28"),
        ("- rule: a\n  condition: ev = \"open\n", "string not closed"),
        ("- rule: a\n  condition: ev = open or\n", "the condition ends where a field, macro or '(' was expected"),
        ("- rule: a\n  condition: entropy startswith 7\n", "test.yaml:2:22: entropy is a number: compare it with = != < <= > >= or in"),
        ("- rule: a\n  condition: path > 3\n", "test.yaml:2:19: path is text: compare it with"),
        ("- rule: a\n  condition: bytes > lots\n", "test.yaml:2:22: 'lots' is not a number: bytes is a number"),
        ("- rule: a\n  condition: managed = maybe\n", "test.yaml:2:24: 'maybe': managed is yes/no"),
        ("- rule: a\n  condition: path\n", "test.yaml:2:14: 'path' is text, not yes/no"),
        ("- rule: a\n  condition: path = $read.path\n", "references are for the steps of a sequence"),
        ("- rule: a\n  condition: ev in nolist\n", "test.yaml:2:20: no list named 'nolist'"),
        ("- rule: a\n  condition: ev = opn\n", "test.yaml:2:19: 'opn' is not an event kind"),
        ("- list: k\n  items: [open, shut]\n- rule: a\n  condition: ev in (k)\n", "test.yaml:4:21: 'shut' is not an event kind"),
        // Macros and lists.
        ("- macro: m\n  condition: ev = open and m\n- rule: a\n  condition: m\n", "macro 'm' uses itself (m -> m)"),
        ("- macro: path\n  condition: ev = open\n", "test.yaml:1:10: 'path' is a field"),
        ("- list: l\n  items: [a]\n- list: l\n  items: [b]\n", "test.yaml:3:9: list 'l' is defined twice"),
        ("- list: l\n  items: [a]\n- rule: a\n  condition: l\n", "'l' is a list: use it after in"),
        // Sequences.
        ("- rule: a\n  sequence:\n    within: 5s\n    steps:\n      - name: x\n        condition: ev = open\n", "a sequence needs two steps or more"),
        ("- rule: a\n  sequence:\n    steps:\n      - name: x\n        condition: ev = open\n      - name: y\n        condition: ev = close\n", "sequence needs within:"),
        ("- rule: a\n  sequence:\n    within: soon\n    steps: []\n", "test.yaml:3:13: within: 'soon' is not a duration"),
        ("- rule: a\n  sequence:\n    within: 5s\n    steps:\n      - name: x\n        condition: path = $y.path\n      - name: y\n        condition: ev = close\n",
         "test.yaml:6:27: $y.path: step 'y' comes later"),
        ("- rule: a\n  sequence:\n    within: 5s\n    steps:\n      - name: x\n        condition: ev = open\n      - name: y\n        condition: path = $z.path\n",
         "no earlier step named 'z' (steps: x)"),
        ("- rule: a\n  sequence:\n    within: 5s\n    steps:\n      - name: x\n        condition: ev = open\n      - name: y\n        condition: path = $x.nofield\n",
         "$x.nofield: unknown field 'nofield'"),
        ("- rule: a\n  sequence:\n    within: 5s\n    by: parent\n    steps:\n      - name: x\n        condition: ev = open\n      - name: y\n        condition: ev = close\n",
         "test.yaml:4:9: by: unknown field 'parent'"),
        ("- rule: a\n  sequence:\n    within: 5s\n    steps:\n      - name: x\n        condition: ev = open\n      - name: x\n        condition: ev = close\n",
         "test.yaml:7:15: step 'x' is named twice"),
        // Counts.
        ("- rule: a\n  count:\n    condition: ev = open\n    window: 10s\n", "count needs threshold:"),
        ("- rule: a\n  count:\n    condition: ev = open\n    window: 10s\n    threshold: 0\n", "test.yaml:5:16: count needs threshold"),
        ("- rule: a\n  count:\n    rule: b\n    window: 10s\n    threshold: 3\n", "counts matches of 'b', which is not a rule"),
        ("- rule: b\n  condition: ev = open\n- rule: a\n  count:\n    rule: b\n    window: 10s\n    threshold: 3\n", "make that rule silent: true"),
        ("- rule: a\n  count:\n    condition: ev = open\n    distinct: nofield\n    window: 10s\n    threshold: 3\n", "test.yaml:4:15: distinct: unknown field 'nofield'"),
        // Output and exceptions.
        ("- rule: a\n  condition: ev = open\n  output: \"%proc.name opened %pth\"\n", "test.yaml:3:11: output: %pth is not a field"),
        ("- rule: a\n  condition: ev = open\n  exceptions:\n    - name: x\n      fields: [proc.name, path]\n      values: [[a]]\n", "test.yaml:6:16: values: a row of 1 for 2 field(s)"),
    ])
    func aBadRuleIsRefusedNamingWhereAndWhat(yaml: String, expected: String) {
        let message = refusal(yaml)
        #expect(message.contains(expected), "\(message)")
        #expect(message.hasPrefix("test.yaml:"), "\(message)")
    }

    @Test func aRulesFileThatIsMissingOrNotTextIsRefused() throws {
        #expect(throws: RuleError.self) { _ = try RuleSet.load(path: "/nonexistent/rules.yaml") }
        let path = NSTemporaryDirectory() + "kanshi-rules-\(UUID().uuidString).yaml"
        try Data([0xff, 0xfe, 0x00]).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try RuleSet.load(path: path)
            Issue.record("accepted")
        } catch {
            #expect("\(error)" == "\(path):1:1: not UTF-8 text")
        }
    }

    @Test func theBuiltInSetCompiles() throws {
        let s = try RuleSet.builtin()
        #expect(s.rules.count >= 14)
        #expect(s.rules.allSatisfy { !$0.tags.isEmpty || $0.silent })
    }
}

/// What rules mean: conditions, lists, macros, exceptions, sequences, counts.
@Suite struct RuleSemanticsTests {
    @Test func operatorsListsMacrosAndExceptions() throws {
        let set = try Rules.parse("""
            - list: editors
              items: [vim, nano]
            - list: tools
              items: [editors, sed]
            - macro: etc_write
              condition: ev = open and flags startswith w and path startswith /etc/
            - rule: etc-edit
              condition: etc_write and not proc.name in (tools) and path glob "/etc/*.conf" and not path icontains SKIP
              exceptions:
                - name: known
                  fields: [proc.name, path]
                  comps: [=, startswith]
                  values: [[installer, /etc/app]]
              severity: low
              tags: [t]
              output: "%proc.name wrote %path.name in %path.dir (%path.ext)"
            """)
        let e = Events()
        e.start(10, ["python3"])
        e.add(.open, pid: 10, path: "/etc/app.conf", flags: "w,creat", ret: 3)      // fires
        e.add(.open, pid: 10, path: "/etc/SKIP-me.conf", flags: "w", ret: 3)        // icontains
        e.add(.open, pid: 10, path: "/etc/app.yaml", flags: "w", ret: 3)            // glob
        e.add(.open, pid: 10, path: "/etc/x.conf", flags: "r", ret: 3)              // macro
        e.start(11, ["vim"])                                                        // list in a list
        e.add(.open, pid: 11, path: "/etc/y.conf", flags: "w", ret: 3)
        e.start(12, ["installer"])                                                  // exception
        e.add(.open, pid: 12, path: "/etc/app.conf", flags: "w", ret: 3)
        e.add(.open, pid: 12, path: "/etc/other.conf", flags: "w", ret: 3)          // not the exception's path: fires
        let a = e.alerts(set)
        #expect(a.map(\.output) == ["python3 wrote app.conf in /etc (conf)", "installer wrote other.conf in /etc (conf)"])
        #expect(a.allSatisfy { $0.severity == .low && $0.tags == ["t"] })
    }

    @Test func numbersFlagsExistsAndAncestry() throws {
        let set = try Rules.parse("""
            - rule: big-random-write
              condition: ev = close and bytes >= 1000 and entropy > 7.5 and not managed and proc.anames contains sshd
            - rule: has-addr
              condition: ev = connect and addr exists and proc.pname = bash
            """)
        let e = Events()
        e.start(2, ["sshd"])
        e.start(3, ["bash"], parent: 2)
        e.start(4, ["tool"], parent: 3)
        e.add(.close, pid: 4, path: "/x", entropy: 7.9, bytes: 5000)  // fires
        e.add(.close, pid: 4, path: "/x", entropy: 7.9, bytes: 500)
        e.add(.close, pid: 4, path: "/x", entropy: 6.0, bytes: 5000)
        e.add(.close, pid: 4, path: "/x", bytes: 5000)               // no entropy: false
        e.add(.close, pid: 4, path: "/x", managed: true, entropy: 7.9, bytes: 5000)
        e.add(.connect, pid: 4, ret: 0, addr: "10.0.0.1:80")        // fires
        e.add(.connect, pid: 4, ret: 0)
        e.start(5, ["tool"])
        e.add(.close, pid: 5, path: "/x", entropy: 7.9, bytes: 5000)  // no sshd above
        #expect(e.alerts(set).map(\.rule) == ["big-random-write", "has-addr"])
    }

    @Test func aSequenceJoinsByKeyBindsEarlierStepsAndExpires() throws {
        let set = try Rules.parse("""
            - rule: read-then-send
              sequence:
                by: process
                within: 10s
                steps:
                  - name: read
                    condition: ev = open and flags = r
                  - name: send
                    condition: ev = send and addr != $read.path
              output: "%proc.name sent to %addr after reading %read.path"
            """)
        let e = Events()
        e.start(10, ["a"])
        e.start(11, ["b"])
        let r = e.add(.open, pid: 10, path: "/secret", flags: "r", ret: 3)
        e.add(.send, pid: 11, ret: 10, addr: "1.2.3.4:5")                 // another process: no
        let s = e.add(.send, pid: 10, ret: 10, addr: "1.2.3.4:5")         // fires
        e.add(.send, pid: 10, ret: 10, addr: "1.2.3.4:5")                 // consumed: no
        e.add(.open, pid: 11, path: "/other", flags: "r", ret: 3)
        e.add(.send, pid: 11, ret: 10, addr: "9.9.9.9:9", after: 11_000)  // 11 s later: expired
        let a = e.alerts(set)
        #expect(a.map(\.output) == ["a sent to 1.2.3.4:5 after reading /secret"])
        #expect(a.first?.evidence.compactMap(\.seq) == [r, s])
        #expect(a.first?.key == ["pid": "10"])
    }

    @Test func perStepJoinsAndThisReferences() throws {
        let set = try Rules.parse("""
            - rule: copy-then-delete
              sequence:
                within: 1m
                steps:
                  - name: read
                    condition: ev = open and flags = r
                    by: path
                  - name: copy
                    condition: ev = open and flags contains creat
                    by: path.noext
                  - name: delete
                    condition: ev = unlink
                    by: path
            - rule: renamed-longer
              condition: ev = rename and path2 startswith $this.path and path2 != $this.path
            """)
        let e = Events()
        e.start(10, ["x"])
        e.add(.open, pid: 10, path: "/d/a.txt", flags: "r", ret: 3)
        e.add(.open, pid: 10, path: "/d/b.txt", flags: "r", ret: 3)
        e.add(.open, pid: 10, path: "/d/b.txt.enc", flags: "w,creat", ret: 3)
        e.add(.unlink, pid: 10, path: "/d/a.txt")   // a was not copied: no
        e.add(.unlink, pid: 10, path: "/d/b.txt")   // fires
        e.add(.rename, pid: 10, path: "/d/c", path2: "/d/c.x")
        e.add(.rename, pid: 10, path: "/d/c.x", path2: "/d/c")
        #expect(e.alerts(set).map(\.rule) == ["copy-then-delete", "renamed-longer"])
    }

    /// An open sequence keeps the events its later steps and its output read (the first step's
    /// here, through the move from step to step), and only the evidence of the others.
    @Test func aLaterStepReadsTheFirstStepsEventAndTheOutputTheMiddleOnes() throws {
        let set = try Rules.parse("""
            - rule: read-write-send
              sequence:
                within: 1m
                steps:
                  - name: read
                    condition: ev = open and flags = r
                  - name: write
                    condition: ev = open and flags startswith w and path != $read.path
                  - name: send
                    condition: ev = send and addr contains $read.path.name
              output: "sent %addr after reading %read.path and writing %write.path (pid %write.pid), %send.ev"
            """)
        let e = Events()
        e.start(10, ["x"])
        let r = e.add(.open, pid: 10, path: "/d/key", flags: "r", ret: 3)
        e.add(.open, pid: 10, path: "/d/key", flags: "w", ret: 3)      // the same path: not the write step
        let w = e.add(.open, pid: 10, path: "/d/out", flags: "w", ret: 3)
        e.add(.send, pid: 10, ret: 5, addr: "host:other")               // not the read file's name: no
        let s = e.add(.send, pid: 10, ret: 5, addr: "host:key")
        let a = e.alerts(set)
        #expect(a.map(\.output) == ["sent host:key after reading /d/key and writing /d/out (pid 10), send"])
        #expect(a.first?.evidence.compactMap(\.seq) == [r, w, s])
    }

    @Test func aCountFiresAtItsThresholdOncePerWindowAndDistinctCountsValues() throws {
        let set = try Rules.parse("""
            - rule: many-deletes
              count:
                condition: ev = unlink
                by: process
                distinct: path
                window: 10s
                threshold: 3
              output: "%count files deleted in %window, the last %path"
            """)
        let e = Events()
        e.start(10, ["rm"])
        for _ in 0..<5 { e.add(.unlink, pid: 10, path: "/same") }      // one distinct path
        e.add(.unlink, pid: 10, path: "/a")
        e.add(.unlink, pid: 10, path: "/b")                             // fires: /same, /a, /b
        for i in 0..<10 { e.add(.unlink, pid: 10, path: "/more\(i)") }  // within the window: quiet
        e.add(.unlink, pid: 10, path: "/c", after: 20_000)
        e.add(.unlink, pid: 10, path: "/d")
        e.add(.unlink, pid: 10, path: "/e")                             // a new window: fires again
        let a = e.alerts(set)
        #expect(a.map(\.output) == ["3 files deleted in 10s, the last /b", "3 files deleted in 10s, the last /e"])
        #expect(a.first?.count == 3)
    }

    @Test func aSilentRuleFeedsACountAndRaisesNothingItself() throws {
        let set = try Rules.parse("""
            - rule: odd
              silent: true
              condition: ev = open and path endswith .odd
            - rule: many-odd
              count:
                rule: odd
                by: vm
                window: 1m
                threshold: 2
            """)
        let e = Events()
        e.start(10, ["x"])
        let first = e.add(.open, pid: 10, path: "/a.odd", flags: "r", ret: 3)
        let second = e.add(.open, pid: 10, path: "/b.odd", flags: "r", ret: 3)
        let a = e.alerts(set)
        #expect(a.map(\.rule) == ["many-odd"] && a.first?.evidence.compactMap(\.seq) == [first, second])
    }

    @Test func openSequencesAreBoundedAndCounted() throws {
        let set = try Rules.parse("""
            - rule: open-then-close
              sequence:
                within: 1h
                steps:
                  - name: o
                    condition: ev = open
                    by: path
                  - name: c
                    condition: ev = unlink
                    by: path
            """)
        var limits = RuleEngine.Limits()
        limits.openSequences = 100
        let engine = RuleEngine(set, limits: limits)
        let e = Events()
        for i in 0..<1000 { e.add(.open, pid: 10, path: "/f\(i)", flags: "r", ret: 3) }
        for x in e.list { _ = engine.add(x) }
        #expect(engine.stats.openSequences <= 101 && engine.stats.evictedSequences >= 899)
    }
}
