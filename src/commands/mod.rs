//! The three Airbyte commands.

pub mod check;
pub mod spec;
pub mod write;
