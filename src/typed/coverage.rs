//! Which raw rows a typed table holds ([`Coverage`]), and the check that
//! decides whether that record can still be trusted ([`Coverage::verify`]).
//!
//! A typed table is only ever caught up by appending: the raw rows it does
//! not cover yet are typed and added. That is only right while the rows it
//! covers are still the raw table's. So a coverage is recorded with a
//! fingerprint of the raw table where it ends ([`Seen`]): how many rows, the
//! `_airbyte_ab_id` of the last one (a fresh UUID per record, so a row put
//! back at a reused rowid has another), and the raw table's rewrite count
//! (`internal::raw_rewrites`), which every change other than an append (an
//! overwrite's swap, a table made again or adopted) raises in its own
//! transaction. A coverage whose fingerprint no longer matches is not
//! trusted: the typed table is rebuilt from the raw rows, the source of
//! truth. A DELETE, a swap, reused rowids or a vacuum that moves rowids all
//! change the count below the watermark, the row at it, or the rewrite
//! count.
//!
//! In the registry a coverage is four flat columns (`watermark`,
//! `watermark_count`, `watermark_id`, `raw_rewrites`); [`Coverage::read`]
//! and [`Coverage::columns`] are the only code that knows how.

use anyhow::Result;

use crate::catalog::Stream;
use crate::duck::{Session, Value};
use crate::internal;
use crate::names::{literal, qualified};

/// How the registry's `watermark` column says "every raw row": the value
/// versions before the fingerprint wrote too, so either reads the other's.
const EVERY_ROW: i64 = i64::MAX;

/// What the raw table held where a coverage ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Raw rows covered.
    pub count: i64,
    /// `_airbyte_ab_id` of the last of them (None when there are none).
    pub last_id: Option<String>,
    /// The raw table's rewrite count then.
    pub rewrites: i64,
}

/// Which raw rows a typed table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Not known (never built, given up, recorded by an older version, or
    /// found wrong): the table is rebuilt from the raw rows.
    Rebuild,
    /// The raw rows whose rowid is at most `rowid`, as of `seen`.
    UpTo { rowid: i64, seen: Seen },
    /// Every raw row, as of `seen`: typed rows written with the records,
    /// whose commits count the raw rows they cover.
    All { seen: Seen },
}

/// What a coverage means for the raw table as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The table holds every raw row.
    Current,
    /// The table holds the raw rows up to this rowid; the rest can be
    /// appended (or merged).
    After(i64),
    /// The table must be rebuilt.
    Rebuild,
}

impl Coverage {
    /// From the registry's columns (see the module docs).
    pub fn read(
        watermark: Option<i64>,
        count: Option<i64>,
        last_id: Option<&str>,
        rewrites: Option<i64>,
    ) -> Coverage {
        let (Some(watermark), Some(count), Some(rewrites)) = (watermark, count, rewrites) else {
            return Coverage::Rebuild;
        };
        if count < 0 || (count > 0 && last_id.is_none()) {
            return Coverage::Rebuild;
        }
        let seen = Seen {
            count,
            last_id: last_id.map(str::to_string),
            rewrites,
        };
        match watermark {
            EVERY_ROW => Coverage::All { seen },
            rowid if rowid >= 0 => Coverage::UpTo { rowid, seen },
            _ => Coverage::Rebuild,
        }
    }

    /// The registry's columns, as SQL literals: `watermark`,
    /// `watermark_count`, `watermark_id`, `raw_rewrites`.
    pub fn columns(&self) -> [String; 4] {
        let null = || "NULL".to_string();
        let seen_columns = |watermark: i64, seen: &Seen| {
            [
                watermark.to_string(),
                seen.count.to_string(),
                seen.last_id.as_deref().map_or_else(null, literal),
                seen.rewrites.to_string(),
            ]
        };
        match self {
            Coverage::Rebuild => [null(), null(), null(), null()],
            Coverage::UpTo { rowid, seen } => seen_columns(*rowid, seen),
            Coverage::All { seen } => seen_columns(EVERY_ROW, seen),
        }
    }

    /// Every raw row, as the raw table is now (`extent`): after a table was
    /// caught up.
    pub fn all_of(extent: &Extent) -> Coverage {
        Coverage::All {
            seen: extent.seen.clone(),
        }
    }

