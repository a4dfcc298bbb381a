import KanshiSystem

/// The files of a journal directory.
struct JournalLayout {
    var directory: String
    /// Segment indices, ascending.
    var segments: [UInt64]
    /// Leftover temporary files from an interrupted segment creation.
    var temporaries: [String]

    func path(of index: UInt64) -> String { directory + "/" + JournalFormat.segmentName(index) }

    /// Lists a journal directory, refusing one that holds foreign files or a
    /// gap in its segment numbers.
    static func read(directory: String) throws -> JournalLayout {
        guard FileSystem.isDirectory(directory) else {
            throw JournalError.notAJournal(directory: directory, reason: FileSystem.exists(directory) ? "not a directory" : "no such directory")
        }
        let names = try wrap { () throws in try FileSystem.list(directory) }
        var segments: [UInt64] = []
        var temporaries: [String] = []
        var foreign: [String] = []
        for name in names {
            if let i = JournalFormat.segmentIndex(fromName: name) {
                segments.append(i)
            } else if name.hasSuffix(JournalFormat.segmentSuffix + ".tmp") {
                temporaries.append(name)
            } else if name == "LOCK" || name.hasPrefix("index") || name.hasPrefix(StagingArea.pointerName) {
                continue
            } else {
                foreign.append(name)
            }
        }
        if !foreign.isEmpty {
            throw JournalError.notAJournal(directory: directory,
                               reason: "it holds files that are not journal segments (\(foreign.prefix(3).joined(separator: ", "))); use an empty or new directory")
        }
        segments.sort()
        for (i, s) in segments.enumerated() where s != segments[0] + UInt64(i) {
            throw JournalError.corrupt(location: JournalLocation(segmentPath: directory + "/" + JournalFormat.segmentName(segments[0] + UInt64(i)), offset: 0, sequence: nil),
                           reason: "segment is missing (found \(segments[i - 1]) then \(s))")
        }
        if let first = segments.first, first != 1 {
            throw JournalError.corrupt(location: JournalLocation(segmentPath: directory + "/" + JournalFormat.segmentName(1), offset: 0, sequence: nil),
                           reason: "the journal's first segment is missing (it starts at segment \(first))")
        }
        return JournalLayout(directory: directory, segments: segments, temporaries: temporaries)
    }
}
