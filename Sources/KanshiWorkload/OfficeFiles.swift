/// "Office" documents as real Office Open XML packages (zip containers of XML).
enum OfficeFiles {
    static func xmlEscape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    static let xmlHead = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"

    static func coreProps(_ g: inout TextGenerator, title: String) -> [UInt8] {
        Array((xmlHead + """
            <cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" \
            xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" \
            xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:title>\(xmlEscape(title))</dc:title>\
            <dc:creator>\(g.name())</dc:creator><dcterms:created xsi:type="dcterms:W3CDTF">\(g.date())T09:00:00Z</dcterms:created>\
            </cp:coreProperties>
            """).utf8)
    }

    /// An Office Open XML package: content types, the package relationships
    /// (main part and core properties), the core properties and `parts`.
    static func package(main: String, mainType: String, parts: [(String, [UInt8])],
                        overrides: [(String, String)] = [], core: [UInt8]) throws(WorkloadError) -> [UInt8] {
        let extra = overrides.map { "<Override PartName=\"\($0.0)\" ContentType=\"\($0.1)\"/>" }.joined()
        let types = xmlHead + """
            <Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\
            <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>\
            <Default Extension="xml" ContentType="application/xml"/>\
            <Override PartName="/\(main)" ContentType="\(mainType)"/>\(extra)\
            <Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>\
            </Types>
            """
        let rels = xmlHead + """
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\
            <Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="\(main)"/>\
            <Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>\
            </Relationships>
            """
        return try ZipWriter.archive([
            ("[Content_Types].xml", Array(types.utf8)),
            ("_rels/.rels", Array(rels.utf8)),
            ("docProps/core.xml", core),
        ] + parts)
    }

    /// A .docx of about `size` bytes of document XML (before compression).
    static func docx(_ g: inout TextGenerator, size: Int) throws(WorkloadError) -> [UInt8] {
        let title = g.title()
        var body = "<w:p><w:pPr><w:pStyle w:val=\"Title\"/></w:pPr><w:r><w:t>\(xmlEscape(title))</w:t></w:r></w:p>"
        while body.utf8.count < size {
            body += "<w:p><w:r><w:t xml:space=\"preserve\">\(xmlEscape(g.paragraph()))</w:t></w:r></w:p>"
        }
        let document = xmlHead + "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>"
            + body + "<w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/></w:sectPr></w:body></w:document>"
        return try package(main: "word/document.xml",
                           mainType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
                           parts: [("word/document.xml", Array(document.utf8))], core: coreProps(&g, title: title))
    }

    /// A .xlsx whose sheet XML is about `size` bytes.
    static func xlsx(_ g: inout TextGenerator, size: Int) throws(WorkloadError) -> [UInt8] {
        var rows = "<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>Date</t></is></c><c r=\"B1\" t=\"inlineStr\"><is><t>Name</t></is></c><c r=\"C1\" t=\"inlineStr\"><is><t>Amount</t></is></c></row>"
        var r = 1
        while rows.utf8.count < size {
            r += 1
            rows += "<row r=\"\(r)\"><c r=\"A\(r)\" t=\"inlineStr\"><is><t>\(g.date())</t></is></c><c r=\"B\(r)\" t=\"inlineStr\"><is><t>\(g.name())</t></is></c><c r=\"C\(r)\"><v>\(g.amount())</v></c></row>"
        }
        let sheet = xmlHead + "<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData>" + rows + "</sheetData></worksheet>"
        let workbook = xmlHead + """
            <workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" \
            xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">\
            <sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>
            """
        let workbookRels = xmlHead + """
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\
            <Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>\
            </Relationships>
            """
        return try package(main: "xl/workbook.xml",
                           mainType: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                           parts: [("xl/workbook.xml", Array(workbook.utf8)),
                                   ("xl/_rels/workbook.xml.rels", Array(workbookRels.utf8)),
                                   ("xl/worksheets/sheet1.xml", Array(sheet.utf8))],
                           overrides: [("/xl/worksheets/sheet1.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml")],
                           core: coreProps(&g, title: g.title()))
    }
}

