//! The metrics endpoint: `GET /metrics` on its own listener
//! (`METRICS_BIND`), OpenMetrics text encoded by prometheus-client, with
//! the live figures and the process read at each scrape.

use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderValue, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::{LimitLabels, Metrics};
/// A figure read at scrape time.
pub type Reading = Box<dyn Fn() -> usize + Send + Sync>;

/// What the exporter reads at scrape time (handed in by whoever owns the
/// stores, so this module needs none of them).
pub struct Live {
    /// Clients the `RATE_LIMIT_AUTH` limiter tracks.
    pub auth_limit_keys: Reading,
    /// Clients the `RATE_LIMIT_VERIFY` limiter tracks, when it is on.
    pub verify_limit_keys: Option<Reading>,
    /// Revoked sessions held in memory.
    pub revoked_sessions: Reading,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "chronos_rate_limit_keys",
            "Clients the rate limiter is tracking (in this process; 0 with Redis)",
            None,
            MetricType::Gauge,
        )?;
        for (limit, reading) in [
            ("auth", Some(&self.auth_limit_keys)),
            ("verify", self.verify_limit_keys.as_ref()),
        ] {
            if let Some(reading) = reading {
                let labels = LimitLabels { limit };
                ConstGauge::new(reading() as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let revoked = ConstGauge::new((self.revoked_sessions)() as i64);
        revoked.encode(encoder.encode_descriptor(
            "chronos_revoked_sessions",
            "Revoked sessions held in memory (those whose access tokens may not have expired yet)",
            None,
            revoked.metric_type(),
        )?)?;
        let dropped = ConstCounter::new(crate::telemetry::dropped_lines());
        dropped.encode(encoder.encode_descriptor(
            "chronos_log_lines_dropped",
            "Log lines dropped because the log writer's queue was full",
            None,
            dropped.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The process figures Prometheus's other clients export, from /proc.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                p.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                p.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                p.threads,
            ),
        ] {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let start = ConstGauge::new(p.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

mod process {
    /// One reading of /proc/self.
    pub struct Reading {
        pub cpu_seconds: f64,
        pub resident_bytes: u64,
        pub virtual_bytes: u64,
        pub open_fds: u64,
        pub max_fds: u64,
        pub threads: u64,
        pub start_time_seconds: f64,
    }

    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_BYTES: u64 = 4096;

    pub fn read() -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces), from 3.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let utime = field(14)?;
        let stime = field(15)?;
        let threads = field(20)?;
        let start_ticks = field(22)?;
        let virtual_bytes = field(23)?;
        let resident_bytes = field(24)? * PAGE_BYTES;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or(0);
        Some(Reading {
            cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
            resident_bytes,
            virtual_bytes,
            open_fds,
            max_fds,
            threads,
            start_time_seconds: boot as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        })
    }
}

/// The registry a scrape encodes: the counters, the live figures, the
/// process.
pub fn registry(metrics: &Metrics, live: Live) -> Registry {
    let mut registry = Registry::default();
    let m = metrics.clone();
    registry.register(
        "chronos_http_requests",
        "Answered HTTP requests by route template, method and status",
        m.requests,
    );
    registry.register(
        "chronos_http_request_duration_seconds",
        "Time from the request head to the response head, by route template",
        m.latency,
    );
    registry.register(
        "chronos_logouts",
        "POST /auth/logout requests by scope",
        m.logouts,
    );
    registry.register(
        "chronos_sessions_ended",
        "Sessions ended, by reason (logout, user, reuse, operator)",
        m.sessions_ended,
    );
    registry.register(
        "chronos_refresh_reuse_detected",
        "Refresh tokens used again after the reuse interval (each ends its session)",
        m.reuse_detected,
    );
    registry.register(
        "chronos_rate_limited",
        "Requests refused with 429, by limit (auth, verify, proxy)",
        m.rate_limited,
    );
    registry.register(
        "chronos_revocation_failures",
        "Session revocations that could not be stored (the logout still answered 200)",
        m.revocation_failures,
    );
    registry.register(
        "chronos_provider_failures",
        "Failed calls to the identity provider, by operation (login, sign_in, refresh, session, revoke)",
        m.provider_failures,
    );
    registry.register(
        "chronos_token_exchanges",
        "Token exchanges at /oauth/token, by result (issued, or the OAuth error)",
        m.token_exchanges,
    );
    registry.register(
        "chronos_provider_refreshes",
        "Provider access tokens refreshed for connected accounts, by result (refreshed, refused, failed)",
        m.provider_refreshes,
    );
    registry.register(
        "chronos_security_events",
        "Security Event Tokens received at /auth/risc, by event type",
        m.security_events,
    );
    registry.register(
        "chronos_dbsc_registrations",
        "Sessions bound to a device key at /auth/dbsc/register (DBSC)",
        m.dbsc_registrations,
    );
    registry.register(
        "chronos_dbsc_refreshes",
        "Bound cookies renewed with a proof of the device key at /auth/dbsc/refresh",
        m.dbsc_refreshes,
    );
    registry.register(
        "chronos_dbsc_sessions_ended",
        "DBSC refreshes of ended sessions, answered continue: false",
        m.dbsc_ended,
    );
    registry.register(
        "chronos_dbsc_refused",
        "DBSC proofs and challenges refused, by reason",
        m.dbsc_refused,
    );
    registry.register(
        "chronos_accounts_needing_reauth",
        "Connected accounts the provider refused, waiting to be connected again",
        m.accounts_needing_reauth,
    );
    registry.register(
        "chronos_proxy_requests",
        "Proxied requests (PROXY_ROUTES) by route prefix and the status the client got",
        m.proxied,
    );
    registry.register(
        "chronos_proxy_upstream_duration_seconds",
        "Time from sending a proxied request to the upstream's response head, by route prefix",
        m.upstream_latency,
    );
    registry.register_collector(Box::new(live));
    registry.register_collector(Box::new(Process));
    registry
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, registry: Registry) -> std::io::Result<()> {
    let registry = Arc::new(registry);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::with_capacity(16 * 1024);
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => (
                        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
                        body,
                    )
                        .into_response(),
                    Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app).await
}
