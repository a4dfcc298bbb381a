import KanshiSystem

/// SQLite-like: a database file of row pages, then transactions in rollback
/// journal mode: save the old pages to "-journal", fsync, write the new pages
/// at random offsets, fsync, delete the journal.
enum DatabaseWorkload {
    static func run(_ run: WorkloadRun) throws(WorkloadError) {
        let pageSize = DatabaseFiles.pageSize
        guard run.options.databaseMiB >= 1 else { throw .badOption("--db-mib must be at least 1") }
        let pages = (run.options.databaseMiB << 20) / pageSize
        let path = run.freshPath("Data/kanshi-app.db")
        let journal = path + "-journal"
        var text = TextGenerator(rng: run.rng.derived(5))
        // A pool of page images, reused with distinct page numbers: generating
        // every page fresh would take longer than writing it.
        var pool: [[UInt8]] = []
        for i in 0..<64 { pool.append(DatabaseFiles.page(&text, number: i, firstRow: i * 60)) }
        let header = DatabaseFiles.sqliteLike(&text, size: pageSize * 2).prefix(pageSize)
        let db = try run.openNew(path)
        var content: [UInt8] = Array(header)
        content.reserveCapacity(1 << 20)
        var offset: UInt64 = 0
        for p in 1..<pages {
            var page = pool[run.rng.below(pool.count)]
            page[1] = UInt8(truncatingIfNeeded: p >> 8); page[2] = UInt8(truncatingIfNeeded: p)
            content += page
            if content.count >= 1 << 20 || p == pages - 1 {
                try run.append(db, path, content, at: offset)
                offset += UInt64(content.count)
                content.removeAll(keepingCapacity: true)
            }
        }
        do { try db.sync() } catch { throw .system(error) }
        run.report.outputs.append(path)

        for _ in 0..<max(0, run.options.transactions) {
            let touched = (0..<run.rng.int(1...4)).map { _ in 1 + run.rng.below(pages - 1) }
            // Rollback journal: header plus the original pages.
            var j: [UInt8] = [0xD9, 0xD5, 0x05, 0xF9, 0x20, 0xA1, 0x63, 0xD7]
            j.appendBE32(UInt32(touched.count))
            j += [UInt8](repeating: 0, count: 512 - j.count)
            for p in touched {
                var old = [UInt8](repeating: 0, count: pageSize)
                do { _ = try old.withUnsafeMutableBufferPointer { b throws(SystemError) in try db.read(into: UnsafeMutableRawBufferPointer(b), at: UInt64(p * pageSize)) } }
                catch { throw .system(error) }
                run.report.bytesRead += UInt64(pageSize)
                j.appendBE32(UInt32(p))
                j += old
            }
            let jf = try run.openNew(journal)
            try run.append(jf, journal, j, at: 0)
            do { try jf.sync() } catch { throw .system(error) }
            for p in touched {
                var page = pool[run.rng.below(pool.count)]
                page[1] = UInt8(truncatingIfNeeded: p >> 8); page[2] = UInt8(truncatingIfNeeded: p)
                let row = Array(text.name().utf8) + [0x7C] + Array(text.amount().utf8)
                page.replaceSubrange(pageSize - 256..<pageSize - 256 + row.count, with: row)
                try run.append(db, path, page, at: UInt64(p * pageSize))
            }
            do { try db.sync() } catch { throw .system(error) }
            try run.delete(journal)
        }
    }
}
