//! The proxy's kept-alive upstream connections: per upstream origin
//! (scheme, host, port), a stack of idle HTTP/1.1 connections.
//!
//! A connection is taken for one request and comes back when its answer's
//! body has been read to the end ([`Returning`]); an answer cut short (the
//! browser left, the session was revoked) closes its connection instead,
//! which is how the upstream learns to stop. Idle ones are used newest
//! first and dropped once closed or idle for [`IDLE`].
//!
//! Our own rather than hyper-util's pooled client: with one origin per
//! route there is nothing to look up, and that client's key hashing and
//! checkout measured about a tenth of a proxied request's instructions.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use super::Outgoing;
use super::body::Sending;

/// Idle connections older than this are not used again.
pub const IDLE: Duration = Duration::from_secs(90);
/// At most this many idle connections are kept per origin.
const MAX_IDLE: usize = 256;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// One upstream origin's connections.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`: what the connector dials.
    origin: Uri,
    /// The `Host` every request to it carries.
    pub host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: SendRequest<Outgoing>,
    since: Instant,
}

impl Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>, origin: Uri, host: HeaderValue) -> Self {
        Self {
            connector,
            origin,
            host,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` (origin-form, `Host` set) on an idle connection, or
    /// a new one; a reused connection that turns out closed before the
    /// request went out is replaced once. The connection comes back with
    /// the answer, for [`Returning`].
    pub async fn send(
        &self,
        mut request: Request<Outgoing>,
    ) -> Result<(Response<Incoming>, SendRequest<Outgoing>), Failure> {
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                // Boxed: dialling (TCP, TLS) is a large future, which
                // would otherwise be part of, and copied with, every send.
                None => (Box::pin(self.connect()).await?, false),
            };
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(error.into());
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }

    fn checkout(&self) -> Option<SendRequest<Outgoing>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE {
                return Some(entry.sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Outgoing>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest are at the bottom: let the stale ones go.
        let stale = idle
            .iter()
            .take_while(|e| e.sender.is_closed() || e.since.elapsed() >= IDLE)
            .count();
        if stale > 0 {
            idle.drain(..stale);
        }
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<Outgoing>, Failure> {
        let io = self.connector.clone().oneshot(self.origin.clone()).await?;
        let (sender, connection) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// An upstream answer's body that gives its connection back to the pool
/// once read to the end, if the request's body was sent whole too (an
/// upstream may answer early and go on reading; a connection given back
/// then would hold the next request until it is done). Dropped before the
/// end, or with the request still sending, the connection closes.
pub struct Returning {
    inner: Incoming,
    connection: Option<(SendRequest<Outgoing>, Arc<Pool>)>,
    request: Arc<Sending>,
}

impl Returning {
    pub fn new(
        inner: Incoming,
        sender: SendRequest<Outgoing>,
        pool: Arc<Pool>,
        request: Arc<Sending>,
    ) -> Self {
        let mut body = Self {
            inner,
            connection: Some((sender, pool)),
            request,
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some((sender, pool)) = self.connection.take()
            && self.request.done.load(std::sync::atomic::Ordering::Acquire)
        {
            pool.give_back(sender);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(),
            // A failed body's connection is not reused.
            Poll::Ready(Some(Err(_))) => self.connection = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
