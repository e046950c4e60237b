//! Logging: `tracing` to stdout, filtered by `RUST_LOG` (validated with the
//! other settings; default `info`, with sqlx and hyper kept quiet). One line
//! per request comes from the envelope (target `chronos::access`;
//! `RUST_LOG=info,chronos::access=off` turns the access log off); no cookie
//! or token value is ever a field.
//!
//! The text format is logfmt, one event per line:
//! `2026-11-25T17:24:44.396756Z  INFO method=POST path=/auth/logout status=200 ...`
//! Any other line logged while a request is handled (a handler's warning,
//! say) ends with that request's id, so it can be tied to the access-log
//! line and to the `X-Request-ID` the client saw:
//! `2026-11-25T17:24:44.396801Z  WARN refresh token reuse detected; session ended session_id=... request_id=...`
//!
//! The request id comes from a task-local scope the envelope opens around
//! the routes ([`in_request`]), not from a `tracing` span: a span per
//! request measured 4,900 instructions (a seventh of a session check, with
//! callgrind), the scope a few dozen, and both put the id on every line.
//!
//! Lines are formatted by small `tracing` layers (logfmt, or JSON with
//! `LOG_FORMAT=json`) into a per-thread buffer and appended to a bounded
//! queue (1 MiB) that a writer thread empties every 100 ms, or as soon as
//! 64 KiB are waiting: a busy server makes one `write` per batch, no
//! per-line allocation or thread wake-up, and a request never waits for
//! stdout. When the queue is full (stdout blocked), lines are dropped and
//! counted (`chronos_log_lines_dropped_total`). Dropping the returned guard
//! writes what is left.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{Stdout, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::future::Future;

use http::HeaderValue;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetrySettings};

/// Lines waiting for the writer thread, at most (beyond it lines are
/// dropped and counted, and the request goes on).
const QUEUE_BYTES: usize = 1 << 20;
/// The writer is woken once this much is waiting, and otherwise writes
/// what has gathered every [`FLUSH_EVERY`].
const WAKE_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped because the queue was full (a metric).
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A bounded queue of formatted lines in front of a writer thread: adding a
/// line is a copy under a short lock, never a write to the output, so a slow
/// or blocked stdout (a full pipe, a paused collector) costs requests
/// nothing; when it is full the line is dropped and counted.
struct LogQueue<W> {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    /// Held while a batch is written, so a final flush keeps the order.
    out: Mutex<W>,
}

impl<W: Write + Send + 'static> LogQueue<W> {
    fn new(out: W) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Vec::with_capacity(WAKE_BYTES * 2)),
            wake: Condvar::new(),
            out: Mutex::new(out),
        })
    }

    /// Queues one line; `false` (and counted) when there was no room.
    fn push(&self, line: &[u8]) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        if pending.len() + line.len() > QUEUE_BYTES {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let before = pending.len();
        pending.extend_from_slice(line);
        if before < WAKE_BYTES && pending.len() >= WAKE_BYTES {
            self.wake.notify_one();
        }
        true
    }

    /// Writes what is queued (the writer thread, and the final flush).
    fn flush(&self, spare: &mut Vec<u8>) {
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        if let Ok(mut pending) = self.pending.lock() {
            std::mem::swap(&mut *pending, spare);
        }
        if !spare.is_empty() {
            let _ = out.write_all(spare);
            let _ = out.flush();
            spare.clear();
        }
    }

    /// The writer thread's loop.
    fn run(self: Arc<Self>) {
        let mut spare = Vec::with_capacity(WAKE_BYTES * 2);
        loop {
            if let Ok(pending) = self.pending.lock()
                && pending.len() < WAKE_BYTES
            {
                let _ = self.wake.wait_timeout(pending, FLUSH_EVERY);
            }
            self.flush(&mut spare);
        }
    }
}

/// What the envelope resolved about the request being handled on a task:
/// its id (every line it logs carries it) and the client's address (the
/// handlers that record or forward it read it here; a request extension
/// would cost a map allocation on every request).
pub struct RequestScope {
    pub id: HeaderValue,
    pub client_ip: IpAddr,
}

