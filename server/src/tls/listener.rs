//! The accept loop: TLS (or, when asked for, plain HTTP) and HTTP/1.1 per
//! connection, with every wait bounded so that slow or idle clients cannot
//! starve the others: a handshake, a request head and a whole request body
//! each have a deadline, and clients without a certificate are held to
//! their share of the slots (see [`super::admission`]).
//!
//! Each request of a TLS connection carries the [`Peer`] its handshake
//! proved (and the certificate's [`PresentedSerial`]) in its extensions;
//! plain HTTP carries none. Every request carries the client's address as
//! axum's [`ConnectInfo`].

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
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
use tower::{Service, ServiceBuilder};
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::admission::{Admission, AnonymousLimits, Unproven};
use super::deadline::Deadline;
use super::verifier::{peer_of, serial_of};
use crate::credentials::{Peer, PresentedSerial};

/// Connections the main listener serves at once when `max_connections` is
/// not set (and the open-file limit allows): every daemon holds one
/// long-poll on its catalog version, so 10,000 daemons hold 10,000
/// connections, with room left for their runs' check-ins.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// File descriptors kept out of the connection budget: the database pool,
/// the listening sockets, `git` pipes, the CA's files, log files.
pub const RESERVED_FDS: u64 = 256;

/// Limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From TCP accept to a finished TLS handshake.
    pub handshake: Duration,
    /// To read a request's headers, and the longest a kept-alive connection stays idle.
    pub header_read: Duration,
    /// Between two chunks of a request body.
    pub body_read: Duration,
    /// From a request's head to the end of its body.
    pub body_deadline: Duration,
    /// Connections without a client certificate (TLS only); `None`: no limit
    /// but `max_connections`.
    pub anonymous: Option<AnonymousLimits>,
    /// Connections served at once (an idle kept-alive one and a long-poll
    /// count too); more wait in the kernel's backlog.
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
            body_deadline: crate::config::DEFAULT_BODY_DEADLINE,
            anonymous: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The connections the listener may hold, given `configured` (the
/// `max_connections` key): first raises this process's soft limit on open
/// files to its hard limit, since each connection is one descriptor. A
/// configured number that does not fit is an error; without one, the
/// default shrinks to what fits, with a warning.
pub fn connection_budget(configured: Option<usize>) -> anyhow::Result<usize> {
    let soft = raise_fd_limit();
    budget(configured, soft).map_err(|e| anyhow::anyhow!(e))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one; the soft limit now
/// (the old one when it cannot be raised, which is logged).
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        tracing::warn!("cannot read the open-file limit (RLIMIT_NOFILE); assuming 1024");
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            hard
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit to its hard limit");
            soft
        }
    }
}

