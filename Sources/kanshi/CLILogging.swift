import ArgumentParser
import Logging

/// Sets up swift-log once, writing to standard error.
enum CLILogging {
    static func logger(label: String, level: String) throws -> Logger {
        guard let lvl = Logger.Level(rawValue: level.lowercased()) else {
            throw ValidationError("unknown log level '\(level)'; use one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: label)
        logger.logLevel = lvl
        return logger
    }
}
