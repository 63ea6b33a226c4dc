//! The Airbyte wire format as this destination reads and writes it, in one
//! place.
//!
//! Input is one JSON `AirbyteMessage` per line. We read:
//!
//! * `RECORD`: `{"type":"RECORD","record":{"stream":S,"namespace":N?,
//!   "emitted_at":MILLIS,"data":{...},"meta":{"changes":[...]}?}}`. `data` is
//!   kept as the exact text that arrived (numbers, key order and escapes
//!   untouched); `meta.changes` is passed through as text.
//! * `STATE`: `{"type":"STATE","state":{"type":"STREAM"|"GLOBAL"|"LEGACY"?,
//!   "stream":{"stream_descriptor":{"name":..,"namespace":..}},...}}`. A state
//!   without `type` is LEGACY. The whole line is echoed back unchanged except
//!   for `state.destinationStats`, which is set to `{"recordCount":N.0}`.
//! * `TRACE` of type `STREAM_STATUS`: `{"stream_status":{"stream_descriptor":
//!   {...},"status":"COMPLETE"|...}}` marks a stream as finished.
//! * `TRACE` of type `ERROR`: the source failed; a truncating stream that
//!   never reported a status is then not swapped in at EOF.
//! * Everything else (`LOG`, other `TRACE`s, `CONTROL`, unknown types) is
//!   ignored.
//!
//! Output messages are built in `emit`. Error messages produced here name the
//! problem and a column, never a value from the line: record contents may be
//! private.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One parsed input line, borrowing from the line's text.
#[derive(Debug)]
pub enum Message<'a> {
    Record(Record<'a>),
    State(State<'a>),
    StreamStatus {
        descriptor: Descriptor<'a>,
        status: Cow<'a, str>,
    },
    /// A TRACE of type ERROR: the source reports a failure.
    SourceError,
    /// LOG, CONTROL, TRACE other than STREAM_STATUS, unknown types.
    Ignored {
        kind: Cow<'a, str>,
    },
}

#[derive(Debug)]
pub struct Record<'a> {
    pub descriptor: Descriptor<'a>,
    /// `emitted_at` in microseconds, within what a DuckDB timestamp holds.
    pub emitted_at_micros: i64,
    /// The exact text of `record.data`, always a JSON object.
    pub data: &'a str,
    /// The exact text of `record.meta.changes`, when it is a non-empty array.
    pub changes: Option<&'a str>,
}

/// A stream's (namespace, name). Null and empty namespaces are the same.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
}

impl Descriptor<'_> {
    /// The namespace with `None` and `""` folded together.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

#[derive(Debug)]
pub struct State<'a> {
    pub scope: StateScope<'a>,
    /// The `state` object's text; a sub-slice of the line.
    pub raw: &'a str,
}

#[derive(Debug)]
pub enum StateScope<'a> {
    Stream(Descriptor<'a>),
    /// GLOBAL and LEGACY states cover every stream.
    Global,
}

/// Why a line was refused. The text is safe to show: it never quotes input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError(pub String);

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, LineError> {
    Err(LineError(message.into()))
}

/// Describes a serde_json error by category and column only: serde's own text
/// can quote the offending value.
fn describe(e: &serde_json::Error, what: &str) -> LineError {
    use serde_json::error::Category;
    let problem = match e.classify() {
        Category::Eof => "is truncated (the JSON ends early)",
        Category::Syntax => "is not valid JSON",
        Category::Data => "does not have the shape of an Airbyte message",
        Category::Io => "could not be read",
    };
    LineError(format!("{what} {problem} (at column {})", e.column()))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    record: Option<RawRecord<'a>>,
    #[serde(default, borrow)]
    state: Option<&'a RawValue>,
    #[serde(default, borrow)]
    trace: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(default, borrow)]
    stream: Option<&'a RawValue>,
    #[serde(default, borrow)]
    namespace: Option<&'a RawValue>,
    #[serde(default, borrow)]
    emitted_at: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(default, borrow)]
    changes: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StateHead<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stream: Option<StreamStateHead<'a>>,
}

