//! Input: stdin bytes to parsed events, on a thread of its own.
//!
//! The reader splits the input into lines, validates UTF-8, parses each line
//! (see `protocol`), resolves the stream against the catalog, and sends
//! [`Batch`]es to the writer over a bounded channel, so that parsing runs on
//! one core while DuckDB appends on another, and memory stays bounded.
//!
//! A batch is sent whenever the bytes already read are used up, before the
//! next read that may block: when the input pauses, everything received so
//! far is already with the writer, which can then commit and echo states.

use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::error::Failure;
use crate::protocol::{self, Message, StateScope};
use crate::repair;

/// Read buffer size.
pub const READ_BUFFER_BYTES: usize = 1 << 20;
/// A batch is handed over once its record bytes pass this size, even in the
/// middle of a read buffer.
pub const BATCH_HANDOFF_BYTES: usize = 4 << 20;
/// Lines longer than this are refused rather than buffered without end.
pub const MAX_LINE_BYTES: usize = 1 << 30;

/// What the reader sends to the writer.
pub enum ReaderMsg {
    Batch(Batch),
    /// Input is invalid; everything before `line` has been sent.
    Failed(Failure),
    /// End of input, after every batch; `source_failed`: a TRACE ERROR
    /// came in the input.
    Eof {
        source_failed: bool,
    },
}

/// Consecutive events, with record text stored contiguously in `bytes`
/// (validated UTF-8, so it stays a `String` all the way into DuckDB).
#[derive(Default)]
pub struct Batch {
    pub bytes: String,
    pub events: Vec<Event>,
}

pub enum Event {
    Record {
        stream: usize,
        emitted_at_micros: i64,
        line: u64,
        data: Range<usize>,
        changes: Option<Range<usize>>,
    },
    State {
        /// The received line, as text.
        line_text: String,
        /// Where the `state` object is in `line_text`.
        state: Range<usize>,
        scope: Scope,
    },
    StreamStatus {
        stream: usize,
        complete: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A STREAM state for a catalog stream.
    Stream(usize),
    /// A STREAM state for a stream outside the catalog (echoed with 0).
    OtherStream,
    /// GLOBAL or LEGACY.
    Global,
}

/// Reads `input` to its end, sending batches to `tx`. Returns when the input
/// ends, is invalid, or the writer has gone away.
pub fn run(input: impl Read, catalog: Arc<Catalog>, tx: SyncSender<ReaderMsg>) {
    let mut reader = Reader {
        catalog,
        batch: Batch::default(),
        line_no: 0,
        source_failed: false,
    };
    let outcome = reader.read_all(input, &tx);
    let last = match outcome {
        Ok(()) => {
            if reader.send(&tx).is_err() {
                return;
            }
            ReaderMsg::Eof {
                source_failed: reader.source_failed,
            }
        }
        Err(failure) => {
            // Events before the bad line still go out, in order.
            if reader.send(&tx).is_err() {
                return;
            }
            ReaderMsg::Failed(failure)
        }
    };
    let _ = tx.send(last);
}

struct Reader {
    catalog: Arc<Catalog>,
    batch: Batch,
    line_no: u64,
    source_failed: bool,
}

struct Disconnected;

impl Reader {
    fn send(&mut self, tx: &SyncSender<ReaderMsg>) -> Result<(), Disconnected> {
        if self.batch.events.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        tx.send(ReaderMsg::Batch(batch)).map_err(|_| Disconnected)
    }

