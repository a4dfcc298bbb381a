import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// An NBD server (fixed newstyle, simple replies) serving one backend to any
/// number of clients at once, over a Unix socket or TCP.
public final class NBDServer: Sendable {
    public enum Endpoint: Sendable, CustomStringConvertible {
        case unix(path: String)
        case tcp(host: String, port: Int)

        /// The NBD URI a client such as qemu or nbdcopy takes.
        public var description: String {
            switch self {
            case .unix(let path): "nbd+unix:///?socket=\(path)"
            case .tcp(let host, let port): "nbd://\(host.contains(":") ? "[\(host)]" : host):\(port)/"
            }
        }
    }

    let export: NBDExport
    let group: any EventLoopGroup
    let logger: Logger
    private let connections = NIOLockedValueBox<UInt32>(0)

    /// - Parameters:
    ///   - threadPool: runs flushes and FUA writes off the event loops; must be started.
    ///   - handshakeTimeout: a client that has not finished the handshake by then is dropped.
    public init(backend: any BlockBackend, name: String = "", description: String = "Kanshi journaled disk",
                group: any EventLoopGroup, threadPool: NIOThreadPool,
                handshakeTimeout: TimeAmount = .seconds(30), logger: Logger) {
        self.export = NBDExport(backend: backend, name: name, description: description,
                                handshakeTimeout: handshakeTimeout, threadPool: threadPool)
        self.group = group
        self.logger = logger
    }

    /// Starts listening; the returned channel's `closeFuture` completes when
    /// the server stops. For TCP port 0, read the port from `localAddress`.
    public func listen(on endpoint: Endpoint) async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 256 << 10, maximum: 4 << 20))
            .childChannelInitializer { [export, logger, connections] channel in
                let id = connections.withLockedValue { $0 += 1; return $0 }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NBDConnectionHandler(export: export, connection: id, logger: logger))
                }
            }
        switch endpoint {
        case .unix(let path):
            return try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        case .tcp(let host, let port):
            return try await bootstrap.bind(host: host, port: port).get()
        }
    }
}
