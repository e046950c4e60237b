//! Prometheus metrics: the counters the server moves as it works
//! ([`Metrics`], cheap handles passed explicitly to whoever counts). The
//! [`exporter`] serves them, with the figures read at scrape time (limiter
//! keys, revoked set, dropped log lines, the process), on `METRICS_BIND`,
//! never on the public port. README lists every metric.
//!
//! Every label value is one of a fixed set (routes are route templates,
//! anything else `unmatched`; unusual methods `other`), so the number of
//! series stays bounded whatever clients send.

pub mod exporter;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::config::LogoutScope;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LimitLabels {
    pub(crate) limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    /// A PROXY_ROUTES prefix (a bounded set: the configured ones).
    route: Arc<String>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyRouteLabels {
    route: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug)]
pub enum Ended {
    /// `POST /auth/logout`.
    Logout,
    /// `DELETE /auth/sessions/{id}`: the person ended one from the list.
    ByUser,
    /// A refresh token was used again after its reuse interval.
    Reuse,
    /// `chronos user logout|remove`, learned from the database.
    Operator,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::ByUser => "user",
            Self::Reuse => "reuse",
            Self::Operator => "operator",
        }
    }
}

/// What the DBSC metrics count.
#[derive(Debug, Clone, Copy)]
pub enum DbscEvent {
    Registered,
    Refreshed,
    /// The session had ended: the browser was told to stop.
    Ended,
    /// A proof or challenge refused, by reason.
    Refused(&'static str),
}

/// Latency buckets, seconds: 100 µs to 2.5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Upstream latency buckets, seconds: 1 ms to PROXY_TIMEOUT's default.
const UPSTREAM_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

fn upstream_histogram() -> Histogram {
    Histogram::new(UPSTREAM_BUCKETS)
}

/// Statuses the server answers with, each given a slot of the request
/// counters' lookup table; others go through the labelled map.
const STATUSES: [u16; 16] = [
    200, 204, 303, 400, 401, 403, 404, 405, 408, 413, 422, 429, 431, 500, 502, 503,
];
const METHODS: [&str; 8] = [
    "GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH", "other",
];
const ROUTE_SLOTS: usize = ROUTES.len() + 1;
const UNMATCHED: usize = ROUTES.len();

/// The counters. Clones share them. Counting a request is two atomic adds
/// and a lock: its counter and histogram are found by index in tables
/// filled on first use (a labelled map lookup measured ~500 instructions
/// each, together a fifteenth of a logout).
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    /// route × method × status → that series' counter.
    request_slots: Arc<[OnceLock<Counter>]>,
    /// route → its latency histogram.
    latency_slots: Arc<[Histogram]>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    logouts: Family<ScopeLabels, Counter>,
    /// local, global, none → that series' counter (no label hashing per logout).
    logout_slots: Arc<[OnceLock<Counter>; 3]>,
    sessions_ended: Family<ReasonLabels, Counter>,
    reuse_detected: Counter,
    rate_limited: Family<LimitLabels, Counter>,
    revocation_failures: Counter,
    provider_failures: Family<ProviderLabels, Counter>,
    token_exchanges: Family<ResultLabels, Counter>,
    provider_refreshes: Family<ResultLabels, Counter>,
    security_events: Family<EventLabels, Counter>,
    dbsc_registrations: Counter,
    dbsc_refreshes: Counter,
    dbsc_ended: Counter,
    dbsc_refused: Family<ReasonLabels, Counter>,
    accounts_needing_reauth: Gauge,
    proxied: Family<ProxyLabels, Counter>,
    upstream_latency: Family<ProxyRouteLabels, Histogram, fn() -> Histogram>,
    /// Each proxied route's series, found without hashing its name.
    proxy_slots: Arc<OnceLock<Vec<ProxySlot>>>,
}

/// One proxied route's counters (by status, created on first use) and its
/// upstream latency histogram, held beside the families that export them.
#[derive(Debug)]
struct ProxySlot {
    route: Arc<String>,
    counters: [OnceLock<Counter>; STATUSES.len()],
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let latency_slots = (0..ROUTE_SLOTS)
            .map(|i| {
                latency.get_or_create_owned(&RouteLabels {
                    route: route_name(i),
                })
            })
            .collect();
        Self {
            requests: Family::default(),
            request_slots: (0..ROUTE_SLOTS * METHODS.len() * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            latency_slots,
            latency,
            logouts: Family::default(),
            logout_slots: Arc::new([const { OnceLock::new() }; 3]),
            sessions_ended: Family::default(),
            reuse_detected: Counter::default(),
            rate_limited: Family::default(),
            revocation_failures: Counter::default(),
            provider_failures: Family::default(),
            token_exchanges: Family::default(),
            provider_refreshes: Family::default(),
            security_events: Family::default(),
            dbsc_registrations: Counter::default(),
            dbsc_refreshes: Counter::default(),
            dbsc_ended: Counter::default(),
            dbsc_refused: Family::default(),
            accounts_needing_reauth: Gauge::default(),
            proxied: Family::default(),
            upstream_latency: Family::new_with_constructor(upstream_histogram),
            proxy_slots: Arc::new(OnceLock::new()),
        }
    }

