//! The configured catalog: which streams this sync writes, how (append or
//! truncate), with which generation, and into which tables.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::Failure;
use crate::internal::{self, RAW_PREFIX};
use crate::names;

/// How a stream's rows meet the rows already in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Rows are added (`append`, `append_dedup`, or a refresh that keeps
    /// earlier generations).
    Append,
    /// The table's contents are replaced when the stream completes
    /// (`overwrite`, or `minimum_generation_id == generation_id > 0`).
    Truncate,
}

/// One configured stream, resolved to its tables.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The namespace as configured; `""` when null or empty.
    pub namespace: String,
    pub name: String,
    pub mode: WriteMode,
    pub generation_id: Option<i64>,
    pub sync_id: Option<i64>,
    /// The DuckDB schema (normalized, unquoted).
    pub schema: String,
    /// The normalized stream name: the raw table is `_airbyte_raw_<base>`
    /// unless that collides with another stream's table (see `tables`).
    pub base: String,
    /// The raw table (unquoted): the plain name at parse time, resolved by
    /// `tables::assign` once, before `write` shares the catalog, so that
    /// there is one copy of every stream's names.
    pub table: String,
    /// The staging table used while truncating; assigned with `table`.
    pub staging_table: String,
    /// `append_dedup`: the typed relation keeps one row per primary key.
    pub dedup: bool,
    /// Primary key paths (configured, else source-defined); each a path of
    /// property names into the record.
    pub primary_key: Vec<Vec<String>>,
    /// Cursor path (configured, else the source's default); empty for none.
    pub cursor_field: Vec<String>,
    /// The stream's JSON schema (`Null` when the catalog gives none).
    pub json_schema: serde_json::Value,
}

impl Stream {
    /// `namespace.name` (or `name`) for messages.
    pub fn label(&self) -> String {
        label(&self.namespace, &self.name)
    }
}

/// The configured catalog with a lookup from (namespace, name) to stream.
#[derive(Debug)]
pub struct Catalog {
    pub streams: Vec<Stream>,
    index: HashMap<String, HashMap<String, usize>>,
}

#[derive(Deserialize)]
struct RawCatalog {
    streams: Vec<RawConfiguredStream>,
}

#[derive(Deserialize)]
struct RawConfiguredStream {
    stream: RawStream,
    destination_sync_mode: Option<String>,
    #[serde(default)]
    primary_key: Option<Vec<Vec<String>>>,
    #[serde(default)]
    cursor_field: Option<Vec<String>>,
    generation_id: Option<i64>,
    minimum_generation_id: Option<i64>,
    sync_id: Option<i64>,
}

#[derive(Deserialize)]
struct RawStream {
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    json_schema: serde_json::Value,
    #[serde(default)]
    source_defined_primary_key: Option<Vec<Vec<String>>>,
    #[serde(default)]
    default_cursor_field: Option<Vec<String>>,
}

impl Catalog {
    pub fn load(path: &Path, default_schema: &str) -> Result<Catalog> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::config(format!(
                "cannot read the catalog file `{}`: {e}",
                path.display()
            ))
        })?;
        Catalog::parse(&text, default_schema)
            .with_context(|| format!("in the catalog file `{}`", path.display()))
    }

    pub fn parse(text: &str, default_schema: &str) -> Result<Catalog> {
        // A lone surrogate escape (in a description, say) is valid to the
        // platform's parser but not to serde_json's: it becomes U+FFFD.
        let repaired = crate::repair::unpaired_surrogates(text);
        let text = repaired.as_ref().map_or(text, |r| r.text.as_str());
        let raw: RawCatalog = serde_json::from_str(text).map_err(|e| {
            Failure::config(format!(
                "the catalog is not a configured catalog (`{{\"streams\": [{{\"stream\": {{\"name\": ...}}, \
                 \"destination_sync_mode\": ...}}]}}`): {e}"
            ))
        })?;
        let mut streams = Vec::with_capacity(raw.streams.len());
        let mut index: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for configured in raw.streams {
            let stream = resolve(configured, default_schema)?;
            let slot = index.entry(stream.namespace.clone()).or_default();
            if slot.insert(stream.name.clone(), streams.len()).is_some() {
                return Err(Failure::config(format!(
                    "the catalog lists stream {} twice",
                    stream.label()
                ))
                .into());
            }
            streams.push(stream);
        }
        Ok(Catalog { streams, index })
    }

    /// The stream a record or state names; null and empty namespace match.
    pub fn find(&self, namespace: &str, name: &str) -> Option<usize> {
        self.index.get(namespace)?.get(name).copied()
    }
}