tokio::task_local! {
    static REQUEST: RequestScope;
}

/// Runs `future` (a request's handling) with `scope` in scope.
pub async fn in_request<F: Future>(scope: RequestScope, future: F) -> F::Output {
    REQUEST.scope(scope, future).await
}

/// The id of the request this task is handling, if any.
fn current_request_id(f: impl FnOnce(&str) -> fmt::Result) -> fmt::Result {
    REQUEST
        .try_with(|r| f(r.id.to_str().unwrap_or("-")))
        .unwrap_or(Ok(()))
}

/// The client address of the request this task is handling, if any.
pub fn current_client_ip() -> Option<IpAddr> {
    REQUEST.try_with(|r| r.client_ip).ok()
}

/// Flushes the log queue when dropped (keep it until the process exits).
pub struct LogGuard(Arc<LogQueue<Stdout>>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush(&mut Vec::new());
    }
}

pub fn init(settings: &TelemetrySettings) -> LogGuard {
    // Validated with the settings; the default only if that was skipped.
    let filter = EnvFilter::builder()
        .parse(&settings.filter)
        .unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG_FILTER));
    let queue = LogQueue::new(std::io::stdout());
    let writer = queue.clone();
    let _ = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer.run());
    let lines = Lines {
        out: queue.clone(),
        json: settings.format == LogFormat::Json,
    };
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init();
    // The access line's own path (logfmt only; JSON keeps the layer's
    // member order), when the filter lets it through at all.
    if settings.format == LogFormat::Text
        && tracing::enabled!(target: "chronos::access", Level::INFO)
    {
        let _ = ACCESS.set(queue.clone());
    }
    LogGuard(queue)
}

/// Where access lines go without `tracing`'s event machinery, once
/// [`init`] found them enabled.
static ACCESS: std::sync::OnceLock<Arc<LogQueue<Stdout>>> = std::sync::OnceLock::new();

/// Whether [`access`] writes lines itself.
pub fn access_direct() -> bool {
    ACCESS.get().is_some()
}

/// One request's access line.
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_us: u64,
    pub request_id: &'a str,
    pub client_ip: &'a str,
    /// On a proxied request: its route and the upstream's answer.
    pub proxy: Option<ProxyFields<'a>>,
}

/// The access line's fields for a proxied request.
pub struct ProxyFields<'a> {
    /// The route's prefix.
    pub route: &'a str,
    /// 0 when no upstream answered (refused here, failed, timed out).
    pub upstream_status: u16,
    /// Microseconds to the upstream's response head.
    pub upstream_us: u64,
}

/// Queues the access line directly (the same logfmt line the layer would
/// write: a field-by-field `tracing` event measured ~4,600 instructions,
/// two fifths of a logout); `false` when that path is off (JSON, tests
/// without [`init`]), and the caller logs through `tracing`.
pub fn access(line: &AccessLine<'_>) -> bool {
    let Some(queue) = ACCESS.get() else {
        return false;
    };
    LINE.with(|buf| {
        let Ok(mut buf) = buf.try_borrow_mut() else {
            return;
        };
        buf.clear();
        if write_access(&mut buf, line).is_ok() {
            queue.push(&buf);
        }
    });
    true
}

fn write_access(out: &mut Vec<u8>, line: &AccessLine<'_>) -> fmt::Result {
    // Whole ` key=` pieces appended to the byte buffer: going through
    // `fmt::Write` a character at a time measured ~120 instructions a pair.
    write_timestamp(&mut IoText(&mut *out))?;
    out.extend_from_slice(b"  INFO method=");
    // An HTTP method is a token: nothing in it needs quoting.
    out.extend_from_slice(line.method.as_bytes());
    out.extend_from_slice(b" path=");
    push_value(out, line.path)?;
    out.extend_from_slice(b" status=");
    out.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    out.extend_from_slice(b" duration_us=");
    out.extend_from_slice(itoa::Buffer::new().format(line.duration_us).as_bytes());
    out.extend_from_slice(b" request_id=");
    push_value(out, line.request_id)?;
    // Digits, dots and colons.
    out.extend_from_slice(b" client_ip=");
    out.extend_from_slice(line.client_ip.as_bytes());
    if let Some(proxy) = &line.proxy {
        out.extend_from_slice(b" route=");
        push_value(out, proxy.route)?;
        out.extend_from_slice(b" upstream_status=");
        out.extend_from_slice(itoa::Buffer::new().format(proxy.upstream_status).as_bytes());
        out.extend_from_slice(b" upstream_us=");
        out.extend_from_slice(itoa::Buffer::new().format(proxy.upstream_us).as_bytes());
    }
    out.push(b'\n');
    Ok(())
}

