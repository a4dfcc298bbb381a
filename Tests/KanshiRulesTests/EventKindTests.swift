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
}
