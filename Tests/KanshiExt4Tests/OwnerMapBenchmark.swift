import Foundation
import Testing
@testable import KanshiExt4

@Suite(.enabled(if: Tools.available, Tools.missingReason))
struct OwnerMapBenchmark {
    /// Prints the time to open a 1 GiB image with ~10k files and build its
    /// owner map, next to `e2fsck -fn` on the same image (a full metadata pass
    /// by the reference implementation). Debug builds are several times slower
    /// than release.
    @Test("owner map of a 1 GiB image with 10k files", .timeLimit(.minutes(10)))
    func ownerMap1GiB() throws {
        let dir = TempDir()
        let src = dir.path + "/src"
        var count = 0
        for d in 0..<100 {
            mkdirs("\(src)/d\(d)")
            for f in 0..<100 {
                let size = 1024 + (d * 7919 + f * 104_729) % (31 * 1024)
                writeFile("\(src)/d\(d)/f\(f)", pseudoRandom(size, seed: UInt64(d * 100 + f + 1)))
                count += 1
            }
        }
        let img = dir.path + "/bench.img"
        try run(Tools.mkfs!, ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", src, img, "1G"])

        let clock = ContinuousClock()
        var map: BlockOwnerMap?
        let ours = try clock.measure {
            let fs = try Ext4FileSystem(reader: try FileImageReader(path: img))
            map = try BlockOwnerMap(fileSystem: fs)
        }
        let fsck = try clock.measure {
            do { try run(Tools.fsck!, ["-fn", img]) } catch let e as CommandFailed where e.status == 1 {}
        }
        let m = try #require(map)
        let files = Set(m.runs.compactMap { r -> UInt32? in if case let .file(i, _, _) = r.owner { return i } else { return nil } })
        #expect(files.count >= count)
        let ratio = Double(ours.components.seconds) + Double(ours.components.attoseconds) / 1e18
        let ref = Double(fsck.components.seconds) + Double(fsck.components.attoseconds) / 1e18
        print("ext4 owner map: 1 GiB image, \(count) files, \(m.runCount) runs: built in \(ours) (e2fsck -fn: \(fsck), ratio \(String(format: "%.2f", ratio / ref)))")
    }
}
