//! Reading `Set-Cookie` lines: by name, value, Max-Age, scope attributes,
//! and whether a line clears its cookie.

use std::collections::HashMap;

use reqwest::header::HeaderMap;

/// All `Set-Cookie` headers of a response, by cookie name.
pub fn set_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let v = v.to_str().unwrap().to_string();
            let name = v.split('=').next().unwrap().to_string();
            (name, v)
        })
        .collect()
}

/// The attributes of a Set-Cookie line other than value, Max-Age and
/// Expires, normalised for comparison.
pub fn scope_attributes(set_cookie: &str) -> Vec<String> {
    let mut attrs: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.starts_with("max-age") && !a.starts_with("expires"))
        .collect();
    attrs.sort();
    attrs
}

pub fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
}

pub fn max_age(set_cookie: &str) -> Option<i64> {
    set_cookie.split(';').find_map(|a| {
        let (k, v) = a.trim().split_once('=')?;
        k.eq_ignore_ascii_case("max-age")
            .then(|| v.parse().unwrap())
    })
}

/// Asserts a Set-Cookie line is a clearing one: empty value, Max-Age=0, past Expires.
pub fn assert_cleared(set_cookie: &str) {
    assert_eq!(cookie_value(set_cookie), "", "{set_cookie}");
    assert_eq!(max_age(set_cookie), Some(0), "{set_cookie}");
    assert!(
        set_cookie.contains("Expires=Thu, 01 Jan 1970"),
        "{set_cookie}"
    );
}
