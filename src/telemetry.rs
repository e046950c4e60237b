//! Logging: `tracing` to stdout, filtered by `RUST_LOG` (validated with the
//! other settings; default `info`, with sqlx and hyper kept quiet). One line
//! per request comes from the envelope (target `chronos::access`;
//! `RUST_LOG=info,chronos::access=off` turns the access log off); no cookie
//! or token value is ever a field.
//!
//! The text format is logfmt, one event per line:
//! `2026-11-25T17:24:44.396756Z  INFO method=POST path=/auth/logout status=200 ...`
//! An event inside a request (a handler's warning, say) carries the
//! request's span fields after its own, so it can be tied to the access-log
//! line and to the `X-Request-ID` the client saw:
//! `2026-11-25T17:24:44.396801Z  WARN refresh token reuse detected; session ended session_id=... request_id=...`
//!
//! Lines are written by a small `tracing` layer straight into a 64 KiB
//! buffer that a background thread flushes every 100 ms (and that flushes
//! itself when full): a busy server makes one `write` per batch, and no
//! per-line string or thread wake-up. `LOG_FORMAT=json` uses
//! tracing-subscriber's JSON, with the request span's fields under `span`.
//! Dropping the returned guard flushes what is left.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{BufWriter, Stdout, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetrySettings};

const BUFFER_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
struct BufferedStdout(Arc<Mutex<BufWriter<Stdout>>>);

impl BufferedStdout {
    fn flush(&self) {
        if let Ok(mut out) = self.0.lock() {
            let _ = out.flush();
        }
    }
}

/// For the JSON formatter: one formatted event, written under the lock.
struct Locked<'a>(Option<MutexGuard<'a, BufWriter<Stdout>>>);

impl Write for Locked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Some(out) => out.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = Locked<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        Locked(self.0.lock().ok())
    }
}

/// Flushes the log buffer when dropped (keep it until the process exits).
pub struct LogGuard(BufferedStdout);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
    }
}

pub fn init(settings: &TelemetrySettings) -> LogGuard {
    // Validated with the settings; the default only if that was skipped.
    let filter = EnvFilter::builder()
        .parse(&settings.filter)
        .unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG_FILTER));
    let out = BufferedStdout(Arc::new(Mutex::new(BufWriter::with_capacity(
        BUFFER_BYTES,
        std::io::stdout(),
    ))));
    let flusher = out.clone();
    let _ = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                flusher.flush();
            }
        });
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match settings.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(false)
                    .with_writer(out.clone()),
            )
            .try_init(),
        LogFormat::Text => registry.with(Logfmt { out: out.0.clone() }).try_init(),
    };
    LogGuard(out)
}

/// The logfmt layer, writing into `out`.
struct Logfmt<W> {
    out: Arc<Mutex<W>>,
}

/// A span's fields, rendered once when it opens (` request_id=...`).
struct SpanFields(String);

impl<S, W> Layer<S> for Logfmt<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Write + Send + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut text = String::new();
        let mut fields = Fields {
            out: &mut text,
            result: Ok(()),
        };
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(text));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        let mut text = IoText(&mut *out);
        let _ = write_event(&mut text, event, |out| {
            if let Some(scope) = ctx.event_scope(event) {
                for span in scope.from_root() {
                    if let Some(fields) = span.extensions().get::<SpanFields>() {
                        out.write_str(&fields.0)?;
                    }
                }
            }
            Ok(())
        });
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

fn write_timestamp(out: &mut dyn fmt::Write) -> fmt::Result {
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
        let message = field.name() == "message";
        let table = if message { &CONTROL } else { &NEEDS_QUOTES };
        let plain = (message || !value.is_empty()) && !value.bytes().any(|b| table[usize::from(b)]);
        if plain {
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

    #[test]
    fn events_inside_a_request_span_carry_its_fields() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let subscriber = tracing_subscriber::registry().with(Logfmt { out: out.clone() });
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "req-42");
            let _inside = span.enter();
            tracing::warn!(session_id = "s1", "reuse detected");
            drop(_inside);
            tracing::info!("outside");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("WARN reuse detected session_id=s1 request_id=req-42"),
            "{text}"
        );
        assert!(lines[1].ends_with("INFO outside"), "{text}");
    }

    #[test]
    fn a_message_with_a_newline_stays_on_one_line() {
        let text = line(|| tracing::warn!("two\nlines"));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("WARN \"two\\nlines\""), "{text}");
    }
}