#[derive(Deserialize)]
struct StreamStateHead<'a> {
    #[serde(default, borrow)]
    stream_descriptor: Option<Descriptor<'a>>,
}

#[derive(Deserialize)]
struct TraceHead<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stream_status: Option<StreamStatusHead<'a>>,
}

#[derive(Deserialize)]
struct StreamStatusHead<'a> {
    #[serde(borrow)]
    stream_descriptor: Descriptor<'a>,
    #[serde(borrow)]
    status: Cow<'a, str>,
}

fn string_field<'a>(
    raw: Option<&'a RawValue>,
    what: &str,
) -> Result<Option<Cow<'a, str>>, LineError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => match serde_json::from_str::<Cow<'a, str>>(raw.get()) {
            Ok(s) => Ok(Some(s)),
            Err(_) => err(format!("{what} must be a string")),
        },
    }
}

/// Parses `emitted_at`, an integer of epoch milliseconds, into
/// microseconds. An integral float (`1.6e12`) is accepted because some
/// sources write them. DuckDB's timestamps end well short of `i64` (its
/// largest values mean infinity), hence the bound.
fn parse_emitted_at(raw: &str) -> Result<i64, LineError> {
    let ms = match raw.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => match raw.parse::<f64>() {
            Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 => f as i64,
            _ => return err("RECORD `emitted_at` must be an integer number of epoch milliseconds"),
        },
    };
    match ms.checked_mul(1000) {
        Some(micros) if micros.unsigned_abs() < (i64::MAX / 2) as u64 => Ok(micros),
        _ => err("RECORD `emitted_at` is out of the range of a timestamp"),
    }
}

/// Parses one non-blank line.
pub fn parse_line(line: &str) -> Result<Message<'_>, LineError> {
    let env: Envelope<'_> = serde_json::from_str(line).map_err(|e| describe(&e, "the line"))?;
    let kind = match env.kind {
        None => return err("the message has no `type`"),
        Some(raw) => match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
            Ok(kind) => kind,
            Err(_) => return err("the message `type` must be a string"),
        },
    };
    match kind.as_ref() {
        "RECORD" => parse_record(env.record).map(Message::Record),
        "STATE" => match env.state {
            Some(raw) => parse_state(raw).map(Message::State),
            None => err("a STATE message has no `state` object"),
        },
        "TRACE" => Ok(parse_trace(env.trace).unwrap_or(Message::Ignored { kind })),
        _ => Ok(Message::Ignored { kind }),
    }
}

fn parse_record(raw: Option<RawRecord<'_>>) -> Result<Record<'_>, LineError> {
    let Some(raw) = raw else {
        return err("a RECORD message has no `record` object");
    };
    let Some(stream) = string_field(raw.stream, "RECORD `stream`")? else {
        return err("a RECORD has no `stream`");
    };
    let namespace = string_field(raw.namespace, "RECORD `namespace`")?;
    let emitted_at_micros = match raw.emitted_at {
        Some(v) if v.get() != "null" => parse_emitted_at(v.get())?,
        _ => return err("a RECORD has no `emitted_at`"),
    };
    let data = match raw.data {
        Some(v) if v.get().starts_with('{') => v.get(),
        Some(v) if v.get() != "null" => return err("RECORD `data` must be a JSON object"),
        _ => return err("a RECORD has no `data` object"),
    };
    let changes = match raw.meta {
        Some(meta) if meta.get().starts_with('{') => {
            let meta: RawMeta<'_> =
                serde_json::from_str(meta.get()).map_err(|e| describe(&e, "RECORD `meta`"))?;
            match meta.changes {
                Some(c) if c.get().starts_with('[') => (c.get() != "[]").then_some(c.get()),
                Some(c) if c.get() != "null" => {
                    return err("RECORD `meta.changes` must be an array")
                }
                _ => None,
            }
        }
        Some(meta) if meta.get() != "null" => return err("RECORD `meta` must be an object"),
        _ => None,
    };
    Ok(Record {
        descriptor: Descriptor {
            name: stream,
            namespace,
        },
        emitted_at_micros,
        data,
        changes,
    })
}

fn parse_state(raw: &RawValue) -> Result<State<'_>, LineError> {
    if !raw.get().starts_with('{') {
        return err("STATE `state` must be an object");
    }
    let head: StateHead<'_> =
        serde_json::from_str(raw.get()).map_err(|e| describe(&e, "the STATE"))?;
    let scope = match head.kind.as_deref() {
        Some("STREAM") => match head.stream.and_then(|s| s.stream_descriptor) {
            Some(descriptor) => StateScope::Stream(descriptor),
            None => return err("a STREAM state has no `stream.stream_descriptor`"),
        },
        None | Some("GLOBAL") | Some("LEGACY") => StateScope::Global,
        Some(_) => return err("STATE `type` must be STREAM, GLOBAL or LEGACY"),
    };
    Ok(State {
        scope,
        raw: raw.get(),
    })
}

