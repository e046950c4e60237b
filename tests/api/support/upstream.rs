//! The app's own API for the proxy tests, a real HTTP server on a port of
//! its own (axum, as a team would write it): an echo of what it received,
//! a server-sent-events stream, an upload sink, a slow answer, a WebSocket
//! echo, headers it should not get away with. It counts what reaches it,
//! so a test can tell a request Chronos refused from one it forwarded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the upstream has seen and holds open.
#[derive(Default)]
pub struct Counters {
    /// Requests that reached the upstream at all.
    pub hits: AtomicUsize,
    /// Event streams and WebSockets open now.
    pub open_streams: AtomicUsize,
    pub open_sockets: AtomicUsize,
    /// Event streams that ended before their last event (the client left).
    pub cut_streams: AtomicUsize,
    /// Upload bodies that failed midway (the proxy stopped sending).
    pub broken_uploads: AtomicUsize,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl Upstream {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.counters.hits.load(Ordering::SeqCst)
    }

    pub fn open_streams(&self) -> usize {
        self.counters.open_streams.load(Ordering::SeqCst)
    }

    pub fn open_sockets(&self) -> usize {
        self.counters.open_sockets.load(Ordering::SeqCst)
    }

    pub fn cut_streams(&self) -> usize {
        self.counters.cut_streams.load(Ordering::SeqCst)
    }
}

/// Starts the upstream; its routes live under `/api`.
pub async fn spawn_upstream() -> Upstream {
    let counters = Arc::new(Counters::default());
    let count = counters.clone();
    let app = Router::new()
        .route("/api/echo", any(echo))
        .route("/api/echo/{*rest}", any(echo))
        .route("/api/events", any(events))
        .route("/api/sync", get(sync))
        .route("/api/upload", post(upload))
        .route("/api/slow", get(slow))
        .route("/api/headers", get(bad_headers))
        .route("/api/closing", get(closing))
        .route("/api/early", post(early))
        .route("/api/ws", get(websocket))
        .with_state(counters.clone())
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                count.hits.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Upstream { addr, counters }
}

/// The method, path, query, every header (name → values), the body, and
/// the connection's peer (the same one twice: a kept-alive connection).
async fn echo(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let answer = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "peer": peer.to_string(),
    });
    (
        [
            ("cache-control", "private, max-age=5"),
            ("x-upstream", "echo"),
        ],
        axum::Json(answer),
    )
        .into_response()
}

/// Counts itself open while it lives (an answer's body or a socket).
struct Open {
    counter: Arc<Counters>,
    which: fn(&Counters) -> &AtomicUsize,
    finished: bool,
}

impl Open {
    fn new(counter: Arc<Counters>, which: fn(&Counters) -> &AtomicUsize) -> Self {
        which(&counter).fetch_add(1, Ordering::SeqCst);
        Self {
            counter,
            which,
            finished: false,
        }
    }
}