/// `namespace.name` (or `name`) in backticks, for messages.
fn label(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("`{name}`")
    } else {
        format!("`{namespace}.{name}`")
    }
}

fn resolve(c: RawConfiguredStream, default_schema: &str) -> Result<Stream, Failure> {
    let namespace = c.stream.namespace.unwrap_or_default();
    let name = c.stream.name;
    let label = label(&namespace, &name);
    let generation = c.generation_id;
    let min_generation = c.minimum_generation_id.unwrap_or(0);
    let refresh_truncates = match generation {
        _ if min_generation == 0 => false,
        Some(g) if g == min_generation => true,
        _ => {
            return Err(Failure::config(format!(
                "stream {label}: minimum_generation_id {min_generation} is neither 0 nor the generation_id {}; \
                 this destination supports append (0) and truncate (equal) refreshes only",
                generation.map_or("(absent)".to_string(), |g| g.to_string())
            )))
        }
    };
    let mode = match c.destination_sync_mode.as_deref() {
        Some("overwrite") => WriteMode::Truncate,
        Some("append") | Some("append_dedup") if refresh_truncates => WriteMode::Truncate,
        Some("append") | Some("append_dedup") => WriteMode::Append,
        Some(other) => {
            return Err(Failure::config(format!(
                "stream {label}: destination_sync_mode `{other}` is not supported (use append, append_dedup or overwrite)"
            )))
        }
        None => return Err(Failure::config(format!("stream {label} has no destination_sync_mode"))),
    };
    let schema = if namespace.is_empty() {
        default_schema.to_string()
    } else {
        names::normalize_schema(&namespace)
    };
    let dedup = c.destination_sync_mode.as_deref() == Some("append_dedup");
    let primary_key: Vec<Vec<String>> = c
        .primary_key
        .filter(|k| !k.is_empty())
        .or(c.stream.source_defined_primary_key)
        .unwrap_or_default()
        .into_iter()
        .filter(|path| !path.is_empty())
        .collect();
    if dedup && primary_key.is_empty() {
        return Err(Failure::config(format!(
            "stream {label}: append_dedup needs a primary key (`primary_key` in the configured stream)"
        )));
    }
    let cursor_field = c
        .cursor_field
        .filter(|k| !k.is_empty())
        .or(c.stream.default_cursor_field)
        .unwrap_or_default();
    let base = names::normalize(&name);
    let table = format!("{RAW_PREFIX}{base}");
    Ok(Stream {
        staging_table: internal::staging_of(&table),
        table,
        base,
        schema,
        namespace,
        name,
        mode,
        generation_id: generation,
        sync_id: c.sync_id,
        dedup,
        primary_key,
        cursor_field,
        json_schema: c.stream.json_schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(extra: &str) -> String {
        format!(
            r#"{{"streams":[{{"stream":{{"name":"s"}},"destination_sync_mode":"append"{extra}}}]}}"#
        )
    }

    #[test]
    fn modes_and_generations() {
        let c = Catalog::parse(&stream(""), "main").unwrap();
        assert_eq!(c.streams[0].mode, WriteMode::Append);
        let c = Catalog::parse(
            &stream(r#","generation_id":3,"minimum_generation_id":3"#),
            "main",
        )
        .unwrap();
        assert_eq!(c.streams[0].mode, WriteMode::Truncate);
        let e = Catalog::parse(
            &stream(r#","generation_id":3,"minimum_generation_id":2"#),
            "main",
        )
        .unwrap_err();
        assert!(crate::error::classify(&e)
            .message
            .contains("minimum_generation_id"));
    }

    #[test]
    fn lookup_folds_null_and_empty_namespace() {
        let text = r#"{"streams":[{"stream":{"name":"a","namespace":""},"destination_sync_mode":"append"},
                                  {"stream":{"name":"a","namespace":"n s"},"destination_sync_mode":"overwrite"}]}"#;
        let c = Catalog::parse(text, "main").unwrap();
        assert_eq!(c.find("", "a"), Some(0));
        assert_eq!(c.find("n s", "a"), Some(1));
        assert_eq!(c.streams[1].schema, "n_s");
        assert_eq!(c.find("x", "a"), None);
    }
}
