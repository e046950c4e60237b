//! Where a proxied request goes: its route's upstream path plus the rest of
//! its path, as the client wrote it, and its query, unchanged.
//!
//! The rest of the path is checked, not normalised: a segment that decodes
//! to `.` or `..`, or that hides a `/` or `\` (`%2f`, `%5c`), could take the
//! request out of its prefix at the upstream (which may decode and resolve
//! it), so it is refused with 400 instead of being turned into some other
//! path. So are control characters and broken `%` escapes.

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeavesPrefix;

/// `base` (the upstream URL's path, no trailing slash) + `rest` + `?query`.
pub fn upstream_path(base: &str, rest: &str, query: Option<&str>) -> Result<String, LeavesPrefix> {
    check(rest)?;
    let mut path =
        String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1);
    path.push_str(base);
    path.push_str(rest);
    if path.is_empty() {
        path.push('/');
    }
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    Ok(path)
}

/// Every segment of `rest` (`""` or `/...`) stays a segment.
fn check(rest: &str) -> Result<(), LeavesPrefix> {
    // An empty segment inside the path: some upstreams collapse `//`,
    // others redirect it; neither is the path the client named.
    if rest.contains('\\') || rest.contains("//") {
        return Err(LeavesPrefix);
    }
    for segment in rest.split('/') {
        let decoded = if segment.contains('%') {
            std::borrow::Cow::Owned(decode(segment)?)
        } else {
            std::borrow::Cow::Borrowed(segment.as_bytes())
        };
        // Matrix parameters: Tomcat, Jetty and Spring read `..;x` as `..`.
        let name = decoded.split(|b| *b == b';').next().unwrap_or_default();
        if name == b"." || name == b".." || decoded.iter().any(|b| b"/\\".contains(b)) {
            return Err(LeavesPrefix);
        }
    }
    Ok(())
}

/// A segment's bytes, its `%XX` escapes decoded; a broken escape or a
/// control character refuses it.
fn decode(segment: &str) -> Result<Vec<u8>, LeavesPrefix> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(LeavesPrefix)?;
            let hex = std::str::from_utf8(hex).map_err(|_| LeavesPrefix)?;
            i += 3;
            u8::from_str_radix(hex, 16).map_err(|_| LeavesPrefix)?
        } else {
            i += 1;
            bytes[i - 1]
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(LeavesPrefix);
        }
        out.push(byte);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/api/calendar";

    #[test]
    fn the_rest_and_the_query_are_appended_as_written() {
        let url = |rest, query| upstream_path(BASE, rest, query);
        assert_eq!(url("", None).unwrap(), "/api/calendar");
        assert_eq!(
            url("/events/a%20b", Some("from=1&to=%2F")).unwrap(),
            "/api/calendar/events/a%20b?from=1&to=%2F"
        );
        assert_eq!(url("/x/", Some("")).unwrap(), "/api/calendar/x/?");
        // An upstream at its root: the rest alone, or `/`.
        assert_eq!(upstream_path("", "", Some("a=1")).unwrap(), "/?a=1");
        assert_eq!(upstream_path("", "/t", None).unwrap(), "/t");
        // Dots inside a name are names.
        assert!(url("/a.b/..c/...", None).is_ok());
        assert!(url("/a;v=1/b;x", None).is_ok());
        assert!(url("/%2e%2e%2e", None).is_ok());
    }

    #[test]
    fn a_path_that_would_leave_its_prefix_is_refused() {
        for rest in [
            "/..",
            "/../todos",
            "/a/../../todos",
            "/.",
            "/%2e%2e/todos",
            "/%2E%2e",
            "/.%2e",
            "/%2e",
            "/a%2f..%2ftodos",
            "/a%2F..",
            "/a%5c..",
            "/a\\..\\todos",
            "/%00",
            "/a%0d%0aX: y",
            "/%zz",
            "/%2",
            "/%",
            "/a/..;/todos",
            "/..;x",
            "/a/.;",
            "/%2e%2e;/todos",
            "/a/..%3b/todos",
            "/a//b",
        ] {
            assert_eq!(upstream_path(BASE, rest, None), Err(LeavesPrefix), "{rest}");
        }
    }
}
