//! The data path of `write`: stdin → [`reader`] (lines to events, on its own
//! thread) → [`sink`] (per-stream appenders, one transaction per batch) →
//! commit → [`checkpoint`] (states released in order) → stdout.

pub mod checkpoint;
pub mod progress;
pub mod reader;
pub mod repair;
pub mod sink;
pub mod tables;
