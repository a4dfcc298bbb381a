import Foundation

/// Removes paths (a run's work directory, its shared-memory ring) when this process dies,
/// however it dies: a small shell started under `setpriv --pdeathsig TERM` waits, and the
/// kernel signals it when we are gone — also after `kill -9`, when no `defer` runs.
/// Stopping it normally removes the same paths (they are usually gone by then).
public final class LeftoverReaper: @unchecked Sendable {
    // SAFETY: `process` is set up in init and only stopped afterwards.
    private let process = Process()

    /// Nil when `setpriv` (util-linux) is not there: then nothing cleans up after a `kill -9`.
    public init?(paths: [String]) {
        guard let setpriv = HostProgram.which("setpriv"), let sh = HostProgram.which("sh") else { return nil }
        process.executableURL = URL(fileURLWithPath: setpriv)
        // "$@" are the paths; the shell checks once a second and cleans up on TERM.
        let script = "trap 'rm -rf -- \"$@\"; exit 0' TERM INT HUP; while :; do sleep 1; done"
        process.arguments = ["--pdeathsig", "TERM", "--", sh, "-c", script, "kanshi-reaper"] + paths
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
    }

    /// Ends the reaper (it removes whatever of the paths is left).
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit { stop() }
}
