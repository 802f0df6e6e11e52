//! The accept loop: TLS (or, when asked for, plain HTTP) and HTTP/1.1 per
//! connection, with every wait bounded so that slow or idle clients cannot
//! starve the others.
//!
//! Each request of a TLS connection carries the [`Peer`] its handshake
//! proved, in its extensions; plain HTTP carries none.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Layer, Service};
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::verifier::peer_of;
use crate::auth::Peer;

/// Limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From TCP accept to a finished TLS handshake.
    pub handshake: Duration,
    /// To read a request's headers, and the longest a kept-alive connection stays idle.
    pub header_read: Duration,
    /// Between two chunks of a request body.
    pub body_read: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` is cancelled: TLS with `tls`,
/// plain HTTP without. Then stops accepting and waits (bounded) for the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit?,
            () = shutdown.cancelled() => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let connection = Connection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
        };
        connections.spawn(async move {
            connection.run(stream, addr).await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?limits.shutdown_grace,
            "connections still open at the end of the shutdown grace period were dropped"
        );
    }
    Ok(())
}

/// After a refused handshake (a revoked or unknown client certificate), the
/// alert is sent but the client, which in TLS 1.3 has already sent its
/// request, would get a reset instead of the alert if the socket closed with
/// that request unread. So: close our side, read and drop what the client
/// sends for a moment, then close, and the client reads why it was refused.
async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// How long, and how much, a refused connection is drained before closing.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024;

struct Connection {
    acceptor: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, addr: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let body_timeout = RequestBodyTimeoutLayer::new(self.limits.body_read);
        let Some(acceptor) = self.acceptor.clone() else {
            let service = body_timeout.layer(self.app.clone());
            return self.http(TokioIo::new(stream), service, addr).await;
        };
        let accept = acceptor.accept(stream).into_fallible();
        let handshake = tokio::select! {
            result = tokio::time::timeout(self.limits.handshake, accept) => result,
            () = self.shutdown.cancelled() => return,
        };
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err((e, stream))) => {
                tracing::info!(%addr, error = %e, "TLS handshake failed");
                linger(stream).await;
                return;
            }
            Err(_) => {
                tracing::info!(%addr, timeout = ?self.limits.handshake, "TLS handshake timed out");
                return;
            }
        };
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map_or(Peer::Anonymous, peer_of);
        tracing::debug!(%addr, ?peer, "TLS connection");
        let service = body_timeout.layer(axum::Extension(peer).layer(self.app.clone()));
        self.http(TokioIo::new(tls), service, addr).await;
    }

    /// HTTP/1.1 on `io` until the client closes, a limit is hit, or shutdown
    /// (which lets the request in flight finish).
    async fn http<I, S, B>(&self, io: I, service: S, addr: SocketAddr)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read)
            .max_buf_size(MAX_HEAD);
        let conn = builder.serve_connection(io, TowerToHyperService::new(service));
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            if e.is_timeout() {
                tracing::info!(%addr, "closed a connection that sent no complete request in time");
            } else {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        }
    }
}