    /// One answered proxied request (counted here instead of by
    /// [`request`](Self::request)): its route prefix, the status the
    /// browser got, and the upstream's time to its head when it answered.
    pub fn proxied(&self, route: &Arc<String>, status: u16, upstream: Option<Duration>) {
        let labels = || ProxyLabels {
            route: route.clone(),
            status,
        };
        let slot = self.proxy_slots.get().and_then(|slots| {
            slots
                .iter()
                .find(|slot| Arc::ptr_eq(&slot.route, route) || slot.route == *route)
        });
        let Some(slot) = slot else {
            self.proxied.get_or_create(&labels()).inc();
            if let Some(took) = upstream {
                self.upstream_latency
                    .get_or_create(&ProxyRouteLabels {
                        route: route.clone(),
                    })
                    .observe(took.as_secs_f64());
            }
            return;
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => slot.counters[i]
                .get_or_init(|| self.proxied.get_or_create_owned(&labels()))
                .inc(),
            None => self.proxied.get_or_create(&labels()).inc(),
        };
        if let Some(took) = upstream {
            slot.latency.observe(took.as_secs_f64());
        }
    }

    /// Sets up the proxied routes' series once (`PROXY_ROUTES`), so that
    /// counting a proxied request hashes no label.
    pub fn proxy_routes<'a>(&self, routes: impl Iterator<Item = &'a Arc<String>>) {
        let slots = routes
            .map(|route| ProxySlot {
                route: route.clone(),
                counters: std::array::from_fn(|_| OnceLock::new()),
                latency: self
                    .upstream_latency
                    .get_or_create_owned(&ProxyRouteLabels {
                        route: route.clone(),
                    }),
            })
            .collect();
        let _ = self.proxy_slots.set(slots);
    }

    /// One answered request (every one, 4xx, 429 and preflights included);
    /// `route` from [`route_index`].
    pub fn request(&self, route: usize, method: &Method, status: u16, took: Duration) {
        let route = route.min(UNMATCHED);
        let method = method_index(method);
        let labels = || RequestLabels {
            route: route_name(route),
            method: METHODS[method],
            status,
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(slot) => {
                let index = (route * METHODS.len() + method) * STATUSES.len() + slot;
                self.request_slots[index]
                    .get_or_init(|| self.requests.get_or_create_owned(&labels()))
                    .inc();
            }
            None => {
                self.requests.get_or_create(&labels()).inc();
            }
        }
        self.latency_slots[route].observe(took.as_secs_f64());
    }

    pub fn logout(&self, scope: LogoutScope) {
        let (slot, scope) = match scope {
            LogoutScope::Local => (0, "local"),
            LogoutScope::Global => (1, "global"),
            LogoutScope::None => (2, "none"),
        };
        self.logout_slots[slot]
            .get_or_init(|| self.logouts.get_or_create_owned(&ScopeLabels { scope }))
            .inc();
    }

    pub fn sessions_ended(&self, reason: Ended, n: usize) {
        if n > 0 {
            self.sessions_ended
                .get_or_create(&ReasonLabels {
                    reason: reason.label(),
                })
                .inc_by(n as u64);
        }
    }

    /// A refresh token used again after its reuse interval (its family ended).
    pub fn reuse_detected(&self) {
        self.reuse_detected.inc();
        self.sessions_ended(Ended::Reuse, 1);
    }

    /// A request refused with 429 by `limit` (`auth` or `verify`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// A revocation that could not be stored (the "always 200" logout whose
    /// session stays valid until its token expires).
    pub fn revocation_failed(&self) {
        self.revocation_failures.inc();
    }

    /// A call to the identity provider that failed or was refused as too
    /// busy (`operation`: `login`, `sign_in`, `refresh`, `session`,
    /// `revoke` for a token revocation that will be retried, or
    /// `token_refresh` for a connected account's refresh that will be).
    pub fn provider_failed(&self, operation: &'static str) {
        self.provider_failures
            .get_or_create(&ProviderLabels { operation })
            .inc();
    }
}

