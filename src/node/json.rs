//! Node's JSON, read with a strict parser.
//!
//! Node writes every channel message with `JSON.stringify`, which escapes a lone UTF-16
//! surrogate as `\ud800` instead of failing (a JavaScript string need not be valid
//! Unicode). serde_json rejects such an escape when it builds a Rust `String`, yet accepts it
//! when it only checks the syntax of a value (`RawValue`). So herd:
//!
//! * checks that a line is JSON with [`RawJson::new`], which keeps the text exactly as Node
//!   wrote it: a user message passes through byte for byte, surrogates and all;
//! * reads the fields of an internal message from a copy in which each lone surrogate escape
//!   is replaced by `\ufffd` ([`replace_lone_surrogates`]), the same six bytes, so offsets in the
//!   copy are offsets in the original. U+FFFD is also what Node itself makes of a lone
//!   surrogate when it turns a string into UTF-8 (a socket path, say).

use std::borrow::Cow;
use std::fmt;

use serde_json::value::RawValue;

use super::error::ProtocolError;

/// A JSON value kept as the exact text it arrived as (or was given as), on one line.
///
/// Used for user messages (the argument of Node's `process.send` and `process.on('message')`)
/// and for the `data` of a `queryServer`, which herd echoes back untouched.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawJson(String);

impl RawJson {
    /// Checks that `text` is one JSON value and keeps it, lone surrogate escapes included.
    ///
    /// A raw newline can only be whitespace between tokens in valid JSON (inside a string it
    /// must be escaped), so each is replaced by a space: the value stays the same and fits on
    /// one line of the channel. Anything else is kept byte for byte.
    pub fn new(text: &str) -> Result<RawJson, ProtocolError> {
        serde_json::from_str::<&RawValue>(text).map_err(|e| ProtocolError::not_json(text, &e))?;
        Ok(RawJson(text.replace('\n', " ")))
    }

    /// [`RawJson::new`] for bytes, which must be UTF-8 (Node's channel is).
    pub fn from_bytes(bytes: &[u8]) -> Result<RawJson, ProtocolError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ProtocolError::NotJson {
            reason: "not UTF-8".into(),
            excerpt: ProtocolError::excerpt(bytes),
        })?;
        RawJson::new(text)
    }

    /// Wraps text already known to be one JSON value on one line.
    pub(super) fn trusted(text: String) -> RawJson {
        RawJson(text)
    }

    /// `null`.
    pub fn null() -> RawJson {
        RawJson("null".into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value for a log line: a JSON string as its text (a lone surrogate shown as U+FFFD),
    /// anything else as its JSON.
    pub fn as_text(&self) -> Cow<'_, str> {
        let text = self.0.trim_matches(|c| matches!(c, ' ' | '\t' | '\r'));
        if text.starts_with('"') {
            if let Ok(s) = serde_json::from_str::<String>(&replace_lone_surrogates(text)) {
                return Cow::Owned(s);
            }
        }
        Cow::Borrowed(&self.0)
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.0)
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` with every `\uXXXX` escape of a lone surrogate (one not part of a high–low pair)
/// replaced by `\ufffd`. Borrowed when there is none, which is nearly always.
///
/// A backslash means something only inside a JSON string, so scanning escapes left to right
/// (skipping the character after each backslash) finds exactly the string escapes; `\\u`
/// is an escaped backslash followed by a plain `u`.
pub fn replace_lone_surrogates(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut copy: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(bytes, i) else {
            i += 2; // `\"`, `\\`, `\n`, …: one escaped character
            continue;
        };
        if (0xD800..0xDC00).contains(&unit) {
            if let Some(low) = escape_at(bytes, i + 6) {
                if (0xDC00..0xE000).contains(&low) {
                    i += 12; // a pair: one character outside the BMP
                    continue;
                }
            }
        }
        if (0xD800..0xE000).contains(&unit) {
            copy.get_or_insert_with(|| bytes.to_vec())[i + 2..i + 6].copy_from_slice(b"fffd");
        }
        i += 6;
    }
    match copy {
        // Only ASCII hex digits were replaced by ASCII hex digits.
        Some(copy) => Cow::Owned(String::from_utf8(copy).expect("still UTF-8")),
        None => Cow::Borrowed(text),
    }
}

