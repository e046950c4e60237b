//! The HTTP/1.1 accept loop, on hyper directly so the limits that
//! `axum::serve` does not expose are set: a header-read timeout (a client
//! that trickles its headers is cut off; it also closes idle keep-alive
//! connections), a bounded read buffer, and a graceful drain on shutdown.
//! hyper's default header count limit (100) stays: raising it makes hyper
//! allocate its header index on every request instead of using the stack.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderValue;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use axum::response::Response;

/// Time allowed for a client to send a complete request head (and the
/// longest an idle keep-alive connection is held).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's read buffer: large enough that an oversized head reaches our own
/// 431 response (with `detail` and headers), small enough to bound memory.
const MAX_BUF_BYTES: usize = 128 * 1024;
/// Serves connections from `listener` with `service`, which is called with
/// each request and the connection's peer address. Once `shutdown`
/// resolves: stops accepting, lets in-flight requests finish (keep-alive
/// connections close after their current request) for at most `drain`.
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()>
where
    S: Fn(hyper::Request<Incoming>, SocketAddr) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_BYTES)
        .keep_alive(true);
    // Told once, at shutdown: each connection then finishes its request
    // and closes (hyper-util's GracefulShutdown cannot watch a connection
    // with upgrades, which a proxied WebSocket needs).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let closing = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let closing = closing.clone();
        let per_connection = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let answer = service(req, peer);
            let closing = closing.clone();
            async move {
                let mut response = answer.await?;
                // Draining: this answer is the connection's last.
                if closing.load(Ordering::Relaxed) {
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), per_connection)
            .with_upgrades();
        let open = Open::count(&open);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let mut stopping = false;
            let ended = loop {
                tokio::select! {
                    ended = connection.as_mut() => break ended,
                    _ = stopped.changed(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(open);
        });
    }

    drop(listener);
    let deadline = tokio::time::Instant::now() + drain;
    // First, keep-alive connections end themselves: each is answered once
    // more with `Connection: close`. Closing them at once would cut off a
    // request a client is sending at that moment.
    closing.store(true, Ordering::Relaxed);
    let grace = tokio::time::Instant::now() + LAME_DUCK.min(drain);
    while open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Then what is left (idle connections, requests still running).
    let _ = stop.send(true);
    while open.load(Ordering::Relaxed) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("shutdown: gave up waiting for open connections");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// How long open keep-alive connections are given to send a last request
/// after a shutdown signal, before idle ones are closed.
const LAME_DUCK: Duration = Duration::from_secs(1);

/// One open connection, counted while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn count(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