/// A value as [`Fields`] writes it: as it is, or quoted and escaped.
fn push_value(out: &mut Vec<u8>, value: &str) -> fmt::Result {
    if is_plain(value, false) {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    } else {
        write!(IoText(out), "{value:?}")
    }
}

/// Whether a field's text is written as it is: a message unless it holds a
/// control character; any other value unless it is empty or holds a
/// space, `"`, `=`, `\` or a control character (then it is quoted).
fn is_plain(value: &str, message: bool) -> bool {
    let table = if message { &CONTROL } else { &NEEDS_QUOTES };
    (message || !value.is_empty()) && !value.bytes().any(|b| table[usize::from(b)])
}

/// The layer that formats one line per event (logfmt, or JSON) and queues
/// it for `out`'s writer thread.
struct Lines<W> {
    out: Arc<LogQueue<W>>,
    json: bool,
}

thread_local! {
    /// Where a line is formatted before it is queued (no lock held meanwhile).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl<S, W> Layer<S> for Lines<W>
where
    S: Subscriber,
    W: Write + Send + 'static,
{
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            let formatted = if self.json {
                write_json(&mut *line, event).is_ok()
            } else {
                let mut text = IoText(&mut *line);
                write_event(&mut text, event, |out| {
                    current_request_id(|id| {
                        out.write_str(" request_id=")?;
                        out.write_str(id)
                    })
                })
                .is_ok()
            };
            if formatted {
                self.out.push(&line);
            }
        });
    }
}

/// One JSON object: `timestamp`, `level`, `target`, the event's fields
/// (`message` included) and, inside a request, `request_id`.
fn write_json(out: &mut dyn Write, event: &Event<'_>) -> std::io::Result<()> {
    let mut object = serde_json::Map::new();
    let mut stamp = String::with_capacity(27);
    let _ = write_timestamp(&mut stamp);
    object.insert("timestamp".into(), stamp.into());
    object.insert(
        "level".into(),
        event.metadata().level().as_str().to_string().into(),
    );
    object.insert("target".into(), event.metadata().target().into());
    event.record(&mut JsonFields(&mut object));
    let _ = current_request_id(|id| {
        object
            .entry("request_id")
            .or_insert_with(|| id.to_string().into());
        Ok(())
    });
    serde_json::to_writer(&mut *out, &object)?;
    out.write_all(b"\n")
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// `fmt::Write` over the byte buffer.
struct IoText<'a, W: Write>(&'a mut W);

impl<W: Write> fmt::Write for IoText<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_all(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// One line: timestamp, level, the event's fields, then `context` (the
/// enclosing spans' fields).
fn write_event(
    out: &mut dyn fmt::Write,
    event: &Event<'_>,
    context: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result,
) -> fmt::Result {
    write_timestamp(out)?;
    out.write_str(match *event.metadata().level() {
        Level::ERROR => " ERROR",
        Level::WARN => "  WARN",
        Level::INFO => "  INFO",
        Level::DEBUG => " DEBUG",
        Level::TRACE => " TRACE",
    })?;
    let mut fields = Fields {
        out: &mut *out,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    context(&mut *out)?;
    out.write_char('\n')
}

thread_local! {
    /// The formatted `YYYY-MM-DDTHH:MM:SS` of the last second seen.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn write_timestamp(out: &mut (impl fmt::Write + ?Sized)) -> fmt::Result {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let text = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .ok()
                .and_then(|t| {
                    t.format(time::macros::format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second]"
                    ))
                    .ok()
                })
                .unwrap_or_default();
            *cached = (secs, text);
        }
        out.write_str(&cached.1)
    })?;
    let micros = now.subsec_micros();
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros);
    out.write_char('.')?;
    for _ in digits.len()..6 {
        out.write_char('0')?;
    }
    out.write_str(digits)?;
    out.write_char('Z')
}

