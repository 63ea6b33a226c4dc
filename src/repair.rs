//! Repair of JSON text DuckDB cannot parse: unpaired UTF-16 surrogate escapes.
//!
//! Records keep `data` and `meta.changes` as the exact text serde_json's `RawValue` accepted, and
//! `RawValue` lets a lone surrogate escape such as `"\ud800"` through, in keys as well as values.
//! DuckDB's JSON functions reject such text and fail the whole column, so each unpaired `\uXXXX`
//! surrogate escape is replaced by `\ufffd` (U+FFFD, also 6 bytes). Every other byte is kept, so
//! key order, number spelling, other escapes and whitespace stay exactly as the source wrote them.

/// A repaired JSON text and the top-level object members it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    pub text: String,
    /// Names of the top-level members (decoded JSON strings, after repair) whose key or value
    /// held an unpaired surrogate, in order of first appearance, each once. Empty when the
    /// top-level value is not an object (an array such as `meta.changes`).
    pub fields: Vec<String>,
}

/// `None` when `json` has no unpaired surrogate escape (the common case; it must be fast: a quick
/// scan for a backslash followed by `u` and `d`/`D` before any real work).
pub fn unpaired_surrogates(json: &str) -> Option<Repaired> {
    if !may_hold_surrogate(json) {
        return None;
    }
    let scan = scan(json.as_bytes());
    if scan.repairs.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(json.len());
    let mut last = 0;
    for &at in &scan.repairs {
        // `at` is a backslash and `at + 6` follows four hex digits: both are char boundaries.
        text.push_str(&json[last..at]);
        text.push_str("\\ufffd");
        last = at + 6;
    }
    text.push_str(&json[last..]);
    let mut fields: Vec<String> = Vec::new();
    for (start, end) in scan.keys {
        // Offsets are the same in `text` (ASCII replaced by ASCII); a repaired key always decodes.
        let name = text.get(start..end).map(serde_json::from_str::<String>);
        if let Some(Ok(name)) = name {
            if !fields.contains(&name) {
                fields.push(name);
            }
        }
    }
    Some(Repaired { text, fields })
}

/// Every surrogate escape starts `\ud` or `\uD`. `str::find` on a char is memchr-fast, and JSON
/// text has few backslashes. False positives (`\\ud800`) only cost the full scan.
fn may_hold_surrogate(json: &str) -> bool {
    let mut rest = json;
    while let Some(at) = rest.find('\\') {
        let after = &rest.as_bytes()[at + 1..];
        if after.first() == Some(&b'u') && matches!(after.get(1), Some(b'd' | b'D')) {
            return true;
        }
        rest = &rest[at + 1..];
    }
    false
}

#[derive(Default)]
struct Scan {
    /// Byte offsets of the unpaired escapes, ascending.
    repairs: Vec<usize>,
    /// Byte ranges (quotes included) of the keys of top-level members that held a repair.
    keys: Vec<(usize, usize)>,
}