    fn read_all(&mut self, input: impl Read, tx: &SyncSender<ReaderMsg>) -> Result<(), Failure> {
        let mut input = BufReader::with_capacity(READ_BUFFER_BYTES, input);
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let buf = match input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Failure::system(format!(
                        "reading standard input failed: {e}"
                    )))
                }
            };
            if buf.is_empty() {
                if !carry.is_empty() {
                    // A last line without a newline is still a line.
                    let line = std::mem::take(&mut carry);
                    self.line(&line)?;
                }
                return Ok(());
            }
            let len = buf.len();
            let mut start = 0;
            while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
                let end = start + pos;
                if carry.is_empty() {
                    self.line(&buf[start..end])?;
                } else {
                    carry.extend_from_slice(&buf[start..end]);
                    let line = std::mem::take(&mut carry);
                    self.line(&line)?;
                }
                start = end + 1;
                if self.batch.bytes.len() >= BATCH_HANDOFF_BYTES && self.send(tx).is_err() {
                    return Ok(());
                }
            }
            carry.extend_from_slice(&buf[start..]);
            if carry.len() > MAX_LINE_BYTES {
                return Err(Failure::config(format!(
                    "line {} is longer than {} MiB",
                    self.line_no + 1,
                    MAX_LINE_BYTES >> 20
                )));
            }
            input.consume(len);
            if self.send(tx).is_err() {
                return Ok(());
            }
        }
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), Failure> {
        self.line_no += 1;
        let n = self.line_no;
        let mut raw = raw;
        if n == 1 {
            raw = raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw);
        }
        // Whitespace around the JSON value (a `\r`, indentation) is not
        // part of the message: a STATE echo is then compact.
        let raw = raw.trim_ascii();
        if raw.is_empty() {
            return Ok(());
        }
        let text = std::str::from_utf8(raw).map_err(|e| {
            Failure::config(format!(
                "line {n} is not valid UTF-8 (at byte {})",
                e.valid_up_to() + 1
            ))
        })?;
        let message =
            protocol::parse_line(text).map_err(|e| Failure::config(format!("line {n}: {e}")))?;
        match message {
            Message::Record(r) => {
                let Some(stream) = self
                    .catalog
                    .find(r.descriptor.namespace(), &r.descriptor.name)
                else {
                    return Err(Failure::config(format!(
                        "line {n}: a RECORD for stream {} which is not in the configured catalog",
                        describe_stream(r.descriptor.namespace(), &r.descriptor.name)
                    )));
                };
                let (data, changes) = push_record(&mut self.batch.bytes, r.data, r.changes);
                self.batch.events.push(Event::Record {
                    stream,
                    emitted_at_micros: r.emitted_at_micros,
                    line: n,
                    data,
                    changes,
                });
            }
            Message::State(s) => {
                let scope = match &s.scope {
                    StateScope::Global => Scope::Global,
                    StateScope::Stream(d) => match self.catalog.find(d.namespace(), &d.name) {
                        Some(i) => Scope::Stream(i),
                        None => Scope::OtherStream,
                    },
                };
                let offset = s.raw.as_ptr() as usize - text.as_ptr() as usize;
                self.batch.events.push(Event::State {
                    line_text: text.to_string(),
                    state: offset..offset + s.raw.len(),
                    scope,
                });
            }
            Message::StreamStatus { descriptor, status } => {
                match self.catalog.find(descriptor.namespace(), &descriptor.name) {
                    Some(stream) => self.batch.events.push(Event::StreamStatus {
                        stream,
                        complete: status == "COMPLETE",
                    }),
                    None => tracing::debug!(
                        line = n,
                        "stream status for a stream outside the catalog ignored"
                    ),
                }
            }
            Message::SourceError => {
                tracing::warn!(line = n, "the source reported an error (TRACE ERROR)");
                self.source_failed = true;
            }
            Message::Ignored { kind } => tracing::debug!(line = n, kind = %kind, "message ignored"),
        }
        Ok(())
    }
}

fn push(bytes: &mut String, s: &str) -> Range<usize> {
    let start = bytes.len();
    bytes.push_str(s);
    start..bytes.len()
}

/// The one exception to storing a record's text as it arrived: an unpaired
/// surrogate escape (`"\ud800"`, half an emoji), which serde_json accepts
/// but DuckDB's JSON functions cannot read, in any row of a table, once it
/// is stored. Each becomes `\ufffd`, and `meta.changes` records which
/// top-level field was altered. Returns where `data` and `changes` are.
fn push_record(
    bytes: &mut String,
    data: &str,
    changes: Option<&str>,
) -> (Range<usize>, Option<Range<usize>>) {
    let fixed_data = repair::unpaired_surrogates(data);
    let fixed_changes = changes.and_then(repair::unpaired_surrogates);
    if fixed_data.is_none() && fixed_changes.is_none() {
        let data = push(bytes, data);
        return (data, changes.map(|c| push(bytes, c)));
    }
    let mut fields: Vec<String> = Vec::new();
    let data = match fixed_data {
        Some(fixed) => {
            fields = fixed.fields;
            push(bytes, &fixed.text)
        }
        None => push(bytes, data),
    };
    if fixed_changes.is_some() {
        fields.push("_airbyte_meta.changes".to_string());
    }
    let earlier = fixed_changes
        .map(|f| f.text)
        .or(changes.map(str::to_string));
    // The members of the earlier array (a JSON array's text: brackets
    // stripped), then one change per altered field.
    let mut members: Vec<String> = earlier
        .as_deref()
        .map(|e| e.trim())
        .and_then(|e| e.strip_prefix('[')?.strip_suffix(']'))
        .map(str::trim)
        .filter(|inner| !inner.is_empty())
        .map(str::to_string)
        .into_iter()
        .collect();
    members.extend(fields.iter().map(|field| {
        format!(
            r#"{{"field":{},"change":"TRUNCATED","reason":"DESTINATION_SERIALIZATION_ERROR"}}"#,
            serde_json::Value::from(field.as_str())
        )
    }));
    let changes = push(bytes, &format!("[{}]", members.join(",")));
    (data, Some(changes))
}

fn describe_stream(namespace: &str, name: &str) -> String {
    let shown = |s: &str| -> String {
        let s: String = s.chars().take(200).collect();
        format!("{s:?}")
    };
    if namespace.is_empty() {
        shown(name)
    } else {
        format!("{} in namespace {}", shown(name), shown(namespace))
    }
}
