//! One simulated node's connection: TCP, TLS with the node's own client
//! certificate (or plain HTTP with `--insecure-http`), HTTP/1.1 kept alive
//! for the requests of one check-in, as the agent's client does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The agent's default `http_timeout_secs`.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong below HTTP, by kind (the errors table's rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Failure {
    Connect,
    Tls,
    Http,
    Timeout,
}

impl Failure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Tls => "tls",
            Failure::Http => "http",
            Failure::Timeout => "timeout",
        }
    }
}

pub(crate) struct Conn {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub(crate) fn new(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> Conn {
        Conn {
            addr,
            tls,
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        let sender = match &self.tls {
            None => handshake(tcp).await?,
            Some(config) => {
                let name = ServerName::IpAddress(self.addr.ip().into());
                let tls = TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|_| Failure::Tls)?;
                handshake(tls).await?
            }
        };
        Ok(sender)
    }

    /// Sends `request` (connecting first when needed), reads the whole answer.
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, Failure> {
        self.send_within(request, TIMEOUT).await
    }

    /// [`Conn::send`] with another timeout (a long-poll's is its wait plus
    /// the agent's HTTP timeout).
    pub(crate) async fn send_within(
        &mut self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, Failure> {
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => {
                self.sender = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, Failure> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|_| Failure::Http)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Failure::Http)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|_| Failure::Http)?.to_bytes();
        self.sender = Some(sender);
        Ok(Response::from_parts(parts, body))
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|_| Failure::Http)?;
    // Ends when the connection closes (the check-in dropped its sender).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
