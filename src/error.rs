//! Error kinds that cross module boundaries, and the one place that decides
//! which Airbyte `failure_type` each maps to.
//!
//! Code deep in the pipeline wraps what went wrong in an [`anyhow::Error`]
//! with context naming the object involved. Where the cause is known to be
//! the user's (bad config, bad input) or retryable (a lock), it attaches a
//! [`Failure`] so that the top level can classify it without string matching.

use std::fmt;

use crate::duck::{names_storage_full, DuckError};

/// Airbyte's `failure_type` of a TRACE ERROR message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureType {
    /// The user fixes it in config, catalog, input or environment.
    Config,
    /// A bug or an unexpected environment problem.
    System,
    /// Retrying later may succeed (for example a lock held by another process).
    Transient,
}

impl FailureType {
    pub fn as_protocol_str(self) -> &'static str {
        match self {
            FailureType::Config => "config_error",
            FailureType::System => "system_error",
            FailureType::Transient => "transient_error",
        }
    }
}

/// A classified failure with a message meant for a person.
///
/// The message must never contain record contents or secrets: it is shown in
/// the Airbyte UI and kept in logs.
#[derive(Debug, Clone)]
pub struct Failure {
    pub failure_type: FailureType,
    pub message: String,
}

impl Failure {
    pub fn config(message: impl Into<String>) -> Self {
        Failure {
            failure_type: FailureType::Config,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Failure {
            failure_type: FailureType::Transient,
            message: message.into(),
        }
    }

    pub fn system(message: impl Into<String>) -> Self {
        Failure {
            failure_type: FailureType::System,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The database a command writes, attached as context to its errors, so
/// that [`classify`] can say in the user's terms when a write failed for its
/// storage: a full disk, or a place the process may not write.
#[derive(Debug, Clone)]
pub struct Storage {
    /// What to call the database (a path or an `md:` URL).
    pub label: String,
    /// What to tell the user when it cannot be written (whose permission
    /// is missing, and how to grant it).
    pub unwritable: String,
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing the database `{}`", self.label)
    }
}

impl std::error::Error for Storage {}

/// Decides the failure of an error chain: the outermost [`Failure`] in it;
/// else, for an error while writing a database ([`Storage`] in the chain),
/// a full disk or a permission DuckDB was refused is the user's to fix
/// (`config_error`); anything else is a `system_error` described by the
/// whole chain.
///
/// ```
/// use anyhow::Context;
/// use destination_duckdb::error::{classify, Failure, FailureType};
/// let e = Err::<(), _>(std::io::Error::other("disk"))
///     .context(Failure::transient("the file is locked"))
///     .context("opening")
///     .unwrap_err();
/// assert_eq!(classify(&e).failure_type, FailureType::Transient);
/// ```
pub fn classify(err: &anyhow::Error) -> Failure {
    // anyhow finds a `Failure` attached with `.context(..)` (possibly under
    // further contexts) this way; one that is itself an error in the chain,
    // by walking the chain.
    if let Some(failure) = err.downcast_ref::<Failure>() {
        return failure.clone();
    }
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.clone();
        }
    }
    if let Some(storage) = find::<Storage>(err) {
        if names_storage_full(&format!("{err:#}")) {
            return Failure::config(format!(
                "the disk holding `{}` is full, or a file-size limit was reached, while writing; \
                 free space and retry (everything up to the last echoed state is saved)",
                storage.label
            ));
        }
        if find::<DuckError>(err).is_some_and(DuckError::is_permission_denied) {
            return Failure::config(storage.unwritable.clone());
        }
    }
    Failure::system(format!("{err:#}"))
}

/// The first `T` in an error chain, attached as context or as a cause.
fn find<T: std::error::Error + Send + Sync + 'static>(err: &anyhow::Error) -> Option<&T> {
    err.downcast_ref::<T>()
        .or_else(|| err.chain().find_map(|c| c.downcast_ref::<T>()))
}
