//! `spec`: prints the connector specification, embedded from `spec.json`.

use std::io::Write;

use anyhow::{Context, Result};

use crate::emit::Emitter;

/// The single source of the spec.
pub const SPEC_JSON: &str = include_str!("../../spec.json");

pub fn run<W: Write>(out: &mut Emitter<W>) -> Result<()> {
    let spec: serde_json::Value =
        serde_json::from_str(SPEC_JSON).context("the embedded spec.json is invalid")?;
    out.spec(&spec).context("writing the SPEC message")?;
    Ok(())
}
