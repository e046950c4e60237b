//! One AFL target over every parser of untrusted input: the first byte
//! picks the parser, the rest is its input. Each must return, never panic;
//! and a CSRF token or access token that verifies must be one this process
//! minted (none are minted here, so none may verify).

use std::net::IpAddr;

use chronos::authority::tokens::AccessTokens;
use chronos::cookies::read_cookie;
use chronos::limits::parse_limits;
use chronos::web::query::query_pairs;
use chronos::security::client_ip::ClientIpResolver;
use chronos::security::csrf::{Binding, CsrfTokens, Purpose};
use chronos::security::redirects::RedirectPolicy;
use http::{HeaderMap, HeaderValue};

fn headers(name: &'static str, value: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for part in value.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            map.append(name, v);
        }
    }
    map
}

fn main() {
    let csrf = CsrfTokens::new(b"a key of thirty-two bytes, yes!!", 3600);
    // The verified-token cache has interior mutability; nothing verifies
    // here, so it stays empty across the unwind boundary AFL puts around
    // each input.
    let tokens = std::panic::AssertUnwindSafe(
        AccessTokens::from_seed(&[7; 32], "http://127.0.0.1:8000", 900, 16).unwrap(),
    );
    let resolver = ClientIpResolver::new(vec!["10.0.0.0/8".parse().unwrap()]);
    let redirects = RedirectPolicy::new("https://app.example.com", vec!["desktop://cb".into()]);
    afl::fuzz!(|data: &[u8]| {
        let Some((which, input)) = data.split_first() else {
            return;
        };
        let text = String::from_utf8_lossy(input);
        match which % 7 {
            0 => {
                let _ = read_cookie(&headers("cookie", input), "chronos_session");
            }
            1 => {
                let peer: IpAddr = "10.0.0.1".parse().unwrap();
                let _ = resolver.resolve(peer, &headers("x-forwarded-for", input));
            }
            2 => {
                let _ = parse_limits(&text);
            }
            3 => {
                let binding = Binding::Session("s".into());
                assert!(csrf.verify(Purpose::Api, &binding, &text, 1_800_000_000).is_err());
            }
            4 => {
                if let Some(target) = redirects.resolve(Some(&text)) {
                    assert!(
                        text.is_empty()
                            || target == "https://app.example.com/auth/web/callback"
                            || target == "desktop://cb"
                    );
                }
            }
            5 => assert!(tokens.verify(&text, 1_800_000_000).is_err()),
            _ => {
                let _ = query_pairs(Some(&text));
            }
        }
    });
}
