//! The two structured-field shapes DBSC uses (RFC 9651): an sf-string
//! item (`Secure-Session-Response`, `Sec-Secure-Session-Id`), read, and
//! the strings and tokens our own headers carry, written.

/// The string of an sf-string item (`"..."`, optionally with parameters,
/// which DBSC does not define and are ignored). `None` for anything else:
/// a bare token, a missing quote, a byte outside the printable ASCII range,
/// an escape other than `\"` or `\\`.
pub fn parse_string(field: &[u8]) -> Option<String> {
    let field = field.trim_ascii_matches_space();
    let rest = field.strip_prefix(b"\"")?;
    let mut out = String::with_capacity(rest.len());
    let mut bytes = rest.iter();
    loop {
        match *bytes.next()? {
            b'\\' => match *bytes.next()? {
                c @ (b'"' | b'\\') => out.push(c as char),
                _ => return None,
            },
            b'"' => break,
            c @ 0x20..=0x7e => out.push(c as char),
            _ => return None,
        }
    }
    // After the string: nothing, or its parameters.
    let after = bytes.as_slice();
    (after.is_empty() || after[0] == b';').then_some(out)
}

/// `s` as an sf-string (quoted, `"` and `\` escaped); `None` when it holds
/// a character an sf-string cannot (our values never do).
pub fn string(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => return None,
        }
    }
    out.push('"');
    Some(out)
}

/// Leading and trailing spaces, which RFC 9651 parsing discards.
trait TrimSpace {
    fn trim_ascii_matches_space(&self) -> &Self;
}

impl TrimSpace for [u8] {
    fn trim_ascii_matches_space(&self) -> &[u8] {
        let start = self.iter().position(|b| *b != b' ').unwrap_or(self.len());
        let end = self
            .iter()
            .rposition(|b| *b != b' ')
            .map_or(start, |i| i + 1);
        &self[start..end.max(start)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_read_as_rfc_9651_defines_them() {
        assert_eq!(parse_string(b"\"abc.def\"").as_deref(), Some("abc.def"));
        assert_eq!(
            parse_string(b"  \"a\\\"b\\\\c\"  ").as_deref(),
            Some("a\"b\\c")
        );
        assert_eq!(parse_string(b"\"x\";a=1").as_deref(), Some("x"));
        assert_eq!(parse_string(b"\"\"").as_deref(), Some(""));
        for bad in [
            &b"abc"[..],
            b"\"abc",
            b"\"a\\nb\"",
            b"\"a\tb\"",
            b"\"caf\xc3\xa9\"",
            b"\"a\" b",
            b"",
        ] {
            assert_eq!(
                parse_string(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn strings_are_written_quoted_and_escaped() {
        assert_eq!(string("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(
            parse_string(string("x y").unwrap().as_bytes()).as_deref(),
            Some("x y")
        );
        assert_eq!(string("é"), None);
        assert_eq!(string("a\nb"), None);
    }
}
