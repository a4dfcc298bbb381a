import KanshiAnalysis
import KanshiCore

/// The live detector: a recording's block events in as they are journaled, an alert out when
/// the model's run-level rule fires. The model is loaded once; each window goes through it
/// once, when it closes (the open window is looked at as it stands at each evaluation, not
/// kept), so the model's work grows with the run's length. A stacked model's verdict averages
/// are recomputed over the whole run at each update (arithmetic only, no model call).
public final class LiveDetector: @unchecked Sendable {
    public struct Alert: Sendable, Equatable {
        /// The window the rule fired on (0: the recording's first) and its start, ns since the epoch.
        public var window: Int
        public var windowStartNs: UInt64
        /// The model's probability for that window.
        public var probability: Float
    }

    public let detector: LoadedDetector
    public var model: DetectorModel { detector.model }
    private var stream: FeatureStream
    /// Per closed window: its start, bytes written and the model's probability; for a stacked model also the
    /// first stage's probability and the window's features (its verdict averages need them all).
    private var starts: [UInt64] = []
    private var written: [UInt64] = []
    private var probabilities: [Float] = []
    private var stage1: [Float] = []
    private var closed: FeatureTable?
    /// Windows sent through the model (each closed one once, plus the open one at each evaluation).
    public private(set) var windowsPredicted = 0

    public init(model: DetectorModel) throws {
        guard model.featureSet != .process else {
            throw AnalysisError.invalid("a process model reads behaviour logs, not blocks: give it to the process detector (--process-model)")
        }
        let unknown = WindowFeatures.unknown(model.featureNames)
        guard unknown.isEmpty, model.windowNs > 0 else {
            throw AnalysisError.invalid("the model's features \(unknown) (window \(model.windowNs) ns) are not ones this Kanshi computes: retrain it")
        }
        detector = try LoadedDetector(model)
        stream = FeatureStream(windowNs: model.windowNs, names: model.featureNames)
    }

    public func append(_ e: BlockEvent) { stream.append(e) }

    /// Every window so far (the closed ones, then the open one as it stands): start (ns since
    /// the epoch), bytes written in it, and the model's probability.
    public struct Windows: Sendable {
        public var starts: [UInt64]
        public var written: [UInt64]
        public var probabilities: [Float]
    }

    /// Predicts the windows closed since the last update (each once) and the open one.
    public func update() throws -> Windows {
        let done = probabilities.count
        let fresh = stream.closedRows - done
        let view = stream.table(from: done)  // the fresh closed rows, then the open one
        let newClosed = view.prefix(rows: fresh), open = view.suffix(rows: view.rows - fresh)
        var openP: [Float] = []
        if detector.stacked {
            if fresh > 0 {
                stage1 += try detector.stage1Predict(newClosed)
                if closed == nil { closed = newClosed } else { closed!.append(rows: newClosed) }
                probabilities += try detector.predictLast(fresh, of: closed!, stage1: stage1)
            }
            if open.rows > 0 {
                var all = closed ?? open.prefix(rows: 0)
                all.append(rows: open)
                openP = try detector.predictLast(open.rows, of: all, stage1: stage1 + (try detector.stage1Predict(open)))
            }
        } else {
            if fresh > 0 { probabilities += try detector.predict(newClosed) }
            if open.rows > 0 { openP = try detector.predict(open) }
        }
        starts += newClosed.windowStart
        written += newClosed.writtenBytes
        windowsPredicted += fresh + open.rows
        return Windows(starts: starts + open.windowStart, written: written + open.writtenBytes, probabilities: probabilities + openP)
    }

    /// Updates, then returns the alert if the model's rule fires over the windows that end after
    /// `sinceNs` (e.g. a command's start).
    public func evaluate(sinceNs: UInt64) throws -> Alert? {
        let w = try update()
        let windowNs = model.windowNs
        guard let first = w.starts.firstIndex(where: { $0 + windowNs > sinceNs }),
              let i = model.firstAlert(Array(w.probabilities[first...])) else { return nil }
        return Alert(window: first + i, windowStartNs: w.starts[first + i], probability: w.probabilities[first + i])
    }
}
