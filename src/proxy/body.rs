//! The two bodies a proxied request streams: the client's, capped at
//! `PROXY_MAX_BODY` however it is sent, and the upstream's, which ends the
//! moment its session is revoked.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::authority::{AccessClaims, SessionAuthority};

/// How often an open answer checks that its session is still valid (the
/// check is a lookup in memory; a revoked session's stream ends within it).
pub const REVOCATION_CHECK: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
#[error("request body over PROXY_MAX_BODY")]
pub struct TooLarge;

#[derive(Debug, thiserror::Error)]
#[error("session revoked")]
pub struct Revoked;

/// The client's body, passed on frame by frame, failing once it passes
/// `limit` bytes.
pub struct Capped {
    inner: axum::body::Body,
    left: u64,
    state: Arc<Sending>,
}

/// What the proxy learns of a request body while it is sent.
#[derive(Default)]
pub struct Sending {
    /// It passed `PROXY_MAX_BODY` (why the upstream call failed: 413).
    pub over: AtomicBool,
    /// It was sent whole (until then its connection is not free for
    /// another request, whatever the answer).
    pub done: AtomicBool,
}

impl Capped {
    pub fn new(inner: axum::body::Body, limit: u64) -> (Self, Arc<Sending>) {
        let state = Arc::new(Sending::default());
        let body = Self {
            inner,
            left: limit,
            state: state.clone(),
        };
        (body, state)
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            None => {
                self.state.done.store(true, Ordering::Release);
                None
            }
            Some(Err(error)) => Some(Err(error.into())),
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                if len > self.left {
                    self.state.over.store(true, Ordering::Relaxed);
                    Some(Err(TooLarge.into()))
                } else {
                    self.left -= len;
                    if self.inner.is_end_stream() {
                        self.state.done.store(true, Ordering::Release);
                    }
                    Some(Ok(frame))
                }
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream's body, passed on frame by frame as it arrives. While it
/// waits for the next frame it checks every [`REVOCATION_CHECK`] that its
/// session still stands; once revoked it fails, which cuts the connection
/// to the browser (an answer cut short, never one that looks complete).
///
/// An answer that keeps it waiting that long is a stream: from then on a
/// watchdog task does the checks and, on revocation, drops the upstream's
/// body itself, so the upstream is let go even while the browser has
/// stopped reading (and hyper, its buffer full, stops polling this body).
pub struct Watched<B> {
    slot: Arc<Mutex<Slot<B>>>,
    authority: Arc<dyn SessionAuthority>,
    claims: Arc<AccessClaims>,
    /// Armed only once the upstream makes the body wait: a small answer
    /// that arrives whole never touches the timer.
    check: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The watchdog runs.
    watched: bool,
}

struct Slot<B> {
    /// `None` once the watchdog has dropped it (revoked).
    body: Option<B>,
    /// Woken by the watchdog when it drops the body.
    waker: Option<Waker>,
}

impl<B> Watched<B> {
    pub fn new(inner: B, authority: Arc<dyn SessionAuthority>, claims: Arc<AccessClaims>) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Slot {
                body: Some(inner),
                waker: None,
            })),
            authority,
            claims,
            check: None,
            watched: false,
        }
    }
}

impl<B: Send + 'static> Watched<B> {
    fn spawn_watchdog(&mut self, waker: &Waker) {
        self.watched = true;
        lock(&self.slot).waker = Some(waker.clone());
        let slot = Arc::downgrade(&self.slot);
        let authority = self.authority.clone();
        let claims = self.claims.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_CHECK);
            loop {
                tick.tick().await;
                // The answer is over (read, or dropped): nothing to watch.
                let Some(slot) = slot.upgrade() else {
                    return;
                };
                if authority.refuses(&claims) {
                    let mut slot = lock(&slot);
                    drop(slot.body.take());
                    if let Some(waker) = slot.waker.take() {
                        waker.wake();
                    }
                    return;
                }
            }
        });
    }
}

fn lock<B>(slot: &Mutex<Slot<B>>) -> std::sync::MutexGuard<'_, Slot<B>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        {
            let mut slot = lock(&this.slot);
            let Some(body) = slot.body.as_mut() else {
                return Poll::Ready(Some(Err(Revoked.into())));
            };
            if let Poll::Ready(frame) = Pin::new(body).poll_frame(cx) {
                drop(slot);
                if this.authority.refuses(&this.claims) {
                    return Poll::Ready(Some(Err(Revoked.into())));
                }
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
            if this.watched {
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
        }
        let check = this
            .check
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(REVOCATION_CHECK)));
        if check.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if this.authority.refuses(&this.claims) {
            return Poll::Ready(Some(Err(Revoked.into())));
        }
        // Waiting this long: a stream. The watchdog takes over the checks.
        this.check = None;
        this.spawn_watchdog(cx.waker());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        // Revoked is not ended: the next poll fails, so the answer is cut
        // instead of looking complete.
        lock(&self.slot)
            .body
            .as_ref()
            .is_some_and(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.slot)
            .body
            .as_ref()
            .map_or_else(SizeHint::default, |b| b.size_hint())
    }
}