struct Fields<'a> {
    out: &'a mut dyn fmt::Write,
    result: fmt::Result,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_char(' ')?;
        if field.name() != "message" {
            self.out.write_str(field.name())?;
            self.out.write_char('=')?;
        }
        Ok(())
    }

    /// Plain values as they are; anything with spaces, quotes, `=` or
    /// control characters quoted and escaped, so one event stays one line.
    fn text(&mut self, field: &Field, value: &str) -> fmt::Result {
        self.key(field)?;
        if is_plain(value, field.name() == "message") {
            self.out.write_str(value)
        } else {
            write!(self.out, "{value:?}")
        }
    }

    fn number(&mut self, field: &Field, digits: &str) -> fmt::Result {
        self.key(field)?;
        self.out.write_str(digits)
    }
}

/// Bytes that force quoting: controls (and DEL), plus space, `"`, `=`, `\`
/// outside messages.
const CONTROL: [bool; 256] = byte_table(false);
const NEEDS_QUOTES: [bool; 256] = byte_table(true);

const fn byte_table(value_syntax: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c < b' ' || c == 0x7f || (value_syntax && matches!(c, b' ' | b'"' | b'=' | b'\\'));
        b += 1;
    }
    table
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self.text(field, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            self.result = self.number(field, itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() {
            self.result = self.number(field, itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_ok() {
            self.result = self.number(field, if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            // `%value` fields arrive here too, as Display-through-Debug.
            let mut text = String::new();
            self.result = write!(text, "{value:?}").and_then(|()| self.text(field, &text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(f: impl FnOnce()) -> String {
        let capture = Arc::new(Mutex::new(Vec::<u8>::new()));
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl<S: Subscriber> Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                let mut out = self.0.lock().unwrap();
                write_event(&mut IoText(&mut *out), event, |_| Ok(())).unwrap();
            }
        }
        let subscriber = tracing_subscriber::registry().with(Capture(capture.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = capture.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn events_become_one_logfmt_line() {
        let text = line(|| {
            tracing::info!(
                method = "POST",
                path = "/auth/logout",
                status = 200u16,
                quoted = "a b\nc",
                ip = %std::net::Ipv4Addr::LOCALHOST,
                "request"
            );
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        let (stamp, rest) = text.split_once(' ').unwrap();
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(stamp.ends_with('Z'));
        assert_eq!(
            rest.trim_start(),
            "INFO request method=POST path=/auth/logout status=200 quoted=\"a b\\nc\" ip=127.0.0.1\n"
        );
    }

    #[tokio::test]
    async fn lines_logged_inside_a_request_carry_its_id_in_both_formats() {
        for json in [false, true] {
            let out = LogQueue::new(Vec::<u8>::new());
            let subscriber = tracing_subscriber::registry().with(Lines {
                out: out.clone(),
                json,
            });
            let _default = tracing::subscriber::set_default(subscriber);
            in_request(
                RequestScope {
                    id: HeaderValue::from_static("req-42"),
                    client_ip: IpAddr::from([127, 0, 0, 1]),
                },
                async {
                    tracing::warn!(session_id = "s1", "reuse detected");
                },
            )
            .await;
            tracing::info!("outside");
            out.flush(&mut Vec::new());
            let text = String::from_utf8(out.out.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text}");
            if json {
                let inside: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
                assert_eq!(inside["request_id"], "req-42");
                assert_eq!(inside["message"], "reuse detected");
                assert_eq!(inside["session_id"], "s1");
                assert_eq!(inside["level"], "WARN");
                let outside: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
                assert!(outside.get("request_id").is_none());
            } else {
                assert!(
                    lines[0].ends_with("WARN reuse detected session_id=s1 request_id=req-42"),
                    "{text}"
                );
                assert!(lines[1].ends_with("INFO outside"), "{text}");
            }
        }
    }

    #[test]
    fn a_message_with_a_newline_stays_on_one_line() {
        let text = line(|| tracing::warn!("two\nlines"));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("WARN \"two\\nlines\""), "{text}");
    }

    /// A writer that blocks until released, like stdout into a full pipe.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Vec<u8>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (released, cv) = &*self.0;
            let mut released = released.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
            self.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_drops_and_counts_lines_instead_of_blocking_the_logger() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let queue = LogQueue::new(Stuck(gate.clone(), Vec::new()));
        let writer = queue.clone();
        std::thread::spawn(move || writer.run());
        let line = [b'x'; 199]
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        let dropped_before = dropped_lines();
        // Three times what the queue holds, while the writer is stuck in
        // write() with at most one queue's worth.
        let n = 3 * QUEUE_BYTES / line.len();
        let queued = (0..n).filter(|_| queue.push(&line)).count();
        assert!(queued >= QUEUE_BYTES / line.len() - 1, "queued {queued}");
        assert!(queued < n, "nothing was dropped");
        // Other tests' loggers share the counter: at least ours are in it.
        assert!(dropped_lines() - dropped_before >= (n - queued) as u64);
        // Released, everything queued is written, whole lines only.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        queue.flush(&mut Vec::new());
        let out = queue.out.lock().unwrap();
        assert_eq!(out.1.len(), queued * line.len());
    }

    #[test]
    fn the_direct_access_line_is_the_line_the_layer_writes() {
        for path in [
            "/auth/logout",
            "/a b\"c",
            "",
            "/x=y",
            "/tab\there",
            "/del\u{7f}",
        ] {
            let via_tracing = line(|| {
                tracing::info!(
                    target: "chronos::access",
                    method = "POST",
                    path = path,
                    status = 200u16,
                    duration_us = 17u64,
                    request_id = "req-1",
                    client_ip = "127.0.0.1",
                    // As the envelope logs it: no proxy, no proxy fields.
                    route = None::<&str>,
                    upstream_status = None::<u16>,
                    upstream_us = None::<u64>,
                );
            });
            let mut direct = Vec::new();
            write_access(
                &mut direct,
                &AccessLine {
                    method: "POST",
                    path,
                    status: 200,
                    duration_us: 17,
                    request_id: "req-1",
                    client_ip: "127.0.0.1",
                    proxy: None,
                },
            )
            .unwrap();
            let direct = String::from_utf8(direct).unwrap();
            // Everything after the timestamp.
            assert_eq!(direct[27..], via_tracing[27..], "{direct}");
        }
    }

    #[test]
    fn a_proxied_request_s_line_adds_its_route_and_upstream_as_the_layer_would() {
        for route in ["/calendar", "/a b"] {
            let via_tracing = line(|| {
                tracing::info!(
                    target: "chronos::access",
                    method = "GET",
                    path = "/calendar/sync",
                    status = 200u16,
                    duration_us = 900u64,
                    request_id = "req-2",
                    client_ip = "10.0.0.1",
                    route = Some(route),
                    upstream_status = Some(200u16),
                    upstream_us = Some(812u64),
                );
            });
            let mut direct = Vec::new();
            write_access(
                &mut direct,
                &AccessLine {
                    method: "GET",
                    path: "/calendar/sync",
                    status: 200,
                    duration_us: 900,
                    request_id: "req-2",
                    client_ip: "10.0.0.1",
                    proxy: Some(ProxyFields {
                        route,
                        upstream_status: 200,
                        upstream_us: 812,
                    }),
                },
            )
            .unwrap();
            let direct = String::from_utf8(direct).unwrap();
            assert!(
                direct.contains(" upstream_status=200 upstream_us=812"),
                "{direct}"
            );
            assert_eq!(direct[27..], via_tracing[27..], "{direct}");
        }
    }
}