/// A TRACE is only interesting when it is an ERROR or a well-formed
/// STREAM_STATUS.
fn parse_trace(raw: Option<&RawValue>) -> Option<Message<'_>> {
    let head: TraceHead<'_> = serde_json::from_str(raw?.get()).ok()?;
    match head.kind.as_deref() {
        Some("ERROR") => return Some(Message::SourceError),
        Some("STREAM_STATUS") => {}
        _ => return None,
    }
    let status = head.stream_status?;
    Some(Message::StreamStatus {
        descriptor: status.stream_descriptor,
        status: status.status,
    })
}

/// Renders the echo of a STATE line: the line exactly as received, with
/// `state.destinationStats` replaced (or appended as the last member of the
/// state object) by `{"recordCount":<count>.0}`. A state that holds the key
/// more than once keeps only the last (the one JSON parsers read), replaced:
/// no stale count survives.
///
/// `state_raw` must be the `raw` of a [`State`] parsed from `line`.
pub fn state_echo(line: &str, state_raw: &str, record_count: u64) -> String {
    let start = state_raw.as_ptr() as usize - line.as_ptr() as usize;
    assert!(
        start + state_raw.len() <= line.len(),
        "state text is not part of the line"
    );
    let stats = format!("{{\"recordCount\":{record_count}.0}}");
    let (members, close) = object_members(state_raw);
    let mut out = String::with_capacity(line.len() + stats.len() + 24);
    out.push_str(&line[..start]);
    let stats_at: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].key == "destinationStats")
        .collect();
    match stats_at.split_last() {
        Some((&last, earlier)) => {
            // Each earlier copy goes with everything up to the next
            // member's key (its comma and spacing); one always follows.
            let mut from = 0;
            for &i in earlier {
                out.push_str(&state_raw[from..members[i].key_start]);
                from = members[i + 1].key_start;
            }
            let m = &members[last];
            out.push_str(&state_raw[from..m.value.start]);
            out.push_str(&stats);
            out.push_str(&state_raw[m.value.end..]);
        }
        None => {
            out.push_str(&state_raw[..close]);
            if !members.is_empty() {
                out.push(',');
            }
            out.push_str("\"destinationStats\":");
            out.push_str(&stats);
            out.push_str(&state_raw[close..]);
        }
    }
    out.push_str(&line[start + state_raw.len()..]);
    out
}

struct Member {
    key: String,
    /// Where the key's opening quote is.
    key_start: usize,
    value: Range<usize>,
}

