//! The data path of `write`: stdin → [`reader`] (lines to events, on its own
//! thread) → [`sync`] (holds records until a state covers them, commits when
//! the [`policy`] says so) → [`sink`] (per-stream appenders, one transaction
//! per commit) → [`checkpoint`] (states released in order) → stdout. The
//! sink hands each record and each commit to the sync's
//! [`typed_output`], which writes typed rows through [`typed_writer`] (on a
//! thread and session of their own) or prepares views beside the records.
//! Both appending sides bound their appenders' buffers with [`unflushed`].

pub mod checkpoint;
pub mod policy;
pub mod progress;
pub mod reader;
pub mod sink;
pub mod sync;
pub mod tables;
pub mod typed_output;
pub mod typed_writer;
pub mod unflushed;