    /// Checks the coverage against stream `s`'s raw table as it is now.
    pub fn verify(&self, session: &Session, s: &Stream) -> Result<Verdict> {
        let raw = qualified(&s.schema, &s.table);
        let rewrites = internal::raw_rewrites(&raw_of(s));
        let (at, seen, verdict) = match self {
            Coverage::Rebuild => return Ok(Verdict::Rebuild),
            Coverage::UpTo { rowid, seen } => {
                (format!("rowid <= {rowid}"), seen, Verdict::After(*rowid))
            }
            Coverage::All { seen } => ("true".to_string(), seen, Verdict::Current),
        };
        // The rows the coverage claims, the id of the last of them, and the
        // rewrite count.
        let row = session.query_row(&format!(
            "SELECT count(*), max(rowid), {rewrites} FROM {raw} WHERE {at}"
        ))?;
        let last_id = match row.int(1) {
            Some(last) => session
                .query_row(&format!(
                    "SELECT _airbyte_ab_id FROM {raw} WHERE rowid = {last}"
                ))?
                .text(0)
                .map(str::to_string),
            None => None,
        };
        let now = Seen {
            count: row.int(0).unwrap_or(0),
            last_id,
            rewrites: row.int(2).unwrap_or(0),
        };
        Ok(if now == *seen {
            verdict
        } else {
            Verdict::Rebuild
        })
    }
}

fn raw_of(s: &Stream) -> internal::RawOf<'_> {
    internal::RawOf::new(&s.namespace, &s.name, &s.schema)
}

/// Stream `s`'s raw table as it is now: its highest rowid and the
/// fingerprint of all its rows.
#[derive(Debug, Clone)]
pub struct Extent {
    /// None for an empty table.
    pub max_rowid: Option<i64>,
    pub seen: Seen,
}

impl Extent {
    pub fn of(session: &Session, s: &Stream) -> Result<Extent> {
        let raw = qualified(&s.schema, &s.table);
        let row = session.query_row(&format!(
            "SELECT max(rowid), count(*), \
             (SELECT _airbyte_ab_id FROM {raw} WHERE rowid = (SELECT max(rowid) FROM {raw})), {} \
             FROM {raw}",
            internal::raw_rewrites(&raw_of(s))
        ))?;
        Ok(Extent {
            max_rowid: row.int(0),
            seen: Seen {
                count: row.int(1).unwrap_or(0),
                last_id: row.text(2).map(str::to_string),
                rewrites: row.int(3).unwrap_or(0),
            },
        })
    }

    /// The coverage of a table that holds every row of this extent.
    pub fn covered(&self) -> Coverage {
        match self.max_rowid {
            Some(rowid) => Coverage::UpTo {
                rowid,
                seen: self.seen.clone(),
            },
            None => Coverage::All {
                seen: self.seen.clone(),
            },
        }
    }
}

/// The statement that adds, in the registry, the raw rows a commit covers
/// for every stream in `rows` (stream key and schema as SQL literals, the
/// raw rows of the commit, and the id of the last), however many streams
/// there are: a coverage of every row stays one as the rows come.
pub fn count_update(rows: &[String]) -> String {
    format!(
        "UPDATE {r} SET watermark_count = {r}.watermark_count + v.n, watermark_id = v.id \
         FROM (VALUES {}) v(k, s, n, id) \
         WHERE {r}.stream_key = v.k AND lower({r}.schema_name) = lower(v.s) \
         AND {r}.watermark = {EVERY_ROW}",
        rows.join(", "),
        r = internal::qualified(internal::TYPED_RELATIONS),
    )
}

/// Reads `Value`s of the registry row back into a coverage.
pub fn from_values(values: &[Value]) -> Coverage {
    match values {
        [watermark, count, id, rewrites] => Coverage::read(
            watermark.as_i64(),
            count.as_i64(),
            id.as_str(),
            rewrites.as_i64(),
        ),
        _ => Coverage::Rebuild,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverages_round_trip_through_the_registry_columns() {
        let seen = Seen {
            count: 8,
            last_id: Some("a".into()),
            rewrites: 2,
        };
        for c in [
            Coverage::Rebuild,
            Coverage::UpTo {
                rowid: 7,
                seen: seen.clone(),
            },
            Coverage::All {
                seen: Seen {
                    count: 0,
                    last_id: None,
                    rewrites: 0,
                },
            },
            Coverage::All { seen },
        ] {
            let [w, n, id, r] = c.columns();
            let int = |v: &str| v.parse().ok();
            let id = id.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
            assert_eq!(Coverage::read(int(&w), int(&n), id, int(&r)), c);
        }
    }

    /// What older versions recorded (no id, no rewrite count) or what
    /// makes no sense reads as a rebuild.
    #[test]
    fn incomplete_records_rebuild() {
        assert_eq!(
            Coverage::read(Some(7), Some(8), None, Some(0)),
            Coverage::Rebuild
        );
        assert_eq!(
            Coverage::read(Some(7), Some(8), Some("a"), None),
            Coverage::Rebuild
        );
        assert_eq!(
            Coverage::read(Some(-5), Some(0), None, Some(0)),
            Coverage::Rebuild
        );
        assert_eq!(
            Coverage::read(None, Some(0), None, Some(0)),
            Coverage::Rebuild
        );
    }
}
