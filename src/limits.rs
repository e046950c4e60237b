//! The vocabulary of rate limiting and client identity, shared by the
//! security layer, the stores and the configuration without any of them
//! depending on another: the `RATE_LIMIT_*` grammar and its [`Limit`], the
//! [`ClientKey`] a client is counted under, and what a refusal says
//! ([`Exceeded`]).
//!
//! Grammar (case-insensitive, the `limits` library's as used by slowapi):
//! `COUNT (/|per) [N] UNIT`, several joined by `;` or `,`, all of which must
//! hold. UNIT is second, minute, hour, day, month (30 days) or year (365
//! days), singular or plural, or an abbreviation (s, sec, m, min, h, hr, d).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// One limit: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub period: Duration,
    /// How the period was written, for messages: (N, unit).
    amount: u64,
    unit: &'static str,
}

impl Limit {
    pub fn new(count: u32, amount: u64, unit: &'static str) -> Option<Self> {
        let unit_secs = unit_seconds(unit)?;
        if count == 0 || amount == 0 {
            return None;
        }
        Some(Self {
            count,
            period: Duration::from_secs(amount.checked_mul(unit_secs)?),
            amount,
            unit,
        })
    }
}

impl fmt::Display for Limit {
    /// slowapi's wording: "5 per 1 minute".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {} {}", self.count, self.amount, self.unit)
    }
}

fn unit_seconds(unit: &str) -> Option<u64> {
    Some(match unit {
        "second" => 1,
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "month" => 30 * 86_400,
        "year" => 365 * 86_400,
        _ => return None,
    })
}

fn canonical_unit(word: &str) -> Option<&'static str> {
    Some(match word {
        "s" | "sec" | "secs" | "second" | "seconds" => "second",
        "m" | "min" | "mins" | "minute" | "minutes" => "minute",
        "h" | "hr" | "hrs" | "hour" | "hours" => "hour",
        "d" | "day" | "days" => "day",
        "month" | "months" => "month",
        "y" | "year" | "years" => "year",
        _ => return None,
    })
}

/// Parses one or more limits; the error says what was expected.
pub fn parse_limits(spec: &str) -> Result<Vec<Limit>, String> {
    let mut limits = Vec::new();
    for part in spec.split([';', ',']) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        limits.push(parse_one(part).ok_or_else(|| {
            format!(
                "cannot parse {part:?}; expected e.g. \"5/minute\", \"10 per second\", \"100/2 hours\", several joined by ';'"
            )
        })?);
    }
    if limits.is_empty() {
        return Err(format!(
            "no limit in {spec:?}; expected e.g. \"5/minute\" or \"100/hour;1000/day\""
        ));
    }
    Ok(limits)
}

fn parse_one(part: &str) -> Option<Limit> {
    let lower = part.to_ascii_lowercase();
    let (count, rest) = match lower.split_once('/') {
        Some((count, rest)) => (count.trim(), rest.trim()),
        None => {
            let (count, rest) = lower.split_once(char::is_whitespace)?;
            (count.trim(), rest.trim().strip_prefix("per")?.trim())
        }
    };
    let count: u32 = count.parse().ok()?;
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    let (amount, unit) = match first.parse::<u64>() {
        Ok(n) => (n, words.next()?),
        Err(_) => {
            // "2hours" as one word
            let digits = first.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
            if digits > 0 {
                (first[..digits].parse().ok()?, &first[digits..])
            } else {
                (1, first)
            }
        }
    };
    if words.next().is_some() {
        return None;
    }
    Limit::new(count, amount, canonical_unit(unit)?)
}

/// A limit that a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// Index of the limit (in the order configured) that refused.
    pub limit: usize,
    /// How long until the request would have been allowed.
    pub retry_after: Duration,
}

/// The rate-limit key of a client: an IPv4 address, or an IPv6 /64 (one
/// subscriber usually owns a whole /64, so keying single addresses would let
/// them rotate through 2^64 keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(pub u128);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V4(v4) => Self(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => Self(u128::from(v6) & !((1u128 << 64) - 1)),
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) become plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A coarse network for display: IPv4 /24, IPv6 /48.
pub fn coarse_ip(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> Limit {
        let limits = parse_limits(spec).unwrap();
        assert_eq!(limits.len(), 1, "{spec}");
        limits[0]
    }

    #[test]
    fn slash_and_per_forms_mean_the_same() {
        assert_eq!(one("5/minute"), one("5 per minute"));
        assert_eq!(one("5/minute").period, Duration::from_secs(60));
        assert_eq!(one("5/minute").count, 5);
        assert_eq!(one("10 per second").period, Duration::from_secs(1));
    }

    #[test]
    fn periods_can_have_a_multiplier_and_plural_units() {
        let l = one("100/2 hours");
        assert_eq!(l.count, 100);
        assert_eq!(l.period, Duration::from_secs(7200));
        assert_eq!(l.to_string(), "100 per 2 hour");
        assert_eq!(one("3 per 10 seconds").period, Duration::from_secs(10));
        assert_eq!(one("1/day").period, Duration::from_secs(86_400));
        assert_eq!(one("7 / 2hours").period, Duration::from_secs(7200));
    }

    #[test]
    fn units_are_case_insensitive_and_abbreviations_work() {
        assert_eq!(one("5/MINUTE"), one("5/min"));
        assert_eq!(one("5/h").period, Duration::from_secs(3600));
        assert_eq!(one("1/month").period, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn several_limits_are_joined_by_semicolon_or_comma() {
        let limits = parse_limits("100/hour;1000/day").unwrap();
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[1].period, Duration::from_secs(86_400));
        let limits = parse_limits("5 per second, 60 per minute ; 1000/day").unwrap();
        assert_eq!(limits.len(), 3);
    }

    #[test]
    fn the_429_wording_matches_slowapi() {
        assert_eq!(one("5/minute").to_string(), "5 per 1 minute");
    }

    #[test]
    fn garbage_is_rejected_with_a_hint() {
        for bad in [
            "",
            ";",
            "lots",
            "5",
            "5/",
            "/minute",
            "0/minute",
            "5/0 minutes",
            "-5/minute",
            "5/fortnight",
            "5 every minute",
            "5/minute extra",
            "99999999999/minute",
            "5/99999999999999999 years",
        ] {
            let err = parse_limits(bad).unwrap_err();
            assert!(err.contains("expected"), "{bad:?}: {err}");
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64() {
        let a = ClientKey::of(ip("2001:db8:1:2:aaaa::1"));
        let b = ClientKey::of(ip("2001:db8:1:2:bbbb::9"));
        let c = ClientKey::of(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(ClientKey::of(ip("1.2.3.4")), ClientKey::of(ip("1.2.3.5")));
        assert_eq!(
            ClientKey::of(ip("::ffff:1.2.3.4")),
            ClientKey::of(ip("1.2.3.4"))
        );
    }

    #[test]
    fn addresses_are_shown_coarsely() {
        assert_eq!(coarse_ip(ip("203.0.113.77")), "203.0.113.0/24");
        assert_eq!(coarse_ip(ip("2001:db8:abcd:12::1")), "2001:db8:abcd::/48");
        assert_eq!(coarse_ip(ip("::ffff:10.1.2.3")), "10.1.2.0/24");
    }
}