fn scan(b: &[u8]) -> Scan {
    let top_object = b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{');
    let mut out = Scan::default();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut expect_key = false;
    let mut reading_key = false;
    // The current top-level member: where its key opened, its range once closed, and whether
    // anything in its key or value was repaired.
    let mut key_start = 0;
    let mut key: Option<(usize, usize)> = None;
    let mut touched = false;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if in_string {
            match c {
                b'"' => {
                    in_string = false;
                    if reading_key {
                        reading_key = false;
                        key = Some((key_start, i + 1));
                    }
                }
                b'\\' => {
                    // Skip whole escapes so `\\ud800` (an escaped backslash) is never an escape.
                    match unit_at(b, i) {
                        Some(u) if is_high(u) && unit_at(b, i + 6).is_some_and(is_low) => i += 12,
                        Some(u) if is_high(u) || is_low(u) => {
                            out.repairs.push(i);
                            touched = true;
                            i += 6;
                        }
                        Some(_) => i += 6,
                        None => i += 2,
                    }
                    continue;
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => {
                    in_string = true;
                    reading_key = top_object && depth == 1 && expect_key;
                    if reading_key {
                        flush(&mut out.keys, key, touched);
                        key_start = i;
                        key = None;
                        touched = false;
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    expect_key = depth == 1;
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b',' if depth == 1 => expect_key = true,
                b':' if depth == 1 => expect_key = false,
                _ => {}
            }
        }
        i += 1;
    }
    flush(&mut out.keys, key, touched);
    out
}

/// Called once a top-level member is complete: when the next key opens, or at the end.
fn flush(keys: &mut Vec<(usize, usize)>, key: Option<(usize, usize)>, touched: bool) {
    if let (Some(key), true) = (key, touched) {
        keys.push(key);
    }
}

/// The code unit of a `\uXXXX` escape starting at `at`, if one does.
fn unit_at(b: &[u8], at: usize) -> Option<u32> {
    if b.get(at..at + 2)? != b"\\u" {
        return None;
    }
    let digits = b.get(at + 2..at + 6)?;
    digits
        .iter()
        .try_fold(0, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

fn is_high(unit: u32) -> bool {
    (0xD800..=0xDBFF).contains(&unit)
}

fn is_low(unit: u32) -> bool {
    (0xDC00..=0xDFFF).contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        // (input, repaired text or "" for `None`, fields); one case a line reads best.
        #[rustfmt::skip]
        let cases: &[(&str, &str, &[&str])] = &[
            (r#"{"a":"plain","b":1.50}"#, "", &[]),
            (r#"{"a":"x\ud800y", "b":1}"#, r#"{"a":"x\ufffdy", "b":1}"#, &["a"]),
            (r#"{"k\udc00": 1}"#, r#"{"k\ufffd": 1}"#, &["k\u{fffd}"]),
            (r#"{ "a":1, "b": {"c":["\ud800"]} }"#, r#"{ "a":1, "b": {"c":["\ufffd"]} }"#, &["b"]),
            (r#"{"a":{"d\udfff": 2}}"#, r#"{"a":{"d\ufffd": 2}}"#, &["a"]),
            (r#"{"a":"\ud83d\ude00","b":"\uD83D\uDE00"}"#, "", &[]),
            (r#"{"a":"\\ud800","b":"\\\\uDC00"}"#, "", &[]),
            (r#"{"a":"\uD83D"}"#, r#"{"a":"\ufffd"}"#, &["a"]),
            (r#"{"a":"\uDE00x"}"#, r#"{"a":"\ufffdx"}"#, &["a"]),
            (r#"{"a":"\ud800\ud800\udc00"}"#, r#"{"a":"\ufffd\ud800\udc00"}"#, &["a"]),
            (r#"{"a":"\\\ud83d"}"#, r#"{"a":"\\\ufffd"}"#, &["a"]),
            (r#"{"a":"x\ud83d","b":"y"}"#, r#"{"a":"x\ufffd","b":"y"}"#, &["a"]),
            (r#"{"a":"\ud800","a":["\udc00"]}"#, r#"{"a":"\ufffd","a":["\ufffd"]}"#, &["a"]),
            (r#"{"b":"\udc00","a":"\ud800"}"#, r#"{"b":"\ufffd","a":"\ufffd"}"#, &["b","a"]),
            (r#"{"b":1,"c\\":"\udbff\n"}"#, r#"{"b":1,"c\\":"\ufffd\n"}"#, &["c\\"]),
            (r#"[{"a":"\ud800"}]"#, r#"[{"a":"\ufffd"}]"#, &[]),
            (r#""\udc00""#, r#""\ufffd""#, &[]),
        ];
        for &(json, text, fields) in cases {
            match unpaired_surrogates(json) {
                None => assert!(text.is_empty(), "not repaired: {json}"),
                Some(r) => {
                    assert_eq!(r.text, text, "{json}");
                    assert_eq!(r.fields, fields, "{json}");
                }
            }
        }
    }

    fn piece() -> impl Strategy<Value = String> {
        let plain = vec![r"\\", r#"\""#, r"\n", r"\u00e9", "é😀", "ud800"];
        let surrogate = (0xD800u32..=0xDFFF, any::<bool>());
        prop_oneof![
            2 => "[a-z ]{1,3}",
            2 => prop::sample::select(plain).prop_map(String::from),
            3 => surrogate.prop_map(|(u, upper)| {
                let hex = format!("{u:04x}");
                format!("\\u{}", if upper { hex.to_uppercase() } else { hex })
            }),
        ]
    }

    fn string() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    fn object(value: BoxedStrategy<String>) -> impl Strategy<Value = String> {
        let member = (string(), value, " ?").prop_map(|(k, v, s)| format!("{k}{s}:{s}{v}"));
        prop::collection::vec(member, 0..5).prop_map(|m| format!("{{{}}}", m.join(",")))
    }

    fn leaf() -> impl Strategy<Value = String> {
        let scalar = prop::sample::select(vec!["-1.50e3", "null", "true"]);
        prop_oneof![string(), scalar.prop_map(String::from)]
    }

    fn document() -> impl Strategy<Value = String> {
        let array = prop::collection::vec(string(), 0..3);
        let array = array.prop_map(|s| format!("[{}]", s.join(",")));
        let value = prop_oneof![leaf(), array, object(leaf().boxed())];
        object(value.boxed())
    }

    proptest! {
        #[test]
        fn repairs_exactly_the_unpaired_escapes(json in document()) {
            prop_assert!(serde_json::from_str::<&serde_json::value::RawValue>(&json).is_ok());
            let parsed = serde_json::from_str::<serde_json::Value>(&json).is_ok();
            match unpaired_surrogates(&json) {
                None => prop_assert!(parsed, "unrepaired: {}", json),
                Some(r) => {
                    prop_assert!(!parsed, "repaired valid text: {}", json);
                    prop_assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_ok());
                    let (a, b) = (json.as_bytes(), r.text.as_bytes());
                    prop_assert_eq!(a.len(), b.len());
                    let mut i = 0;
                    while i < a.len() {
                        if b[i..].starts_with(br"\ufffd") && a[i..i + 6] != b[i..i + 6] {
                            let unit = unit_at(a, i);
                            prop_assert!(unit.is_some_and(|u| is_high(u) || is_low(u)));
                            i += 6;
                        } else {
                            prop_assert_eq!(a[i], b[i], "changed byte {} of {}", i, json);
                            i += 1;
                        }
                    }
                }
            }
        }

        #[test]
        fn never_panics(s in any::<String>(), t in r#"[\\u"{}\[\],:dDcC80fé ]{0,40}"#) {
            let _ = unpaired_surrogates(&s);
            let _ = unpaired_surrogates(&t);
        }
    }
}