impl Open {
    /// Not counted as cut when it ends.
    fn finished(mut self) -> Self {
        self.finished = true;
        self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        (self.which)(&self.counter).fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.counter.cut_streams.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// `text/event-stream`: `n` events (default 5), one every `every` ms
/// (default 200), the first at once; `data: {"i": k}` each, padded with
/// `pad` bytes (default none).
async fn events(
    State(counters): State<Arc<Counters>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let n: usize = query.get("n").map_or(5, |v| v.parse().unwrap());
    let every = Duration::from_millis(query.get("every").map_or(200, |v| v.parse().unwrap()));
    let pad = "x".repeat(query.get("pad").map_or(0, |v| v.parse().unwrap()));
    let open = Open::new(counters, |c| &c.open_streams);
    let stream = futures_util::stream::unfold((0usize, open), move |(i, open)| {
        let pad = pad.clone();
        async move {
            if i == n {
                drop(open.finished());
                return None;
            }
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            let event = if pad.is_empty() {
                format!("event: sync\ndata: {{\"i\":{i}}}\n\n")
            } else {
                format!("event: sync\ndata: {{\"i\":{i},\"pad\":\"{pad}\"}}\n\n")
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(event)), (i + 1, open)))
        }
    });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The calendar service's sync as the web client reads it
/// (`useCalendarSync.ts`): per calendar in `calendar_ids`, an `events` and
/// a `sync_token` event, 200 ms apart, then `complete`, which also says
/// whether the request carried a bearer token and any of our cookies.
async fn sync(
    State(counters): State<Arc<Counters>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let ids: Vec<String> = query
        .get("calendar_ids")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ey"));
    let our_cookies = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("chronos_"));
    let mut events = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        events.push(format!(
            "event: events\ndata: {}\n\n",
            json!({"calendar_id": id, "events": [{"id": format!("e{i}"), "summary": "Standup"}]})
        ));
        events.push(format!(
            "event: sync_token\ndata: {}\n\n",
            json!({"calendar_id": id})
        ));
    }
    events.push(format!(
        "event: complete\ndata: {}\n\n",
        json!({
            "last_sync_at": "2026-12-03T09:00:00Z",
            "total_events": ids.len(),
            "calendars_synced": ids.len(),
            "bearer": bearer,
            "our_cookies": our_cookies,
        })
    ));
    let open = Open::new(counters, |c| &c.open_streams);
    let stream = futures_util::stream::unfold(
        (events.into_iter(), 0, open),
        |(mut left, i, open)| async move {
            let Some(event) = left.next() else {
                drop(open.finished());
                return None;
            };
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some((
                Ok::<_, std::io::Error>(Bytes::from(event)),
                (left, i + 1, open),
            ))
        },
    );
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Reads the body as it comes and answers with its length.
async fn upload(State(counters): State<Arc<Counters>>, body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let mut bytes = 0usize;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes += chunk.len(),
            Err(_) => {
                counters.broken_uploads.fetch_add(1, Ordering::SeqCst);
                return (axum::http::StatusCode::BAD_REQUEST, "broken body").into_response();
            }
        }
    }
    axum::Json(json!({ "bytes": bytes })).into_response()
}

/// Answers after `ms` milliseconds.
async fn slow(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let ms: u64 = query.get("ms").map_or(3000, |v| v.parse().unwrap());
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "late".into_response()
}

/// An answer with what must not cross the proxy: cookies under our names,
/// hop-by-hop headers, a header its `Connection` names, CORS headers.
async fn bad_headers() -> Response {
    let mut response = "headers".into_response();
    let headers = response.headers_mut();
    // Ours behind a byte that is not ASCII, and as a nameless cookie
    // (which a browser sends back under that name).
    headers.append(
        "set-cookie",
        axum::http::HeaderValue::from_bytes(b"chronos_session=planted; Path=/; Comment=\xe9")
            .unwrap(),
    );
    headers.append(
        "set-cookie",
        "=chronos_refresh=planted; Path=/".parse().unwrap(),
    );
    for (name, value) in [
        ("set-cookie", "chronos_session=planted; Path=/"),
        ("set-cookie", "chronos_refresh=planted; Path=/"),
        ("set-cookie", "chronos_csrf=planted; Path=/"),
        ("set-cookie", "theme=dark; Path=/"),
        ("connection", "x-private-hop"),
        ("x-private-hop", "secret"),
        ("keep-alive", "timeout=5"),
        ("proxy-authenticate", "Basic realm=upstream"),
        ("access-control-allow-origin", "*"),
        ("x-kept", "yes"),
    ] {
        headers.append(name, value.parse().unwrap());
    }
    response
}

/// Answers at once and reads the request's body afterwards, as some
/// servers do (Node's among them).
async fn early(body: Body) -> Response {
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(Ok(_)) = stream.next().await {}
    });
    (axum::http::StatusCode::ACCEPTED, "early").into_response()
}

/// An answer after which the upstream closes its connection.
async fn closing() -> Response {
    ([("connection", "close")], "closing").into_response()
}

/// Echoes every text and binary message back.
async fn websocket(State(counters): State<Arc<Counters>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| echo_socket(socket, counters))
}

async fn echo_socket(mut socket: WebSocket, counters: Arc<Counters>) {
    // A socket has no last event: however it ends, it is not "cut".
    let _open = Open::new(counters, |c| &c.open_sockets).finished();
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(format!("echo: {text}").into()),
            Message::Binary(data) => Message::Binary(data),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// A port where nothing listens (connection refused).
pub async fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A server that accepts, reads a little and drops the connection (a
/// reset before any answer).
pub async fn resetting_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                // SO_LINGER 0: the close is a reset (RST), not a FIN.
                let _ = stream.set_zero_linger();
                drop(stream);
            });
        }
    });
    addr
}

/// The JSON an echo answered with.
pub async fn echoed(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "the echo answers 200");
    response.json().await.unwrap()
}

/// One header the echo received (its first value), if any.
pub fn received<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}