impl Metrics {
    /// A token exchange at `/oauth/token` answered, by result (`issued`
    /// or the OAuth error code).
    pub fn token_exchange(&self, result: &'static str) {
        self.token_exchanges
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// A provider access token refreshed for a connected account, by result
    /// (`refreshed`, `refused`, `failed`).
    pub fn provider_refresh(&self, result: &'static str) {
        self.provider_refreshes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// A Security Event Token received at `/auth/risc`, by event type (the
    /// last part of its URI, or `invalid`).
    pub fn security_event(&self, event: &'static str) {
        self.security_events
            .get_or_create(&EventLabels { event })
            .inc();
    }

    /// A DBSC registration, bound-cookie refresh, ended session told to
    /// stop, or refused proof (by reason).
    pub fn dbsc(&self, event: DbscEvent) {
        match event {
            DbscEvent::Registered => self.dbsc_registrations.inc(),
            DbscEvent::Refreshed => self.dbsc_refreshes.inc(),
            DbscEvent::Ended => self.dbsc_ended.inc(),
            DbscEvent::Refused(reason) => self
                .dbsc_refused
                .get_or_create(&ReasonLabels { reason })
                .inc(),
        };
    }

    /// How many connected accounts need to be connected again.
    pub fn set_accounts_needing_reauth(&self, n: i64) {
        self.accounts_needing_reauth.set(n);
    }
}

/// Methods outside the standard set share one label value.
fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::DELETE => 2,
        Method::OPTIONS => 3,
        Method::HEAD => 4,
        Method::PUT => 5,
        Method::PATCH => 6,
        _ => 7,
    }
}

fn route_name(index: usize) -> &'static str {
    ROUTES.get(index).copied().unwrap_or("unmatched")
}

/// The route template a path is counted under, as an index into
/// [`ROUTES`]: the routes' paths as they are, `.../{id}` for any id under a
/// templated route, [`ROUTES`]`.len()` (`unmatched`) for the rest.
pub fn route_index(path: &str) -> usize {
    if let Some(i) = ROUTES.iter().position(|r| *r == path) {
        return i;
    }
    ROUTES
        .iter()
        .position(|template| {
            template.strip_suffix("{id}").is_some_and(|prefix| {
                path.strip_prefix(prefix)
                    .is_some_and(|id| !id.is_empty() && !id.contains('/'))
            })
        })
        .unwrap_or(UNMATCHED)
}

/// Every route the server can serve (the sign-in method's pages included),
/// as templates; a test checks each against the OpenAPI document.
pub const ROUTES: [&str; 41] = [
    "/auth/logout",
    "/auth/csrf",
    "/auth/session",
    "/auth/verify",
    "/auth/refresh",
    "/auth/google/login",
    "/auth/web/callback",
    "/auth/desktop/callback",
    "/auth/sessions",
    "/auth/signin",
    "/auth/signup",
    "/auth/backchannel-logout",
    "/.well-known/jwks.json",
    "/openapi.json",
    "/health",
    "/health/ready",
    "/auth/google/connect",
    "/auth/accounts",
    "/oauth/token",
    "/auth/risc",
    "/auth/dbsc/register",
    "/auth/dbsc/refresh",
    "/auth/logout/provider",
    "/auth/sessions/{id}",
    "/auth/accounts/{id}",
    "/auth/google/accounts/{id}",
    "/auth/account",
    "/auth/passkeys",
    "/auth/passkeys/options",
    "/auth/passkeys/{id}",
    "/auth/totp",
    "/auth/totp/enrol",
    "/auth/totp/confirm",
    "/auth/totp/recovery-codes",
    "/auth/totp/disable",
    "/auth/signin/second-factor",
    "/auth/signin/enrol",
    "/auth/signin/passkey/options",
    "/auth/signin/passkey",
    "/auth/signup/passkey/options",
    "/auth/signup/passkey",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_route_templates_and_nothing_else_to_a_new_label() {
        assert_eq!(route_name(route_index("/auth/logout")), "/auth/logout");
        assert_eq!(
            route_name(route_index("/auth/sessions/0b5c")),
            "/auth/sessions/{id}"
        );
        for path in [
            "/auth/sessions/",
            "/auth/sessions/a/b",
            "/x",
            "",
            "/auth/logout/",
        ] {
            assert_eq!(route_name(route_index(path)), "unmatched", "{path}");
        }
    }
}
