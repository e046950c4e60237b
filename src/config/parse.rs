//! Small value parsers shared by the sections; each error names its variable.

use ipnet::IpNet;
use url::Url;

use super::ConfigError;

pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub fn bool_or(
    var: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            var,
            format!("expected true or false, got {value:?}"),
        )),
    }
}

/// A whole number of seconds from `min` to ten years.
pub fn seconds_or(
    var: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if n >= min && n <= 10 * 365 * 86_400 => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!("expected a whole number of seconds from {min} to 315360000, got {value:?}"),
        )),
    }
}

/// A duration in seconds: a whole number of seconds, or one with a unit
/// (`90s`, `15m`, `12h`, `7d`), from `min` seconds to ten years.
pub fn duration_or(
    var: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let text = value.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        _ => None,
    };
    match (number.parse::<u64>(), scale) {
        (Ok(n), Some(scale))
            if n.checked_mul(scale)
                .is_some_and(|s| s >= min && s <= 10 * 365 * 86_400) =>
        {
            Ok(n * scale)
        }
        _ => Err(ConfigError::new(
            var,
            format!(
                "expected a duration from {min} s to ten years: seconds, or a number with s, m, h or d (e.g. 12h), got {value:?}"
            ),
        )),
    }
}

pub fn cidr(item: &str) -> Option<IpNet> {
    item.parse::<IpNet>()
        .ok()
        .or_else(|| item.parse::<std::net::IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

/// An absolute http(s) URL used as a base: returned without a trailing slash.
pub fn base_url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    match Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(value.trim_end_matches('/').to_string())
        }
        _ => Err(ConfigError::new(
            var,
            format!("expected an absolute http(s) URL, got {value:?}"),
        )),
    }
}

/// `scheme://host[:port]` of an absolute URL (non-special schemes such as
/// `tauri://` included, which `Url::origin` would make opaque).
pub fn origin_of(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let not_an_origin = || {
        ConfigError::new(
            var,
            format!("{value:?} is not an origin (scheme://host[:port])"),
        )
    };
    let url = Url::parse(value).map_err(|_| not_an_origin())?;
    let host = url.host_str().ok_or_else(not_an_origin)?;
    Ok(match url.port() {
        Some(port) => format!("{}://{}:{}", url.scheme(), host, port),
        None => format!("{}://{}", url.scheme(), host),
    })
}

pub fn origin(var: &'static str, value: &str) -> Result<String, ConfigError> {
    if value == "*" {
        return Err(ConfigError::new(
            var,
            "\"*\" cannot be used: credentialed CORS needs explicit origins",
        ));
    }
    let origin = origin_of(var, value)?;
    if origin != value.trim_end_matches('/') {
        return Err(ConfigError::new(
            var,
            format!("{value:?} is not an origin (scheme://host[:port], no path)"),
        ));
    }
    Ok(origin)
}