/// Lists the members of a JSON object text that is already known to be
/// valid, with the byte range of each value, and the offset of the closing
/// brace.
fn object_members(text: &str) -> (Vec<Member>, usize) {
    let b = text.as_bytes();
    let mut members = Vec::new();
    let mut i = skip_ws(b, 0);
    debug_assert_eq!(b.get(i), Some(&b'{'));
    i = skip_ws(b, i + 1);
    loop {
        match b.get(i) {
            Some(b'}') | None => return (members, i),
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'"') => {
                let i_key = i;
                let key_end = scan_string(b, i);
                let key = serde_json::from_str::<String>(&text[i..key_end]).unwrap_or_default();
                i = skip_ws(b, key_end);
                debug_assert_eq!(b.get(i), Some(&b':'));
                let value_start = skip_ws(b, i + 1);
                let value_end = scan_value(b, value_start);
                members.push(Member {
                    key,
                    key_start: i_key,
                    value: value_start..value_end,
                });
                i = skip_ws(b, value_end);
            }
            Some(_) => i += 1,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// `i` is at an opening quote; returns the offset after the closing quote.
fn scan_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn scan_value(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => scan_string(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = scan_string(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            j
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(line: &str, count: u64) -> String {
        match parse_line(line).unwrap() {
            Message::State(s) => state_echo(line, s.raw, count),
            other => panic!("not a state: {other:?}"),
        }
    }

    #[test]
    fn echo_appends_stats_and_keeps_everything_else() {
        let line = r#"{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"n":1.50e3}},"id":7},"x":[1]}"#;
        assert_eq!(
            echo(line, 3),
            r#"{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"n":1.50e3}},"id":7,"destinationStats":{"recordCount":3.0}},"x":[1]}"#
        );
    }

    #[test]
    fn echo_replaces_existing_stats_in_place() {
        let line = r#"{"type": "STATE", "state": {"destinationStats": {"recordCount": 99}, "data": {"a": "}\"{"}}}"#;
        assert_eq!(
            echo(line, 0),
            r#"{"type": "STATE", "state": {"destinationStats": {"recordCount":0.0}, "data": {"a": "}\"{"}}}"#
        );
    }

    #[test]
    fn echo_keeps_one_stats_key_when_the_state_had_several() {
        let line = r#"{"type":"STATE","state":{"destinationStats":{"recordCount":1},"a":1, "destinationStats" : {"recordCount":2},"b":2,"destinationStats":{"recordCount":3}}}"#;
        assert_eq!(
            echo(line, 7),
            r#"{"type":"STATE","state":{"a":1, "b":2,"destinationStats":{"recordCount":7.0}}}"#
        );
    }

    #[test]
    fn echo_of_empty_state_object() {
        assert_eq!(
            echo(r#"{"state":{ },"type":"STATE"}"#, 1),
            r#"{"state":{ "destinationStats":{"recordCount":1.0}},"type":"STATE"}"#
        );
    }

    #[test]
    fn record_errors_never_quote_values() {
        let cases = [
            r#"{"type":"RECORD","record":{"stream":"s","emitted_at":"secret-1","data":{}}}"#,
            r#"{"type":"RECORD","record":{"stream":"s","emitted_at":1,"data":"secret-2"}}"#,
            r#"{"type":"RECORD","record":{"stream":"s","emitted_at":1,"data":{"k":"secret-3"}"#,
            r#"{"type":"RECORD","record":"secret-4"}"#,
        ];
        for line in cases {
            let e = parse_line(line).unwrap_err();
            assert!(!e.0.contains("secret"), "{line} -> {e}");
        }
    }

    #[test]
    fn record_fields() {
        let line = r#"{"type":"RECORD","record":{"namespace":null,"stream":"s","emitted_at":1.5e3,"data":{"a":1e400},"meta":{"changes":[{"field":"a"}]}}}"#;
        let Message::Record(r) = parse_line(line).unwrap() else {
            panic!()
        };
        assert_eq!(r.descriptor.namespace(), "");
        assert_eq!(r.emitted_at_micros, 1_500_000);
        assert_eq!(r.data, r#"{"a":1e400}"#);
        assert_eq!(r.changes, Some(r#"[{"field":"a"}]"#));
    }
}