/// The UTF-16 unit of a `\uXXXX` escape starting at `bytes[i]`, if there is one.
fn escape_at(bytes: &[u8], i: usize) -> Option<u16> {
    let hex = bytes.get(i..i + 6)?;
    if hex[0] != b'\\' || hex[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&hex[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

/// The part of `original` at the place `part` has in `copy`, a same-length copy of it
/// (see [`replace_lone_surrogates`]). `part` must be a slice of `copy`.
pub fn same_place<'a>(original: &'a str, copy: &str, part: &str) -> &'a str {
    let start = part.as_ptr() as usize - copy.as_ptr() as usize;
    &original[start..start + part.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_are_replaced_pairs_kept() {
        assert_eq!(replace_lone_surrogates(r#""\ud800""#), r#""\ufffd""#);
        assert_eq!(replace_lone_surrogates(r#""\uDFFF x""#), r#""\ufffd x""#);
        assert_eq!(
            replace_lone_surrogates(r#""a\udc00\ud800""#),
            r#""a\ufffd\ufffd""#
        );
        // A high surrogate followed by another high one: both lone.
        assert_eq!(
            replace_lone_surrogates(r#""\ud800\ud801""#),
            r#""\ufffd\ufffd""#
        );
        // A valid pair (U+1F600) and ordinary escapes stay as they are, borrowed.
        for text in [
            r#""\ud83d\ude00""#,
            r#""\u00e9\n\"""#,
            r#""\\ud800""#,
            "[1,2]",
        ] {
            assert!(matches!(replace_lone_surrogates(text), Cow::Borrowed(t) if t == text));
        }
        // `\\\ud800`: an escaped backslash, then a real escape.
        assert_eq!(replace_lone_surrogates(r#""\\\ud800""#), r#""\\\ufffd""#);
        // Truncated escapes at the end are left for the parser to reject.
        assert_eq!(replace_lone_surrogates(r#""\ud8"#), r#""\ud8"#);
    }

    #[test]
    fn raw_json_keeps_the_text_and_checks_the_syntax() {
        for text in [
            r#""\ud800""#,
            r#"{"a":[1,{"b":null}],"s":"\udfff"}"#,
            " 1e3 ",
            "[]",
        ] {
            assert_eq!(RawJson::new(text).unwrap().as_str(), text);
        }
        // Deeper than serde_json's recursion limit for typed values: syntax only, no limit.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(RawJson::new(&deep).is_ok());
        for text in [
            "",
            " ",
            "not json",
            "{\"a\":1",
            "[1,]",
            "\"raw\ncontrol\"",
            "1 2",
        ] {
            assert!(
                matches!(RawJson::new(text), Err(ProtocolError::NotJson { .. })),
                "{text:?}"
            );
        }
        assert!(RawJson::from_bytes(b"\"\xff\"").is_err());
    }

    #[test]
    fn raw_json_puts_a_pretty_value_on_one_line() {
        let json = RawJson::new("{\n  \"a\": 1\n}\n").unwrap();
        assert_eq!(json.as_str(), "{   \"a\": 1 } ");
    }

    #[test]
    fn as_text_shows_strings_as_themselves() {
        assert_eq!(
            RawJson::new(r#""hi \"you\"""#).unwrap().as_text(),
            "hi \"you\""
        );
        assert_eq!(RawJson::new(r#""\ud800!""#).unwrap().as_text(), "\u{fffd}!");
        assert_eq!(RawJson::new(r#"{"a":1}"#).unwrap().as_text(), r#"{"a":1}"#);
    }

    #[test]
    fn same_place_maps_a_copy_slice_back() {
        let original = r#"{"s":"\ud800","d":"\udc00x"}"#;
        let copy = replace_lone_surrogates(original);
        let d = &copy[copy.find("\"d\":").unwrap() + 4..copy.len() - 1];
        assert_eq!(d, r#""\ufffdx""#);
        assert_eq!(same_place(original, &copy, d), r#""\udc00x""#);
    }
}
