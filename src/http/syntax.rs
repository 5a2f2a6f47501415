//! Small pieces of HTTP grammar (RFC 9110 §5.6) shared by the parser, the chunked decoder and
//! the response writer.

/// Whether `b` may appear in a token (header names, methods, transfer codings):
/// `!#$%&'*+-.^_`|~`, digits and letters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// [`is_token_byte`] as a table: response header names are checked on the hot path.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-'
            )
            || matches!(c, b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    table
};

/// Whether `s` is a non-empty token.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_byte(b))
}

/// Whether `s` may be a field value: visible characters, spaces, tabs and obs-text, but no
/// other control character. Refusing CR and LF here is what prevents response splitting.
pub(crate) fn is_field_value(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// `s` without leading and trailing optional whitespace (spaces and tabs).
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// The elements of a comma-separated list value (`#element`), trimmed; empty elements, which
/// the list syntax allows, are skipped.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

/// Parses a `Content-Length` value (RFC 9112 §6.2, RFC 9110 §8.6): one decimal number, or
/// a list of equal ones (`5, 5`, which a recipient may take as `5`). Anything else (a sign,
/// a space inside the number, differing values, an empty value) is `None`: a message whose
/// length two parsers could read differently is refused, not guessed at.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for item in value.split(|&b| b == b',').map(trim_ows) {
        // 19 digits always fit in a u64; longer numbers are not plausible lengths anyway.
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = item
            .iter()
            .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0'));
        if length.is_some_and(|previous| previous != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a
/// bracketed IP literal or a reg-name (which covers IPv4 and the empty host), then an
/// optional port of digits. RFC 9112 §3.2 has a server refuse any other value with 400: a
/// `Host` such as `a@b`, `a/b` or `a b` is read as a different authority by different
/// parsers, and an authority the proxy and the target disagree on is a routing decision
/// taken twice.
pub(crate) fn is_host(value: &[u8]) -> bool {
    let value = trim_ows(value);
    let (host, port) = match value.iter().rposition(|&b| b == b':') {
        Some(colon) if !value[colon..].contains(&b']') => (&value[..colon], &value[colon + 1..]),
        _ => (value, &b""[..]),
    };
    if !port.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let is_sub_delim = |b: u8| b"!$&'()*+,;=".contains(&b);
    let is_unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    match host {
        [b'[', literal @ .., b']'] => {
            !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
        }
        _ => {
            let mut i = 0;
            while let Some(&b) = host.get(i) {
                if b == b'%' {
                    let hex = host.get(i + 1..i + 3);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return false;
                    }
                    i += 3;
                } else if is_unreserved(b) || is_sub_delim(b) {
                    i += 1;
                } else {
                    return false;
                }
            }
            true
        }
    }
}

/// Appends `n` in decimal: the hot path writes Content-Length with this rather than `format!`.
pub(crate) fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        for n in [0, 7, 10, 13, 999, 1000, 65_536, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn lists_and_trimming() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        let items: Vec<&[u8]> = list_items(b" keep-alive ,, Close,").collect();
        assert_eq!(items, [&b"keep-alive"[..], b"Close"]);
    }

    #[test]
    fn content_lengths() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"5, 5,5"), Some(5));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5 5",
            b"0x10",
            b"5, 6",
            b"5,",
            b",5",
            b"99999999999999999999",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn hosts() {
        for good in [
            &b""[..],
            b"a",
            b"example.com:8080",
            b"127.0.0.1",
            b"[::1]:80",
            b"[v1.x]",
            b"xn--d1a.%41b",
            b" a:1 ",
            b"a:",
        ] {
            assert!(is_host(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b"a b"[..],
            b"a@b",
            b"a/b",
            b"a?b",
            b"a#b",
            b"[::1",
            b"::1",
            b"[]",
            b"a:8x",
            b"a:1:2",
            b"%4",
            b"%zz",
            b"a\x7f",
            b"\xc3\xa9",
        ] {
            assert!(!is_host(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tokens_and_values() {
        assert!(is_token(b"X-Request-Id"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(is_field_value(b"text/plain; q=1\t\xff"));
        assert!(!is_field_value(b"a\r\nInjected: 1"));
    }
}