/// Database-like binary files: SQLite-shaped pages of row records, and
/// fixed-size record files with an index.
enum DatabaseFiles {
    static let pageSize = 4096

    /// One 4 KiB page of row records (cells from the end, free space zeroed),
    /// as a B-tree leaf page looks.
    static func page(_ g: inout TextGenerator, number: Int, firstRow: Int) -> [UInt8] {
        var cells: [[UInt8]] = []
        var used = 8
        var row = firstRow
        while true {
            var rec: [UInt8] = []
            rec.appendBE32(UInt32(truncatingIfNeeded: row))
            rec.appendLE64(UInt64(1_600_000_000 + g.rng.below(150_000_000)))
            rec.append(ascii: g.name() + "|" + g.rng.pick(TextGenerator.cities) + "|" + g.amount() + "|" + g.word())
            if used + rec.count + 2 + 2 > pageSize * 3 / 4 { break }
            used += rec.count + 2
            cells.append(rec)
            row += 1
        }
        var p = [UInt8](repeating: 0, count: pageSize)
        p[0] = 0x0D  // leaf table page
        p[3] = UInt8(cells.count >> 8); p[4] = UInt8(cells.count & 0xFF)
        var end = pageSize
        for (i, c) in cells.enumerated() {
            end -= c.count
            p.replaceSubrange(end..<end + c.count, with: c)
            p[8 + 2 * i] = UInt8(end >> 8); p[9 + 2 * i] = UInt8(end & 0xFF)
        }
        p[5] = UInt8(end >> 8); p[6] = UInt8(end & 0xFF)
        p[1] = UInt8(truncatingIfNeeded: number >> 8); p[2] = UInt8(truncatingIfNeeded: number)  // page number, for the eye
        return p
    }

    /// A SQLite-shaped file (header page, then leaf pages) of about `size` bytes.
    static func sqliteLike(_ g: inout TextGenerator, size: Int) -> [UInt8] {
        let pages = max(2, size / pageSize)
        var head = [UInt8](repeating: 0, count: pageSize)
        let magic = Array("SQLite format 3\0".utf8)
        head.replaceSubrange(0..<16, with: magic)
        head[16] = 0x10; head[17] = 0x00  // page size 4096
        head[18] = 1; head[19] = 1; head[21] = 64; head[22] = 32; head[23] = 32
        var n: [UInt8] = []
        n.appendBE32(UInt32(pages))
        head.replaceSubrange(28..<32, with: n)
        let schema = Array("CREATE TABLE \(g.word())s(id INTEGER PRIMARY KEY, created INTEGER, name TEXT, city TEXT, amount REAL, note TEXT)".utf8)
        head.replaceSubrange(pageSize - schema.count..<pageSize, with: schema)
        var out = head
        out.reserveCapacity(pages * pageSize)
        var row = 1
        for i in 1..<pages {
            let p = page(&g, number: i, firstRow: row)
            row += Int(p[3]) << 8 | Int(p[4])
            out += p
        }
        return out
    }

    /// Fixed 64-byte records: id, timestamp, value, flags, a name field.
    static func records(_ g: inout TextGenerator, size: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.append(ascii: "KREC")
        out.appendLE32(1)
        out.appendLE32(64)
        out.appendLE32(UInt32(size / 64))
        var id: UInt32 = 0
        while out.count + 64 <= max(size, 80) {
            id += 1
            out.appendLE32(id)
            out.appendLE64(UInt64(1_650_000_000 + Int(id) * 60 + g.rng.below(60)))
            let v = Double(g.rng.int(0...1_000_000)) / 100
            out.appendLE64(v.bitPattern)
            out.appendLE32(UInt32(g.rng.below(4)))
            var name = Array(g.name().utf8.prefix(40))
            name += [UInt8](repeating: 0, count: 40 - name.count)
            out += name
        }
        return out
    }
}
