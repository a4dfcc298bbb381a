/// Real-looking text from a seeded generator: sentences of common English
/// words, names and numbers, shaped as notes, markdown, CSV, HTML or code.
public struct TextGenerator {
    public var rng: SeededRandom

    public init(rng: SeededRandom) { self.rng = rng }

    static let words: [String] = """
        the of and to in is that for it as was with be by on not he this are or his from at which but have an they \
        you were her she there been one all we their has would when if so no will more can what about up out them \
        some could into time only other new its also two than first then people may like these over such our \
        after most years made between many through back well before where much should because each just those \
        how work state three year world still own during under last while might great since against right used \
        same another however without few place around found part long number system report project meeting budget \
        quarter review customer order invoice payment schedule team plan design change results data analysis market \
        growth revenue cost account service support client office policy process update version release issue \
        request approval contract delivery shipment warehouse supplier product price discount total balance \
        statement agenda minutes summary proposal draft final notes question answer follow next week month today \
        morning afternoon evening travel flight hotel booking family garden kitchen recipe school homework holiday \
        photo album birthday weekend weather river mountain city street house room window door table chair book \
        letter email phone address name date time list item note task goal progress risk issue action owner status
        """.split(separator: " ").map(String.init)
    static let names = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Gustav", "Hana", "Ivan", "Julia", "Kenji",
                        "Lena", "Marco", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sami", "Tomoko", "Umar", "Vera",
                        "Wen", "Ximena", "Yusuf", "Zoe"]
    static let surnames = ["Anders", "Bauer", "Costa", "Dubois", "Endo", "Fischer", "Garcia", "Hughes", "Ito", "Jensen",
                           "Kowalski", "Lopez", "Meyer", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Tanaka"]
    static let cities = ["Lisbon", "Osaka", "Berlin", "Nairobi", "Toronto", "Lyon", "Krakow", "Austin", "Seoul",
                         "Porto", "Hamburg", "Sapporo", "Leeds", "Bergen", "Turin", "Denver"]

    public mutating func word() -> String { rng.pick(Self.words) }
    public mutating func name() -> String { rng.pick(Self.names) + " " + rng.pick(Self.surnames) }
    public mutating func date() -> String {
        let m = rng.int(1...12), d = rng.int(1...28)
        return "\(rng.int(2019...2025))-\(m < 10 ? "0" : "")\(m)-\(d < 10 ? "0" : "")\(d)"
    }
    public mutating func amount() -> String {
        let cents = rng.int(0...99)
        return "\(rng.int(1...9999)).\(cents < 10 ? "0" : "")\(cents)"
    }

    /// A name made of words, e.g. "quarter-review" (separator given).
    public mutating func slug(_ parts: Int = 2, separator: String = "-") -> String {
        (0..<parts).map { _ in word() }.joined(separator: separator)
    }

    public mutating func sentence() -> String {
        var parts: [String] = []
        for i in 0..<rng.int(6...18) {
            var w = word()
            if i == 0 { w = w.prefix(1).uppercased() + w.dropFirst() }
            switch rng.below(30) {
            case 0: w = name()
            case 1: w = rng.pick(Self.cities)
            case 2: w = String(rng.int(2...500))
            case 3 where i > 2: w += ","
            default: break
            }
            parts.append(w)
        }
        return parts.joined(separator: " ") + (rng.chance(0.1) ? "?" : ".")
    }

    public mutating func paragraph() -> String {
        (0..<rng.int(2...7)).map { _ in sentence() }.joined(separator: " ")
    }

    public mutating func title() -> String {
        (0..<rng.int(2...5)).map { _ in let w = word(); return w.prefix(1).uppercased() + w.dropFirst() }.joined(separator: " ")
    }

    /// Appends pieces until the text reaches about `size` bytes.
    private mutating func fill(_ size: Int, header: String = "", footer: String = "",
                               _ piece: (inout TextGenerator) -> String) -> [UInt8] {
        var out = Array(header.utf8)
        out.reserveCapacity(size + 256)
        while out.count + footer.utf8.count < size { out += Array(piece(&self).utf8) }
        out += Array(footer.utf8)
        return out
    }

    /// Plain text: a title, wrapped paragraphs.
    public mutating func plainText(size: Int) -> [UInt8] {
        let header = title() + "\n" + date() + "\n\n"
        return fill(size, header: header) { g in
            var p = g.paragraph()
            // Wrap at about 72 columns, like a text editor.
            var lines: [String] = [], line = ""
            for w in p.split(separator: " ") {
                if line.count + w.count > 72 { lines.append(line); line = "" }
                line += line.isEmpty ? String(w) : " " + w
            }
            lines.append(line)
            p = lines.joined(separator: "\n")
            return p + "\n\n"
        }
    }

    public mutating func markdown(size: Int) -> [UInt8] {
        fill(size, header: "# " + title() + "\n\n") { g in
            switch g.rng.below(6) {
            case 0: return "## " + g.title() + "\n\n"
            case 1: return (0..<g.rng.int(2...6)).map { _ in "- " + g.sentence() }.joined(separator: "\n") + "\n\n"
            case 2: return "```\n" + (0..<g.rng.int(2...6)).map { _ in "\(g.word())(\(g.rng.int(0...99)))" }.joined(separator: "\n") + "\n```\n\n"
            case 3: return "See [\(g.title())](https://example.org/\(g.slug())) for details.\n\n"
            default: return g.paragraph() + "\n\n"
            }
        }
    }

    public mutating func csv(size: Int) -> [UInt8] {
        var id = 0
        return fill(size, header: "id,date,name,city,item,quantity,amount,status\n") { g in
            id += 1
            let status = g.rng.pick(["paid", "open", "overdue", "cancelled", "shipped"])
            return "\(id),\(g.date()),\(g.name()),\(g.rng.pick(Self.cities)),\(g.word()),\(g.rng.int(1...40)),\(g.amount()),\(status)\n"
        }
    }

    public mutating func html(size: Int) -> [UInt8] {
        let t = title()
        let header = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>\(t)</title>
            <style>body { font-family: sans-serif; max-width: 48em; margin: auto; } td { padding: 2px 8px; }</style>
            </head>
            <body>
            <h1>\(t)</h1>

            """
        return fill(size, header: header, footer: "</body>\n</html>\n") { g in
            switch g.rng.below(5) {
            case 0: return "<h2>\(g.title())</h2>\n"
            case 1: return "<ul>\n" + (0..<g.rng.int(2...5)).map { _ in "  <li>\(g.sentence())</li>" }.joined(separator: "\n") + "\n</ul>\n"
            case 2:
                return "<table>\n" + (0..<g.rng.int(2...6)).map { _ in
                    "  <tr><td>\(g.name())</td><td>\(g.date())</td><td>\(g.amount())</td></tr>"
                }.joined(separator: "\n") + "\n</table>\n"
            default: return "<p>\(g.paragraph())</p>\n"
            }
        }
    }

    private mutating func identifier() -> String { slug(rng.int(1...3), separator: "_") }

    /// A C source file of about `size` bytes.
    public mutating func cSource(size: Int, module: String) -> [UInt8] {
        let header = "/*\n * \(module).c - \(sentence())\n *\n * Copyright (c) \(rng.int(2015...2025)) \(name())\n */\n\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"\(module).h\"\n\n"
        return fill(size, header: header) { g in
            let fn = g.identifier(), a = g.word(), b = g.word()
            var body = "/* \(g.sentence()) */\nstatic int \(fn)(struct \(module)_ctx *ctx, const char *\(a), size_t \(b)_len)\n{\n"
            body += "    if (ctx == NULL || \(a) == NULL)\n        return -1;\n"
            for _ in 0..<g.rng.int(1...6) {
                switch g.rng.below(3) {
                case 0: body += "    for (size_t i = 0; i < \(b)_len; i++) {\n        ctx->\(g.word())[i % \(g.rng.int(4...64))] += \(a)[i];\n    }\n"
                case 1: body += "    if (ctx->\(g.word()) > \(g.rng.int(0...4096))) {\n        fprintf(stderr, \"\(g.word()): %d\\n\", ctx->\(g.word()));\n        return \(g.rng.int(-9...0));\n    }\n"
                default: body += "    ctx->\(g.word())_\(g.word()) = \(g.identifier())(ctx, \(g.rng.int(0...255)));\n"
                }
            }
            return body + "    return 0;\n}\n\n"
        }
    }

    public mutating func cHeader(module: String) -> [UInt8] {
        let guardName = module.uppercased() + "_H"
        var s = "#ifndef \(guardName)\n#define \(guardName)\n\n#include <stddef.h>\n\nstruct \(module)_ctx {\n"
        for _ in 0..<rng.int(3...12) { s += "    \(rng.pick(["int", "size_t", "char *", "double", "unsigned char"])) \(word())_\(word());\n" }
        s += "};\n\n"
        for _ in 0..<rng.int(2...10) { s += "int \(module)_\(identifier())(struct \(module)_ctx *ctx, int \(word()));\n" }
        return Array((s + "\n#endif /* \(guardName) */\n").utf8)
    }

    public mutating func swiftSource(size: Int, typeName: String) -> [UInt8] {
        let header = "// \(typeName).swift\n// \(sentence())\n\nimport Foundation\n\n"
        var members = 0
        return fill(size, header: header + "/// \(sentence())\npublic struct \(typeName) {\n", footer: "}\n") { g in
            members += 1
            let p = g.word(), q = g.word()
            if members == 1 {
                return "    public var \(p): [String: Int] = [:]\n    public var \(q)Count = 0\n\n"
            }
            return """
                    /// \(g.sentence())
                    public mutating func \(g.word())\(g.title().replacingSpaces())(_ \(p): String, \(q): Int) -> Bool {
                        guard \(q) > \(g.rng.int(0...9)) else { return false }
                        self.\(p)\(members) = \(p).count + \(q)
                        return \(p).hasPrefix("\(g.word())")
                    }


                """
        }
    }
}

extension String {
    func replacingSpaces() -> String { String(filter { $0 != " " }) }
}
