//! Property tests of every parser that reads untrusted input: the cookie
//! header, X-Forwarded-For behind trusted proxies, the rate-limit grammar,
//! CSRF tokens, the redirect allow-list, access tokens (JWT), and query and
//! form bodies. Each never panics on any input and keeps its invariant:
//! a redirect is accepted only if it is exactly an allow-listed one; a
//! token verifies only if this server minted it, for this purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};

use chronos::authority::tokens::{AccessClaims, AccessTokens};
use chronos::cookies::read_cookie;
use chronos::limits::parse_limits;
use chronos::security::client_ip::ClientIpResolver;
use chronos::security::csrf::{Binding, CsrfTokens, Purpose};
use chronos::security::redirects::RedirectPolicy;
use chronos::web::query::{query_pairs, query_param};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        ..ProptestConfig::default()
    }
}

/// Bytes a header value may hold (visible ASCII, space, tab, obs-text).
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff],
        0..200,
    )
}

/// RFC 6265 cookie-octets.
fn cookie_value() -> impl Strategy<Value = String> {
    "[!#-+\\--:<-\\[\\]-~]{1,64}"
}

fn headers_with(name: &str, values: &[Vec<u8>]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for v in values {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
        }
    }
    headers
}

fn claims(sid: &str, now: u64) -> AccessClaims {
    AccessClaims {
        iss: "http://127.0.0.1:8000".into(),
        aud: "chronos".into(),
        sub: "user-1".into(),
        email: "ann@example.com".into(),
        sid: sid.into(),
        jti: "j".into(),
        iat: now,
        exp: now + 900,
        nbf: None,
        name: None,
        avatar_url: None,
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

const NOW: u64 = 1_800_000_000;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_cookie_header_is_read_without_panicking(values in prop::collection::vec(header_bytes(), 0..4)) {
        let headers = headers_with("cookie", &values);
        let _ = read_cookie(&headers, "chronos_session");
    }

    #[test]
    fn a_cookie_among_others_is_read_exactly(
        value in cookie_value(),
        before in prop::collection::vec(("[a-z]{1,8}", cookie_value()), 0..4),
        after in prop::collection::vec(("[a-z]{1,8}", cookie_value()), 0..4),
    ) {
        let mut pairs: Vec<String> = before.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.push(format!("chronos_session={value}"));
        pairs.extend(after.iter().map(|(k, v)| format!("{k}={v}")));
        let headers = headers_with("cookie", &[pairs.join("; ").into_bytes()]);
        prop_assert_eq!(read_cookie(&headers, "chronos_session"), Some(value.as_str()));
    }

    #[test]
    fn x_forwarded_for_is_believed_only_from_trusted_proxies(
        values in prop::collection::vec(header_bytes(), 0..3),
        ips in prop::collection::vec(any::<[u8; 4]>(), 0..4),
        peer_trusted in any::<bool>(),
    ) {
        let mut values = values;
        values.push(ips.iter().map(|b| Ipv4Addr::from(*b).to_string()).collect::<Vec<_>>().join(", ").into_bytes());
        let headers = headers_with("x-forwarded-for", &values);
        let peer: IpAddr = if peer_trusted { "10.0.0.1" } else { "192.0.2.1" }.parse().unwrap();
        let resolver = ClientIpResolver::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let client = resolver.resolve(peer, &headers);
        if !peer_trusted {
            prop_assert_eq!(client, peer);
        } else {
            // The peer itself, or an address some header named.
            let named = values.iter().any(|v| String::from_utf8_lossy(v).contains(&client.to_string()));
            prop_assert!(client == peer || named, "{client} from nowhere");
        }
        let nobody = ClientIpResolver::new(Vec::new());
        prop_assert_eq!(nobody.resolve(peer, &headers), peer);
    }

    #[test]
    fn any_rate_limit_spec_parses_or_says_why(spec in "\\PC{0,40}") {
        match parse_limits(&spec) {
            Ok(limits) => prop_assert!(limits.iter().all(|l| l.count > 0)),
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn well_formed_rate_limits_parse_to_what_they_say(
        specs in prop::collection::vec((1u32..100_000, prop::sample::select(vec!["second", "minute", "hour", "day"])), 1..4),
    ) {
        let text = specs.iter().map(|(n, unit)| format!("{n}/{unit}")).collect::<Vec<_>>().join("; ");
        let limits = parse_limits(&text).unwrap();
        prop_assert_eq!(limits.len(), specs.len());
        for (limit, (n, unit)) in limits.iter().zip(&specs) {
            prop_assert_eq!(limit.count, *n);
            let seconds = match *unit { "second" => 1, "minute" => 60, "hour" => 3600, _ => 86_400 };
            prop_assert_eq!(limit.period.as_secs(), seconds);
        }
    }

    #[test]
    fn a_csrf_token_verifies_only_as_minted(
        garbage in "\\PC{0,300}",
        session in "[a-f0-9-]{36}",
        other in "[a-f0-9-]{36}",
        flip in any::<prop::sample::Index>(),
    ) {
        let tokens = CsrfTokens::new(b"a key of thirty-two bytes, yes!!", 3600);
        let binding = Binding::Session(session.clone().into());
        prop_assert!(tokens.verify(Purpose::Api, &binding, &garbage, NOW).is_err());
        let token = tokens.issue(Purpose::Api, &binding, NOW);
        prop_assert!(tokens.verify(Purpose::Api, &binding, &token, NOW).is_ok());
        prop_assert!(tokens.verify(Purpose::Form, &binding, &token, NOW).is_err());
        if other != session {
            prop_assert!(tokens.verify(Purpose::Api, &Binding::Session(other.into()), &token, NOW).is_err());
        }
        prop_assert!(tokens.verify(Purpose::Api, &Binding::Anonymous, &token, NOW).is_err());
        prop_assert!(tokens.verify(Purpose::Api, &binding, &token, NOW + 3600).is_err());
        let foreign = CsrfTokens::new(b"another key of thirty-two bytes!", 3600);
        prop_assert!(foreign.verify(Purpose::Api, &binding, &token, NOW).is_err());
        // Any single changed character breaks it.
        let mut bytes = token.clone().into_bytes();
        let i = flip.index(bytes.len());
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        if changed != token {
            prop_assert!(tokens.verify(Purpose::Api, &binding, &changed, NOW).is_err());
        }
    }

    #[test]
    fn a_redirect_is_accepted_only_if_it_is_exactly_an_allow_listed_one(
        requested in prop_oneof![
            "\\PC{0,80}",
            Just("https://app.example.com/auth/web/callback".to_string()),
            Just("https://app.example.com/auth/web/callback/".to_string()),
            Just("https://APP.example.com/auth/web/callback".to_string()),
            Just("https://app.example.com/auth/web/callback?x=1".to_string()),
            Just("https://app.example.com.evil.example/auth/web/callback".to_string()),
            Just("//evil.example".to_string()),
            Just("desktop://callback".to_string()),
        ],
    ) {
        let allowed = vec!["desktop://callback".to_string()];
        let policy = RedirectPolicy::new("https://app.example.com", allowed.clone());
        let exact = requested == "https://app.example.com/auth/web/callback" || allowed.contains(&requested);
        match policy.resolve(Some(&requested)) {
            Some(target) if requested.is_empty() => prop_assert_eq!(target, policy.default_target()),
            Some(target) => {
                prop_assert!(exact, "{requested} accepted");
                prop_assert_eq!(target, requested.as_str());
            }
            None => prop_assert!(!exact && !requested.is_empty()),
        }
    }

    #[test]
    fn an_access_token_verifies_only_if_this_server_minted_it(
        garbage in "\\PC{0,400}",
        sid in "[a-f0-9-]{36}",
        flip in any::<prop::sample::Index>(),
    ) {
        let ours = AccessTokens::from_seed(&[7; 32], "http://127.0.0.1:8000", 900, 16).unwrap();
        let theirs = AccessTokens::from_seed(&[8; 32], "http://127.0.0.1:8000", 900, 16).unwrap();
        prop_assert!(ours.verify(&garbage, NOW).is_err());
        let token = ours.issue(claims(&sid, NOW)).unwrap();
        prop_assert_eq!(&ours.verify(&token, NOW + 1).unwrap().sid, &sid);
        let forged = theirs.issue(claims(&sid, NOW)).unwrap();
        prop_assert!(ours.verify(&forged, NOW + 1).is_err());
        let mut bytes = token.clone().into_bytes();
        let i = flip.index(bytes.len());
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        if changed != token {
            prop_assert!(ours.verify(&changed, NOW + 1).is_err(), "changed at {i}");
        }
        prop_assert!(ours.verify(&token, NOW + 901).is_err(), "expired");
    }

    #[test]
    fn any_query_or_form_body_parses_and_round_trips(
        raw in "\\PC{0,200}",
        pairs in prop::collection::vec(("[a-zA-Z_]{1,10}", "\\PC{0,20}"), 0..5),
    ) {
        let _ = query_pairs(Some(&raw));
        let encoded = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
            .collect::<Vec<_>>()
            .join("&");
        let parsed = query_pairs(Some(&encoded));
        prop_assert_eq!(parsed.len(), pairs.len());
        if let Some((k, v)) = pairs.first() {
            prop_assert_eq!(query_param(&parsed, k), Some(v.clone()));
        }
    }
}
