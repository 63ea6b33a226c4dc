//! The only code that writes to stdout.
//!
//! Every line written here is one compact JSON `AirbyteMessage`, and stdout is
//! flushed after each one: the platform (or a shell pipe) must see a STATE as
//! soon as it is released, and a crash must never leave half a line behind a
//! buffer. Logs do not come through here; they go to stderr.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::error::Failure;

/// Writes protocol messages to an output stream (stdout in the binary, a
/// buffer in unit tests).
pub struct Emitter<W: Write> {
    out: W,
}

impl<W: Write> Emitter<W> {
    pub fn new(out: W) -> Self {
        Emitter { out }
    }

    /// Writes one already-serialized message line and flushes.
    pub fn raw_line(&mut self, line: &str) -> io::Result<()> {
        debug_assert!(!line.contains('\n'), "a protocol message must be one line");
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    fn value(&mut self, value: &serde_json::Value) -> io::Result<()> {
        let line = serde_json::to_string(value).map_err(io::Error::other)?;
        self.raw_line(&line)
    }

    /// `{"type":"SPEC","spec":...}`; `spec` is the embedded `spec.json` text.
    pub fn spec(&mut self, spec: &serde_json::Value) -> io::Result<()> {
        self.value(&json!({"type": "SPEC", "spec": spec}))
    }

    pub fn connection_status(&mut self, result: Result<(), &str>) -> io::Result<()> {
        let status = match result {
            Ok(()) => json!({"status": "SUCCEEDED"}),
            Err(message) => json!({"status": "FAILED", "message": message}),
        };
        self.value(&json!({"type": "CONNECTION_STATUS", "connectionStatus": status}))
    }

    /// A TRACE of type ERROR: `message` for a person, `internal_message` with
    /// the full cause chain for whoever debugs it.
    pub fn trace_error(&mut self, failure: &Failure, internal_message: &str) -> io::Result<()> {
        self.value(&json!({
            "type": "TRACE",
            "trace": {
                "type": "ERROR",
                "emitted_at": now_millis(),
                "error": {
                    "message": failure.message,
                    "internal_message": internal_message,
                    "failure_type": failure.failure_type.as_protocol_str(),
                }
            }
        }))
    }

    /// A LOG message, shown in the Airbyte UI.
    pub fn log(&mut self, level: &str, message: &str) -> io::Result<()> {
        self.value(&json!({"type": "LOG", "log": {"level": level, "message": message}}))
    }
}

fn now_millis() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0)
}