/// [`connection_budget`] for an open-file limit of `fd_limit`.
fn budget(configured: Option<usize>, fd_limit: u64) -> Result<usize, String> {
    let fit = usize::try_from(fd_limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    match configured {
        Some(wanted) if wanted > fit => Err(format!(
            "max_connections = {wanted} does not fit the open-file limit of {fd_limit} (each connection is a file descriptor, and {RESERVED_FDS} are kept for the server's own files): at most {fit}\nhint: raise the hard limit (LimitNOFILE= in the systemd unit, or ulimit -Hn) to at least {}, or lower max_connections",
            wanted as u64 + RESERVED_FDS
        )),
        Some(wanted) => Ok(wanted),
        None if fit == 0 => Err(format!(
            "the open-file limit of {fd_limit} leaves no room for connections ({RESERVED_FDS} are kept for the server's own files)\nhint: raise LimitNOFILE= in the systemd unit, or ulimit -n"
        )),
        None if fit < DEFAULT_MAX_CONNECTIONS => {
            tracing::warn!(
                max_connections = fit,
                fd_limit,
                "the open-file limit allows only {fit} connections (default {DEFAULT_MAX_CONNECTIONS}); every watching daemon holds one, so a larger fleet waits in the backlog: raise LimitNOFILE= to serve more"
            );
            Ok(fit)
        }
        None => Ok(DEFAULT_MAX_CONNECTIONS),
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
    // Strangers are told apart only by TLS; plain HTTP trusts everyone.
    let admission = match (&tls, limits.anonymous) {
        (Some(_), Some(anonymous)) => Some(Admission::new(anonymous)),
        _ => None,
    };
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
        let unproven = match &admission {
            None => None,
            Some(admission) => match admission.accept(addr.ip()) {
                Some(unproven) => Some(unproven),
                None => {
                    tracing::debug!(%addr, "closed at once: the address holds its most connections without a certificate");
                    continue;
                }
            },
        };
        let connection = Connection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
        };
        connections.spawn(async move {
            connection.run(stream, addr, unproven).await;
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
    async fn run(self, stream: TcpStream, addr: SocketAddr, unproven: Option<Unproven>) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.acceptor.clone() else {
            let service = stamped(self.app.clone(), &self.limits, addr, None);
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
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first());
        let peer = cert.map_or(Peer::Anonymous, peer_of);
        // Held while the connection lives: an anonymous slot, or nothing.
        let _slot = match (unproven, &peer) {
            (None, _) => None,
            (Some(unproven), Peer::Anonymous) => match unproven.anonymous() {
                Some(slot) => Some(slot),
                None => {
                    tracing::info!(%addr, "closed: every slot for clients without a certificate is taken");
                    return;
                }
            },
            (Some(unproven), _) => {
                unproven.certified();
                None
            }
        };
        tracing::debug!(%addr, ?peer, "TLS connection");
        let identity = (peer, cert.and_then(serial_of).map(PresentedSerial));
        let service = stamped(self.app.clone(), &self.limits, addr, Some(identity));
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

/// `app` as one connection serves it: bodies bounded in time (`limits`),
/// and every request told who sent it.
fn stamped(
    app: Router,
    limits: &Limits,
    addr: SocketAddr,
    identity: Option<(Peer, Option<PresentedSerial>)>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<axum::body::Body>,
    Error = Infallible,
    Future = impl Send + use<>,
>
+ Clone
+ Send
+ 'static
+ use<> {
    let deadline = limits.body_deadline;
    ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_read))
        .map_request(move |req: Request<_>| {
            let mut req = req.map(|body| Deadline::new(body, deadline));
            let extensions = req.extensions_mut();
            extensions.insert(ConnectInfo(addr));
            if let Some((peer, serial)) = &identity {
                extensions.insert(peer.clone());
                if let Some(serial) = serial {
                    extensions.insert(serial.clone());
                }
            }
            req
        })
        .service(app)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;

    /// `/hold` answers once `n` requests are inside it at the same time, as
    /// a fleet's long-polls are; the sender counts those that got in.
    fn holding(n: usize) -> (Router, Arc<watch::Sender<usize>>) {
        let inside = Arc::new(watch::Sender::new(0usize));
        let shared = Arc::clone(&inside);
        let app = Router::new().route(
            "/hold",
            get(move || {
                let inside = Arc::clone(&shared);
                async move {
                    inside.send_modify(|c| *c += 1);
                    let _ = inside.subscribe().wait_for(|c| *c >= n).await;
                    "held"
                }
            }),
        );
        (app, inside)
    }

    async fn start(app: Router, max_connections: usize) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let limits = Limits {
            max_connections,
            shutdown_grace: Duration::from_millis(100),
            ..Limits::default()
        };
        tokio::spawn(serve(listener, None, app, limits, shutdown.clone()));
        (addr, shutdown)
    }

    /// Opens a connection, sends `GET /hold`, and reads the answer in a task.
    async fn hold(addr: SocketAddr) -> tokio::task::JoinHandle<String> {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut answer = Vec::new();
            let _ = tcp.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_long_polls_than_the_old_limit_of_1024_are_held_at_once() {
        const HELD: usize = 1100;
        // Client and server ends of each connection live in this process.
        let fds = raise_fd_limit();
        assert!(
            fds >= 2 * HELD as u64 + RESERVED_FDS,
            "this test needs {} open files, the hard limit is {fds}: raise ulimit -Hn",
            2 * HELD as u64 + RESERVED_FDS
        );
        let (app, inside) = holding(HELD);
        let (addr, shutdown) = start(app, DEFAULT_MAX_CONNECTIONS).await;
        let mut answers = Vec::new();
        for _ in 0..HELD {
            answers.push(hold(addr).await);
        }
        for answer in answers {
            let answer = tokio::time::timeout(Duration::from_secs(30), answer)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "not answered: only {} of {HELD} requests were let in",
                        *inside.borrow()
                    )
                })
                .unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("held"), "{answer}");
        }
        assert_eq!(*inside.borrow(), HELD);
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_max_connections_wait_unserved() {
        let (app, inside) = holding(3);
        let (addr, shutdown) = start(app, 2).await;
        let answers = [hold(addr).await, hold(addr).await, hold(addr).await];
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(*inside.borrow(), 2, "the third waits in the backlog");
        assert!(answers.iter().all(|a| !a.is_finished()));
        shutdown.cancel();
    }

    #[test]
    fn a_configured_limit_must_fit_the_open_files_and_the_default_shrinks_to_fit() {
        assert_eq!(budget(None, 1_048_576), Ok(DEFAULT_MAX_CONNECTIONS));
        assert_eq!(budget(Some(50_000), 1_048_576), Ok(50_000));
        assert_eq!(budget(None, 1024), Ok(1024 - RESERVED_FDS as usize));
        assert_eq!(budget(Some(768), 1024), Ok(768));
        let err = budget(Some(20_000), 20_000).unwrap_err();
        assert!(
            err.starts_with("max_connections = 20000 does not fit the open-file limit of 20000"),
            "{err}"
        );
        assert!(err.contains("at most 19744"), "{err}");
        assert!(err.contains("hint: raise the hard limit"), "{err}");
        let err = budget(None, RESERVED_FDS).unwrap_err();
        assert!(err.contains("leaves no room for connections"), "{err}");
        assert_eq!(budget(None, u64::MAX), Ok(DEFAULT_MAX_CONNECTIONS));
    }
}
