//! Resolving every stream's typed relation at the start of a sync: its name
//! (stable once given, never another's), its columns (merged with what was
//! recorded), and, for `views` and `off`, bringing the database in line
//! (views made or kept, or what this connector made dropped). Typed tables
//! are built later (`inline`, `refresh`).

use std::collections::HashSet;

use anyhow::{Context, Result};

use super::coverage::Coverage;
use super::registry::{
    drop_existing, in_transaction, leftovers, record_all, relation, shape, survey, Existing,
    Materialized, Typed,
};
use super::sql::{create_rules, Query};
use super::types::{merge_columns, schema_properties};
use crate::catalog::Stream;
use crate::config::TypedOutput;
use crate::duck::Session;
use crate::internal::{self, fnv1a64, free_name, stream_key, RAW_PREFIX};

/// Resolves every stream's typed relation (name and columns), records it,
/// and brings the database in line with `mode`: views are (re)created now;
/// tables are built by `refresh::materialise` at the end of the sync; `off` drops
/// what this connector made.
pub fn prepare(session: &Session, streams: &[Stream], mode: TypedOutput) -> Result<Vec<Typed>> {
    let Existing {
        mut known,
        mut taken,
        views,
        shapes,
    } = survey(session)?;
    // New names are handed out in (namespace, name) order, so the same
    // catalog gets the same names whatever order it lists streams in.
    let mut order: Vec<usize> = (0..streams.len()).collect();
    order.sort_by(|&a, &b| {
        (&streams[a].namespace, &streams[a].name).cmp(&(&streams[b].namespace, &streams[b].name))
    });
    let mut out: Vec<Option<Typed>> = vec![None; streams.len()];
    let mut changed = Vec::new();
    // One transaction for all streams: one commit, however many there are.
    in_transaction(session, || {
        if mode != TypedOutput::Off {
            // Every typed relation and statement calls the typing rules
            // (the schema is made with the registry, in `survey`).
            session
                .execute(&create_rules())
                .context("creating the typing rules")?;
        }
        for i in order {
            let s = &streams[i];
            let key = (stream_key(&s.namespace, &s.name), s.schema.to_lowercase());
            let (mut typed, recorded) = match known.remove(&key) {
                Some(t) => (t.clone(), Some(t)),
                None => {
                    let t = Typed {
                        name: allocate(s, &mut taken),
                        columns: Vec::new(),
                        materialized: Materialized::Nothing,
                    };
                    (t, None)
                }
            };
            typed.columns = merge_columns(&typed.columns, &schema_properties(&s.json_schema));
            // A table deduplicated by another key or cursor, or not at all,
            // is no base to merge or append to: rebuilt. (Tables recorded
            // before shapes were kept none, and are taken as they are.)
            let mut reshaped = false;
            if let (Materialized::Table { coverage, .. }, Some(old)) =
                (&mut typed.materialized, shapes.get(&key))
            {
                let now = shape(s);
                if old.as_ref().is_some_and(|old| *old != now) {
                    *coverage = Coverage::Rebuild;
                }
                // Recorded without a shape: the shape is recorded now.
                reshaped = old.as_ref() != Some(&now);
            }
            let exists = views.contains(&(s.schema.to_lowercase(), typed.name.to_lowercase()));
            apply(session, s, &mut typed, mode, exists, &taken)
                .with_context(|| format!("preparing the typed relation of stream {}", s.label()))?;
            if reshaped || recorded.as_ref() != Some(&typed) {
                changed.push(i);
            }
            out[i] = Some(typed);
        }
        let entries: Vec<(&Stream, &Typed)> = changed
            .iter()
            .map(|&i| (&streams[i], out[i].as_ref().expect("prepared above")))
            .collect();
        record_all(session, &entries)
    })?;
    Ok(out.into_iter().map(|t| t.expect("every stream")).collect())
}

fn allocate(s: &Stream, taken: &mut HashSet<(String, String)>) -> String {
    let schema = s.schema.to_lowercase();
    // A raw table's name minus its prefix: `_airbyte_raw_users` → `users`.
    let plain = s
        .table
        .strip_prefix(RAW_PREFIX)
        .unwrap_or(&s.base)
        .to_string();
    let name = free_name(&plain, &stream_key(&s.namespace, &s.name), |n| {
        n.is_empty() || taken.contains(&(schema.clone(), n.to_lowercase()))
    });
    if name != plain {
        tracing::warn!(stream = %s.label(), relation = %name, "the typed relation's plain name is taken; using a suffixed name");
    }
    taken.insert((schema, name.to_lowercase()));
    name
}

/// Brings one stream's typed relation in line with `mode`, inside the
/// caller's transaction. `view_exists`: a view of its name is in the
/// database.
fn apply(
    session: &Session,
    s: &Stream,
    t: &mut Typed,
    mode: TypedOutput,
    view_exists: bool,
    tables: &HashSet<(String, String)>,
) -> Result<()> {
    // Nothing made and no leftover table: nothing to drop (a first sync of
    // a large catalog would otherwise spend a statement of four drops per stream).
    let nothing_to_drop = t.materialized == Materialized::Nothing
        && leftovers(s, t)
            .iter()
            .all(|n| !tables.contains(&(internal::SCHEMA.to_lowercase(), n.to_lowercase())));
    match mode {
        TypedOutput::Views => {
            let q = Query::new(s, &t.columns, true);
            let sql = q.relation();
            let definition = format!("{:016x}", fnv1a64(sql.as_bytes()));
            match &t.materialized {
                Materialized::View {
                    definition: Some(d),
                } if *d == definition && view_exists => return Ok(()),
                Materialized::View { .. } => {}
                // A table of ours under this name goes first.
                _ if nothing_to_drop => {}
                _ => drop_existing(session, s, t)?,
            }
            session.execute(&format!(
                "CREATE OR REPLACE VIEW {} AS {sql}",
                relation(s, t)
            ))?;
            tracing::info!(stream = %s.label(), view = %relation(s, t), "typed view created");
            t.materialized = Materialized::View {
                definition: Some(definition),
            };
        }
        // Built at the end of the sync.
        TypedOutput::Tables => {}
        TypedOutput::Off => {
            if !nothing_to_drop {
                drop_existing(session, s, t)?;
            }
            t.materialized = Materialized::Nothing;
        }
    }
    Ok(())
}
