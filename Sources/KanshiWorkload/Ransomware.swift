import Crypto
import FoundationEssentials
import KanshiSystem

/// Simulated ransomware: real AES-256-GCM encryption with a random key that
/// is thrown away, confined to the corpus directory. Nothing is sent
/// anywhere; the note says it is a simulation.
enum Ransomware {
    enum Style { case inPlace, copyDelete, rename, partial, slow }

    static let noteName = "HOW_TO_RESTORE_FILES.txt"
    static let footerMagic = Array("KANSHI-SIM-PARTIAL".utf8)

    static func note(_ run: WorkloadRun) -> [UInt8] {
        Array("""
            !!! YOUR FILES HAVE BEEN ENCRYPTED !!!

            This is a SIMULATION run by Kanshi (`kanshi workload \(run.info.name)`) on a test corpus.
            No key was kept and nothing was sent anywhere. To get the files back, roll the disk back
            or rebuild the corpus with `kanshi corpus build`.

            Victim id: \(String(run.options.seed, radix: 16))

            """.utf8)
    }

    static func seal(_ plaintext: [UInt8], _ key: SymmetricKey) throws(WorkloadError) -> AES.GCM.SealedBox {
        do { return try AES.GCM.seal(plaintext, using: key) } catch { throw .crypto("\(error)") }
    }

    static func encryptAll(_ run: WorkloadRun, style: Style) throws(WorkloadError) {
        let key = SymmetricKey(size: .bits256)
        let targets = try run.candidateFiles { e in
            !e.path.hasSuffix(".enc") && !e.path.hasSuffix(".locked") && !e.path.hasSuffix(noteName)
        }
        var notedFolders: Set<String> = []
        let bytesPerSecond = max(run.options.rateMiB, 0.001) * 1_048_576
        let start = FileSystem.monotonicNs()
        for t in targets {
            let folder = run.dir.parent(of: t.path)
            if notedFolders.insert(folder).inserted {
                let notePath = folder.isEmpty ? noteName : folder + "/" + noteName
                try run.create(notePath, note(run))
            }
            switch style {
            case .inPlace, .slow, .rename:
                let plain = try run.read(t.path)
                let box = try seal(plain, key)
                guard let combined = box.combined else { throw .crypto("no combined form") }
                try run.overwrite(t.path, Array(combined), at: 0)
                if style == .rename { try run.rename(t.path, t.path + ".locked") }
            case .copyDelete:
                let plain = try run.read(t.path)
                let box = try seal(plain, key)
                guard let combined = box.combined else { throw .crypto("no combined form") }
                try run.create(run.freshPath(t.path + ".enc"), Array(combined))
                try run.delete(t.path)
            case .partial:
                let f = try run.dir.open(t.path, .readWrite)
                let n = min(Int(t.size), max(1, run.options.partialKiB) * 1024)
                var head = [UInt8](repeating: 0, count: n)
                let got: Int
                do { got = try head.withUnsafeMutableBufferPointer { p throws(SystemError) in try f.read(into: UnsafeMutableRawBufferPointer(p), at: 0) } } catch { throw .system(error) }
                head.removeLast(n - got)
                run.report.filesRead += 1
                run.report.bytesRead += UInt64(got)
                let box = try seal(head, key)
                // Ciphertext over the head, then a footer: nonce, tag, marker (size grows by the footer).
                try run.overwrite(t.path, Array(box.ciphertext), at: 0)
                let footer = Array(box.nonce) + Array(box.tag) + footerMagic
                try run.overwrite(t.path, footer, at: UInt64(t.size))
            }
            if style == .slow {
                let due = Double(run.report.bytesWritten) / bytesPerSecond
                let elapsed = Double(FileSystem.monotonicNs() - start) / 1e9
                if due > elapsed { FileSystem.sleep(nanoseconds: UInt64((due - elapsed) * 1e9)) }
            }
        }
    }
}
