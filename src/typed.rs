//! Typed relations over the raw tables: one column per top-level property of
//! a stream's JSON schema, and for `append_dedup` streams one row per
//! primary key.
//!
//! The raw table stays the source of truth. The typed relation
//! `"<schema>"."<name>"` is either a view that types (and deduplicates) the
//! raw rows when it is queried, or a table refreshed from the raw table at
//! the end of each sync (see [`TypedOutput`]). Everything is plain SQL over
//! `_airbyte_data`, so any DuckDB client can read the views.
//!
//! Typing never fails a query or a sync: a value that does not fit its
//! column becomes NULL and the row's `_airbyte_meta.changes` gets
//! `{"field": <property>, "change": "NULLED", "reason":
//! "DESTINATION_TYPECAST_ERROR"}`.
//!
//! Names and columns are recorded in `_airbyte_internal.typed_relations`, so
//! they stay stable across syncs: a property once given a column keeps it
//! (its type may widen), and properties that leave the schema keep their
//! column.
//!
//! A dedup cursor compares by its value: a typed column by its type; a
//! nested, undeclared or JSON cursor by its JSON value (see `json_order`),
//! so views and tables agree whatever the schema says.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::catalog::Stream;
use crate::config::TypedOutput;
use crate::database::CATALOG;
use crate::duck::Session;
use crate::internal::{self, Work, RAW_PREFIX, STREAM_TABLES, TYPED_RELATIONS};
use crate::names::{literal, qualified, qualified_schema, quote};
use crate::pipeline::tables::{fnv1a64, free_name, stream_key};

/// The metadata columns every typed relation starts with.
const META_COLUMNS: [&str; 4] = [
    "_airbyte_ab_id",
    "_airbyte_emitted_at",
    "_airbyte_meta",
    "_airbyte_generation_id",
];

/// The property that marks a CDC delete in `append_dedup` streams.
const CDC_DELETED_AT: &str = "_ab_cdc_deleted_at";

/// The DuckDB type a property is typed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColType {
    Varchar,
    Boolean,
    Bigint,
    Double,
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Timetz,
    /// Any JSON value (unions, unknown or missing types).
    Json,
    /// JSON that must be an object (`type: object`).
    JsonObject,
    /// JSON that must be an array (`type: array`).
    JsonArray,
}

impl ColType {
    const ALL: [ColType; 12] = [
        ColType::Varchar,
        ColType::Boolean,
        ColType::Bigint,
        ColType::Double,
        ColType::Date,
        ColType::Timestamp,
        ColType::Timestamptz,
        ColType::Time,
        ColType::Timetz,
        ColType::Json,
        ColType::JsonObject,
        ColType::JsonArray,
    ];

    /// The name recorded in the registry.
    pub fn key(self) -> &'static str {
        match self {
            ColType::Varchar => "string",
            ColType::Boolean => "boolean",
            ColType::Bigint => "integer",
            ColType::Double => "number",
            ColType::Date => "date",
            ColType::Timestamp => "timestamp_without_timezone",
            ColType::Timestamptz => "timestamp_with_timezone",
            ColType::Time => "time_without_timezone",
            ColType::Timetz => "time_with_timezone",
            ColType::Json => "json",
            ColType::JsonObject => "object",
            ColType::JsonArray => "array",
        }
    }

    fn from_key(key: &str) -> Option<ColType> {
        ColType::ALL.into_iter().find(|t| t.key() == key)
    }

    /// The DuckDB column type.
    pub fn sql(self) -> &'static str {
        match self {
            ColType::Varchar => "VARCHAR",
            ColType::Boolean => "BOOLEAN",
            ColType::Bigint => "BIGINT",
            ColType::Double => "DOUBLE",
            ColType::Date => "DATE",
            ColType::Timestamp => "TIMESTAMP",
            ColType::Timestamptz => "TIMESTAMP WITH TIME ZONE",
            ColType::Time => "TIME",
            ColType::Timetz => "TIME WITH TIME ZONE",
            ColType::Json | ColType::JsonObject | ColType::JsonArray => "JSON",
        }
    }

    /// The type that holds values of both: integers widen to numbers,
    /// anything else that differs falls back to JSON (which holds any
    /// value as it arrived).
    pub fn widen(self, other: ColType) -> ColType {
        use ColType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Bigint, Double) | (Double, Bigint) => Double,
            _ => Json,
        }
    }
}

/// The column type of one property's JSON schema, by Airbyte's type rules.
pub fn column_type(schema: &Value) -> ColType {
    let Value::Object(obj) = schema else {
        return ColType::Json;
    };
    if let Some(Value::String(r)) = obj.get("$ref") {
        return match r.rsplit('/').next().unwrap_or("") {
            "String" | "BinaryData" => ColType::Varchar,
            "Boolean" => ColType::Boolean,
            "Integer" => ColType::Bigint,
            "Number" => ColType::Double,
            "Date" => ColType::Date,
            "TimestampWithTimezone" => ColType::Timestamptz,
            "TimestampWithoutTimezone" => ColType::Timestamp,
            "TimeWithTimezone" => ColType::Timetz,
            "TimeWithoutTimezone" => ColType::Time,
            _ => ColType::Json,
        };
    }
    for union in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = obj.get(union) {
            let types = options
                .iter()
                .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .map(column_type);
            return unify(types);
        }
    }
    match obj.get("type") {
        Some(Value::String(t)) => single_type(t, obj),
        Some(Value::Array(ts)) => unify(
            ts.iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .map(|t| single_type(t, obj)),
        ),
        _ => ColType::Json,
    }
}

fn unify(types: impl Iterator<Item = ColType>) -> ColType {
    types.reduce(ColType::widen).unwrap_or(ColType::Json)
}

fn single_type(t: &str, obj: &serde_json::Map<String, Value>) -> ColType {
    let airbyte_type = obj.get("airbyte_type").and_then(Value::as_str);
    let format = obj.get("format").and_then(Value::as_str);
    match t {
        "string" => match (format, airbyte_type) {
            // Legacy big numbers are kept as text: exact, unlike DOUBLE.
            (_, Some("big_number" | "big_integer")) => ColType::Varchar,
            (Some("date"), _) => ColType::Date,
            (Some("date-time"), Some("timestamp_without_timezone")) => ColType::Timestamp,
            (Some("date-time"), _) => ColType::Timestamptz,
            (Some("time"), Some("time_without_timezone")) => ColType::Time,
            (Some("time"), _) => ColType::Timetz,
            _ => ColType::Varchar,
        },
        "integer" => ColType::Bigint,
        "number" if airbyte_type == Some("integer") => ColType::Bigint,
        "number" => ColType::Double,
        "boolean" => ColType::Boolean,
        "object" => ColType::JsonObject,
        "array" => ColType::JsonArray,
        _ => ColType::Json,
    }
}

/// One typed column: the property it reads, its column name, its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub property: String,
    pub name: String,
    pub ty: ColType,
}

/// The top-level properties of a stream schema with their types, sorted by
/// name. Properties whose name holds a NUL character cannot be addressed in
/// SQL text and are left to the raw table.
pub fn schema_properties(schema: &Value) -> Vec<(String, ColType)> {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return Vec::new();
    };
    let mut out: Vec<(String, ColType)> = props
        .iter()
        .filter(|(name, _)| !name.contains('\0'))
        .map(|(name, s)| (name.clone(), column_type(s)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Merges the recorded columns with the schema's current properties: known
/// properties keep their column (the type widens if it changed), new ones
/// get a column whose name is the property's, made unique
/// case-insensitively (`_1`, `_2`, ...) and never starting with `_airbyte_`
/// (those get a leading `_`).
pub fn merge_columns(recorded: &[Column], properties: &[(String, ColType)]) -> Vec<Column> {
    let mut out: Vec<Column> = recorded.to_vec();
    let mut taken: HashSet<String> = META_COLUMNS.iter().map(|c| c.to_string()).collect();
    taken.extend(out.iter().map(|c| c.name.to_lowercase()));
    for (property, ty) in properties {
        if let Some(c) = out.iter_mut().find(|c| &c.property == property) {
            c.ty = c.ty.widen(*ty);
            continue;
        }
        let mut base = if property.is_empty() {
            "_".to_string()
        } else {
            property.clone()
        };
        if base.to_lowercase().starts_with("_airbyte_") {
            base.insert(0, '_');
        }
        let mut name = base.clone();
        let mut n = 1;
        while taken.contains(&name.to_lowercase()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        taken.insert(name.to_lowercase());
        out.push(Column {
            property: property.clone(),
            name,
            ty: *ty,
        });
    }
    out
}

fn columns_to_json(columns: &[Column]) -> String {
    let rows: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|c| (c.property.as_str(), c.name.as_str(), c.ty.key()))
        .collect();
    serde_json::to_string(&rows).expect("strings serialize")
}

fn columns_from_json(text: &str) -> Option<Vec<Column>> {
    let rows: Vec<(String, String, String)> = serde_json::from_str(text).ok()?;
    rows.into_iter()
        .map(|(property, name, ty)| {
            Some(Column {
                property,
                name,
                ty: ColType::from_key(&ty)?,
            })
        })
        .collect()
}

/// A JSON pointer (RFC 6901) to a property path, as an SQL literal.
fn pointer(path: &[String]) -> String {
    let mut p = String::new();
    for part in path {
        p.push('/');
        p.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    literal(&p)
}

/// What the typed relation of one stream is and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typed {
    /// The relation's name (unquoted), in the stream's schema.
    pub name: String,
    pub columns: Vec<Column>,
    /// What exists in the database now: `view`, `table` or nothing.
    kind: Option<String>,
    /// The columns the materialised table holds, when it is a table.
    table_columns: Option<Vec<Column>>,
    /// Highest raw rowid merged into the table, and the raw row count at or
    /// below it then (to detect rowids that moved).
    watermark: Option<(i64, i64)>,
    /// A hash of the view's SQL, when it is a view: an unchanged view is
    /// not recreated (binding one costs DuckDB tens of milliseconds).
    definition: Option<String>,
}

/// A stream's typed relation, as SQL.
struct Query<'a> {
    stream: &'a Stream,
    columns: &'a [Column],
    /// How the raw table is named in the SQL: fully qualified in statements;
    /// by its name alone inside a view's definition, which DuckDB binds in
    /// the view's own schema and catalog. So the view still resolves when a
    /// client opens the file under its own catalog name, even one that
    /// equals a schema name (`sales.duckdb` with a schema `sales`).
    raw: String,
}

/// Key and cursor expressions of a dedup relation: a typed column where the
/// path is a top-level property, else the raw JSON at the path (its text
/// for keys, its JSON value for the cursor).
enum KeyExpr {
    Column(String, ColType),
    Raw(usize),
}

impl<'a> Query<'a> {
    /// The query behind a view (`in_view`) or a statement.
    fn new(stream: &'a Stream, columns: &'a [Column], in_view: bool) -> Self {
        let raw = if in_view {
            quote(&stream.table)
        } else {
            qualified(&stream.schema, &stream.table)
        };
        Query {
            stream,
            columns,
            raw,
        }
    }

    fn key_expr(&self, path: &[String], raw_slot: usize) -> KeyExpr {
        if let [single] = path {
            if let Some(c) = self.columns.iter().find(|c| &c.property == single) {
                return KeyExpr::Column(c.name.clone(), c.ty);
            }
        }
        KeyExpr::Raw(raw_slot)
    }

    fn keys(&self) -> Vec<(KeyExpr, &[String])> {
        self.stream
            .primary_key
            .iter()
            .enumerate()
            .map(|(i, p)| (self.key_expr(p, i), p.as_slice()))
            .collect()
    }

    fn cursor(&self) -> Option<(KeyExpr, &[String])> {
        let c = &self.stream.cursor_field;
        (!c.is_empty()).then(|| {
            (
                self.key_expr(c, self.stream.primary_key.len()),
                c.as_slice(),
            )
        })
    }

    /// Whether every key and the cursor are typed columns (the condition for
    /// merging new rows into a table without rereading the raw table).
    fn keys_are_columns(&self) -> bool {
        self.keys()
            .iter()
            .all(|(k, _)| matches!(k, KeyExpr::Column(..)))
            && self
                .cursor()
                .is_none_or(|(k, _)| matches!(k, KeyExpr::Column(..)))
    }

    /// Typed rows of the raw table (optionally only `rowid > after`), with
    /// helper columns `_airbyte_raw_rowid`, `_airbyte_k<i>`, the cursor's
    /// order keys (see [`Query::cursor_keys`]) and `_airbyte_deleted`.
    fn typed_rows(&self, after: Option<i64>) -> String {
        // Level 1: the raw values.
        let mut l1 = vec![
            "rowid AS _airbyte_raw_rowid".to_string(),
            "_airbyte_ab_id, _airbyte_emitted_at, _airbyte_meta, _airbyte_generation_id"
                .to_string(),
        ];
        if !self.columns.is_empty() {
            let pointers: Vec<String> = self
                .columns
                .iter()
                .map(|c| pointer(std::slice::from_ref(&c.property)))
                .collect();
            // Three passes in all, however many properties: the values (as
            // JSON), their text, and their JSON types.
            let list = pointers.join(", ");
            l1.push(format!(
                "json_extract(_airbyte_data, [{list}]) AS _airbyte_values, \
                 json_extract_string(_airbyte_data, [{list}]) AS _airbyte_strings, \
                 json_type(_airbyte_data, [{list}]) AS _airbyte_types"
            ));
        }
        let keys = self.keys().into_iter().map(|k| (k, "->>"));
        for ((k, path), op) in keys.chain(self.cursor().map(|k| (k, "->"))) {
            let KeyExpr::Raw(slot) = k else { continue };
            l1.push(format!(
                "_airbyte_data {op} {} AS _airbyte_r{slot}",
                if path.iter().any(|p| p.contains('\0')) {
                    "NULL".to_string()
                } else {
                    pointer(path)
                }
            ));
        }
        let filter = after.map_or(String::new(), |w| format!(" WHERE rowid > {w}"));
        let l1 = format!("SELECT {} FROM {}{filter}", l1.join(", "), self.raw);
        let mut l1b = vec!["*".to_string()];
        for i in 0..self.columns.len() {
            l1b.push(format!(
                "_airbyte_values[{n}] AS _airbyte_v{i}, _airbyte_strings[{n}] AS _airbyte_s{i}, \
                 _airbyte_types[{n}] AS _airbyte_t{i}",
                n = i + 1
            ));
        }
        let l1 = format!("SELECT {} FROM ({l1})", l1b.join(", "));
        // Level 2: typed values.
        let mut l2 = vec!["*".to_string()];
        for (i, c) in self.columns.iter().enumerate() {
            l2.push(format!("{} AS {}", cast(i, c.ty), quote(&c.name)));
        }
        let l2 = format!("SELECT {} FROM ({l1})", l2.join(", "));
        // Level 2b: which values did not fit (present, not null, no value).
        let mut l2b = vec!["*".to_string()];
        for (i, c) in self.columns.iter().enumerate() {
            l2b.push(format!(
                "(_airbyte_t{i} <> 'NULL' AND {} IS NULL) IS TRUE AS _airbyte_e{i}",
                quote(&c.name)
            ));
        }
        let l2 = format!("SELECT {} FROM ({l2})", l2b.join(", "));
        // Level 3: metadata with the cast errors, keys, cursor, deletes.
        let errors: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "CASE WHEN _airbyte_e{i} THEN {{'field': {}, 'change': 'NULLED', \
                     'reason': 'DESTINATION_TYPECAST_ERROR'}} END",
                    literal(&c.property)
                )
            })
            .collect();
        let meta = if errors.is_empty() {
            "_airbyte_meta".to_string()
        } else {
            let new = format!(
                "to_json(list_filter([{}], lambda x: x IS NOT NULL))::VARCHAR",
                errors.join(", ")
            );
            let any = (0..self.columns.len())
                .map(|i| format!("_airbyte_e{i}"))
                .collect::<Vec<_>>()
                .join(" OR ");
            // The recorded changes (if an array) followed by the new ones.
            let old = "coalesce(CASE WHEN json_type(_airbyte_meta -> '$.changes') = 'ARRAY' \
                       THEN (_airbyte_meta -> '$.changes')::VARCHAR END, '[]')";
            format!(
                "CASE WHEN {any} THEN json_merge_patch(coalesce(_airbyte_meta, '{{}}'), \
                 json_object('changes', (CASE WHEN {old} = '[]' THEN {new} \
                 ELSE substr({old}, 1, length({old}) - 1) || ',' || substr({new}, 2) END)::JSON)) \
                 ELSE _airbyte_meta END"
            )
        };
        let mut l3 = vec![
            "_airbyte_raw_rowid".to_string(),
            "_airbyte_ab_id".to_string(),
            "_airbyte_emitted_at".to_string(),
            format!("({meta})::JSON AS _airbyte_meta"),
            "_airbyte_generation_id".to_string(),
        ];
        l3.extend(self.columns.iter().map(|c| quote(&c.name)));
        for (i, (k, _)) in self.keys().iter().enumerate() {
            l3.push(format!("{} AS _airbyte_k{i}", key_sql(k)));
        }
        l3.push(self.cursor_keys());
        let deleted = match self
            .columns
            .iter()
            .position(|c| c.property == CDC_DELETED_AT)
        {
            Some(i) => format!("coalesce(json_type(_airbyte_v{i}) <> 'NULL', false)"),
            None => "false".to_string(),
        };
        l3.push(format!("{deleted} AS _airbyte_deleted"));
        format!("SELECT {} FROM ({l2})", l3.join(", "))
    }

    /// The output columns, quoted and comma separated.
    fn output_columns(&self) -> String {
        META_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain(self.columns.iter().map(|c| quote(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The cursor's order keys `_airbyte_cr` (rank), `_airbyte_cn`
    /// (number) and `_airbyte_cs` (text), all NULL without a cursor value.
    fn cursor_keys(&self) -> String {
        let [rank, number, exact, text] = match self.cursor() {
            None => [
                "NULL".to_string(),
                "NULL".to_string(),
                "NULL".to_string(),
                "NULL".to_string(),
            ],
            Some((k, _)) => cursor_order(&k),
        };
        format!(
            "{rank} AS _airbyte_cr, ({number})::DOUBLE AS _airbyte_cn, \
             ({exact})::HUGEINT AS _airbyte_ci, ({text})::VARCHAR AS _airbyte_cs"
        )
    }

    fn order_by(&self, seq: &str) -> String {
        format!(
            "_airbyte_cr DESC NULLS LAST, _airbyte_cn DESC NULLS LAST, _airbyte_ci DESC NULLS LAST, \
             _airbyte_cs DESC NULLS LAST, _airbyte_emitted_at DESC NULLS LAST, {seq} DESC"
        )
    }

    fn partition_by(&self) -> String {
        (0..self.stream.primary_key.len())
            .map(|i| format!("_airbyte_k{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The typed relation: every raw row typed, or for `append_dedup` the
    /// latest row per key (by cursor, then emission time, then arrival),
    /// without keys whose latest row is a CDC delete.
    fn relation(&self) -> String {
        let out = self.output_columns();
        let rows = self.typed_rows(None);
        if !self.stream.dedup {
            return format!("SELECT {out} FROM ({rows})");
        }
        format!(
            "SELECT {out} FROM ({}) WHERE NOT _airbyte_deleted",
            self.latest(&rows, "_airbyte_raw_rowid")
        )
    }

    /// The latest row of each key among `rows` (which carry the key,
    /// cursor and delete helper columns), ties going to the highest `seq`.
    fn latest(&self, rows: &str, seq: &str) -> String {
        format!(
            "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {}) \
             AS _airbyte_row_number FROM ({rows})) WHERE _airbyte_row_number = 1",
            self.partition_by(),
            self.order_by(seq),
        )
    }
}

fn key_sql(k: &KeyExpr) -> String {
    match k {
        KeyExpr::Column(name, _) => quote(name),
        KeyExpr::Raw(slot) => format!("_airbyte_r{slot}"),
    }
}

/// Rank, number, exact integer and text that order a cursor's values,
/// latest first when sorted descending. A typed column orders by its type:
/// numbers as numbers, dates and timestamps as instants, strings as
/// strings (date-time strings as instants). A JSON or raw (nested or
/// undeclared) cursor orders by its JSON value ([`json_order`]).
fn cursor_order(k: &KeyExpr) -> [String; 4] {
    let null = || "NULL".to_string();
    match k {
        KeyExpr::Raw(slot) => json_order(&format!("_airbyte_r{slot}")),
        KeyExpr::Column(name, ty) => {
            let c = quote(name);
            let known = |rank: u8, number: String, exact: String, text: String| {
                [
                    format!("CASE WHEN {c} IS NOT NULL THEN {rank} END"),
                    number,
                    exact,
                    text,
                ]
            };
            match ty {
                ColType::Boolean => known(1, format!("{c}::INTEGER"), null(), null()),
                ColType::Bigint => known(2, c.clone(), c.clone(), null()),
                ColType::Double => known(2, c.clone(), null(), null()),
                ColType::Timestamptz => known(3, instant_number(&c), null(), null()),
                ColType::Date | ColType::Timestamp => known(
                    3,
                    instant_number(&format!("{c}::TIMESTAMP")),
                    null(),
                    null(),
                ),
                // Times carry no date: their text sorts as they do.
                ColType::Time | ColType::Timetz => {
                    known(4, null(), null(), format!("{c}::VARCHAR"))
                }
                // A string column holds text (a number sent to it anyway is
                // its JSON text): ordered as a JSON string.
                ColType::Varchar => json_order(&format!("to_json({c})")),
                ColType::Json | ColType::JsonObject | ColType::JsonArray => json_order(&c),
            }
        }
    }
}

/// An instant (or timestamp) `i` as a number that orders it, infinities
/// included.
fn instant_number(i: &str) -> String {
    format!(
        "CASE WHEN isfinite({i}) THEN epoch_us({i}) \
         WHEN {i} > '1970-01-01'::TIMESTAMP THEN 'infinity'::DOUBLE \
         WHEN {i} IS NOT NULL THEN '-infinity'::DOUBLE END"
    )
}

/// Orders JSON values `v` by kind, then value: booleans (rank 1) below
/// numbers (2, numerically; integers exactly) below strings that are
/// date-times (3, as instants, offsets honoured, none meaning UTC) below
/// other strings (4, by text) below objects and arrays (5, by text). JSON
/// null and a missing value have no rank and lose to any value.
fn json_order(v: &str) -> [String; 4] {
    let t = format!("json_type({v})");
    let s = format!("({v} ->> '$')");
    let instant = instant(&s);
    let integer = format!("{t} IN ('BIGINT', 'UBIGINT', 'HUGEINT')");
    [
        format!(
            "CASE {t} WHEN 'BOOLEAN' THEN 1 WHEN 'BIGINT' THEN 2 WHEN 'UBIGINT' THEN 2 \
             WHEN 'HUGEINT' THEN 2 WHEN 'DOUBLE' THEN 2 \
             WHEN 'VARCHAR' THEN CASE WHEN {instant} IS NULL THEN 4 ELSE 3 END \
             WHEN 'OBJECT' THEN 5 WHEN 'ARRAY' THEN 5 END"
        ),
        format!(
            "CASE {t} WHEN 'BOOLEAN' THEN ({s} = 'true')::INTEGER \
             WHEN 'VARCHAR' THEN {} \
             WHEN 'NULL' THEN NULL WHEN 'OBJECT' THEN NULL WHEN 'ARRAY' THEN NULL \
             ELSE TRY_CAST({s} AS DOUBLE) END",
            instant_number(&instant)
        ),
        format!("CASE WHEN {integer} THEN TRY_CAST({s} AS HUGEINT) END"),
        format!(
            "CASE WHEN {t} = 'VARCHAR' AND {instant} IS NULL THEN {s} \
             WHEN {t} IN ('OBJECT', 'ARRAY') THEN {v}::VARCHAR END"
        ),
    ]
}

/// A date-time text `s` (an SQL expression) as an instant: with its offset
/// when it has one, as UTC when it has none; NULL when it is no date-time.
/// `Z`, `UTC` and `GMT` suffixes mean `+00`; a `T` may separate date and
/// time.
///
/// Only ISO 8601 shapes are read (`2024-01-01`, with ` 10:00`, `:00`,
/// `.123` and an offset `+05`, `+0530`, `+05:30` as they come): DuckDB's own
/// casts take more (zone names such as `EST`, which they then drop, `BC`),
/// and take different things from version to version, which would make a
/// view read by another DuckDB disagree with a table built here. Anything
/// else is no date-time. A missing seconds field is added for the same
/// reason (DuckDB 1.4 refuses `10:00+05:30`). `infinity` stays infinite.
fn instant(s: &str) -> String {
    let n = time_text(s);
    let iso = format!(
        "regexp_full_match({n}, '[0-9]{{4,}}-[0-9]{{2}}-[0-9]{{2}}\
         ( [0-9]{{1,2}}:[0-9]{{2}}(:[0-9]{{2}}([.][0-9]+)?)?)?( ?[+-][0-9]{{1,2}}(:?[0-9]{{2}})?)?')"
    );
    // `10:00` -> `10:00:00`, before an offset or at the end; no space
    // before the offset.
    let full = format!(
        "regexp_replace(regexp_replace({n}, '( [0-9]{{1,2}}:[0-9]{{2}})( ?[+-]|$)', '\\1:00\\2'), \
         ' ([+-][0-9]{{1,2}}(:?[0-9]{{2}})?)$', '\\1')"
    );
    let offset = TIME_OFFSET;
    let local = format!("TRY_CAST({full} AS TIMESTAMP)");
    format!(
        "CASE WHEN lower(trim({s})) IN ('infinity', '-infinity') \
         THEN TRY_CAST(trim({s}) AS TIMESTAMP WITH TIME ZONE) \
         WHEN NOT {iso} THEN NULL \
         WHEN regexp_matches({full}, '[0-9]:[0-9]{{2}}(:[0-9]{{2}})?([.][0-9]+)?{offset}') \
         THEN TRY_CAST({full} AS TIMESTAMP WITH TIME ZONE) \
         ELSE TRY_CAST({local}::VARCHAR || '+00' AS TIMESTAMP WITH TIME ZONE) END"
    )
}

/// A time zone offset at the end of a time text (`+02`, `-0530`, `+05:30`).
const TIME_OFFSET: &str = "\\s*[+-][0-9]{1,2}(:?[0-9]{2})?$";

/// Date-time or time text `s`, normalized for DuckDB's parser: a `Z`, `UTC`
/// or `GMT` suffix becomes `+00`, a `T`/`t` between date and time a space.
fn time_text(s: &str) -> String {
    format!(
        "regexp_replace(regexp_replace(trim({s}), '\\s*([Zz]|UTC|GMT)$', '+00'), \
         '^([0-9]{{4,}}-[0-9]{{2}}-[0-9]{{2}})[Tt ]\\s*', '\\1 ')"
    )
}

/// The SQL that types property `i` (its JSON value `_airbyte_v<i>`, text
/// `_airbyte_s<i>` and JSON type `_airbyte_t<i>`, all NULL when the property
/// is missing) as `ty`; NULL where the value does not fit.
fn cast(i: usize, ty: ColType) -> String {
    let v = format!("_airbyte_v{i}");
    let t = format!("_airbyte_t{i}");
    let s = format!("_airbyte_s{i}");
    let json_number = format!("{t} IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')");
    // Numeric text: DuckDB's casts also take digit separators (`1_000`),
    // which no JSON source means as a number.
    let numeric_text = format!("{t} = 'VARCHAR' AND NOT contains({s}, '_')");
    let n = time_text(&s);
    let offset = TIME_OFFSET;
    let is_string = format!("{t} = 'VARCHAR'");
    match ty {
        // Non-strings as their JSON text.
        ColType::Varchar => format!("CASE WHEN {t} <> 'NULL' THEN {s} END"),
        ColType::Boolean => format!(
            "CASE WHEN {t} = 'BOOLEAN' THEN {s} = 'true' WHEN {is_string} THEN \
             CASE lower(trim({s})) WHEN 'true' THEN true WHEN 'false' THEN false END END"
        ),
        ColType::Bigint => {
            let d = format!("TRY_CAST({s} AS DOUBLE)");
            format!(
                "CASE WHEN {json_number} OR ({numeric_text}) THEN CASE \
                 WHEN regexp_full_match(trim({s}), '[+-]?[0-9]+') THEN TRY_CAST(trim({s}) AS BIGINT) \
                 WHEN {d} = trunc({d}) AND abs({d}) < 9.223372036854775807e18 THEN CAST({d} AS BIGINT) END END"
            )
        }
        // A JSON number beyond DOUBLE's range (`1e400`) does not fit; the
        // strings "NaN" and "Infinity" are how sources send those values.
        ColType::Double => format!(
            "CASE WHEN {json_number} THEN CASE WHEN isinf(TRY_CAST({s} AS DOUBLE)) THEN NULL \
             ELSE TRY_CAST({s} AS DOUBLE) END \
             WHEN {numeric_text} THEN TRY_CAST(trim({s}) AS DOUBLE) END"
        ),
        ColType::Date => format!("CASE WHEN {is_string} THEN TRY_CAST(trim({s}) AS DATE) END"),
        ColType::Timestamp => {
            format!("CASE WHEN {is_string} THEN TRY_CAST({n} AS TIMESTAMP) END")
        }
        // Text without an offset is UTC, whatever the reading session's
        // time zone: the offset is added before the cast.
        ColType::Timestamptz => format!("CASE WHEN {is_string} THEN {} END", instant(&s)),
        ColType::Time => format!("CASE WHEN {is_string} THEN TRY_CAST({n} AS TIME) END"),
        ColType::Timetz => format!(
            "CASE WHEN {is_string} THEN CASE WHEN regexp_matches({n}, '{offset}') \
             THEN TRY_CAST({n} AS TIME WITH TIME ZONE) \
             ELSE TRY_CAST(TRY_CAST({n} AS TIME)::VARCHAR || '+00' AS TIME WITH TIME ZONE) END END"
        ),
        ColType::Json => format!("CASE WHEN {t} <> 'NULL' THEN {v} END"),
        ColType::JsonObject => format!("CASE WHEN {t} = 'OBJECT' THEN {v} END"),
        ColType::JsonArray => format!("CASE WHEN {t} = 'ARRAY' THEN {v} END"),
    }
}

/// Creates the registry table (idempotent).
pub fn create_registry(session: &Session) -> Result<()> {
    let registry = internal::qualified(TYPED_RELATIONS);
    session
        .execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}; \
             CREATE TABLE IF NOT EXISTS {registry} \
             (stream_key VARCHAR, schema_name VARCHAR, relation_name VARCHAR, \
              columns VARCHAR, kind VARCHAR, table_columns VARCHAR, \
              watermark BIGINT, watermark_count BIGINT, \
              updated_at TIMESTAMP WITH TIME ZONE DEFAULT current_timestamp, \
              definition VARCHAR); \
             ALTER TABLE {registry} ADD COLUMN IF NOT EXISTS definition VARCHAR",
            qualified_schema(internal::SCHEMA)
        ))
        .context("creating the typed relation registry")
}

/// The typed relation names recorded in a schema (lowercase), so that raw
/// tables never take them.
pub fn recorded_names(session: &Session) -> Result<HashSet<(String, String)>> {
    create_registry(session)?;
    Ok(session.query_pairs(&format!(
        "SELECT lower(schema_name), lower(relation_name) FROM {}",
        internal::qualified(TYPED_RELATIONS)
    ))?)
}

/// Resolves every stream's typed relation (name and columns), records it,
/// and brings the database in line with `mode`: views are (re)created now;
/// tables are built by [`materialise`] at the end of the sync; `off` drops
/// what this connector made.
pub fn prepare(session: &Session, streams: &[Stream], mode: TypedOutput) -> Result<Vec<Typed>> {
    create_registry(session)?;
    let rows = session.query(&format!(
        "SELECT stream_key, lower(schema_name), relation_name, columns, kind, table_columns, \
         watermark, watermark_count, definition FROM {}",
        internal::qualified(TYPED_RELATIONS)
    ))?;
    let mut known: HashMap<(String, String), Typed> = HashMap::new();
    // Names no new relation may take, per schema (lowercase).
    let mut taken: HashSet<(String, String)> = HashSet::new();
    for row in rows {
        let [Some(key), Some(schema), Some(name), columns, kind, table_columns, wm, wm_count, definition] =
            &row[..]
        else {
            continue;
        };
        taken.insert((schema.clone(), name.to_lowercase()));
        let watermark = match (wm, wm_count) {
            (Some(a), Some(b)) => a.parse().ok().zip(b.parse().ok()),
            _ => None,
        };
        known.insert(
            (key.clone(), schema.clone()),
            Typed {
                name: name.clone(),
                columns: columns
                    .as_deref()
                    .and_then(columns_from_json)
                    .unwrap_or_default(),
                kind: kind.clone(),
                table_columns: table_columns.as_deref().and_then(columns_from_json),
                watermark,
                definition: definition.clone(),
            },
        );
    }
    for (schema, table) in session.query_pairs(&format!(
        "SELECT lower(schema_name), lower(table_name) FROM {}",
        internal::qualified(STREAM_TABLES)
    ))? {
        taken.insert((schema.clone(), internal::staging_of(&table)));
        taken.insert((schema, table));
    }
    // Tables and views someone else made are never replaced.
    let mut views: HashSet<(String, String)> = HashSet::new();
    for row in session.query(&format!(
        "SELECT lower(schema_name), lower(table_name), false FROM duckdb_tables() WHERE database_name = '{CATALOG}' \
         UNION ALL SELECT lower(schema_name), lower(view_name), true FROM duckdb_views() \
         WHERE database_name = '{CATALOG}' AND NOT internal"
    ))? {
        if let [Some(schema), Some(name), Some(is_view)] = &row[..] {
            if is_view == "true" {
                views.insert((schema.clone(), name.clone()));
            }
            taken.insert((schema.clone(), name.clone()));
        }
    }

    let mut order: Vec<usize> = (0..streams.len()).collect();
    order.sort_by(|&a, &b| {
        (&streams[a].namespace, &streams[a].name).cmp(&(&streams[b].namespace, &streams[b].name))
    });
    let mut out: Vec<Option<Typed>> = vec![None; streams.len()];
    // One transaction for all streams: one commit, however many there are.
    in_transaction(session, || {
        for i in order {
            let s = &streams[i];
            let key = (stream_key(s), s.schema.to_lowercase());
            let (mut typed, recorded) = match known.remove(&key) {
                Some(t) => (t.clone(), Some(t)),
                None => {
                    let name = allocate(s, &mut taken);
                    let t = Typed {
                        name,
                        columns: Vec::new(),
                        kind: None,
                        table_columns: None,
                        watermark: None,
                        definition: None,
                    };
                    (t, None)
                }
            };
            typed.columns = merge_columns(&typed.columns, &schema_properties(&s.json_schema));
            let exists = views.contains(&(s.schema.to_lowercase(), typed.name.to_lowercase()));
            apply(session, s, &mut typed, mode, exists)
                .with_context(|| format!("preparing the typed relation of stream {}", s.label()))?;
            if recorded.as_ref() != Some(&typed) {
                record(session, s, &typed)?;
            }
            out[i] = Some(typed);
        }
        Ok(())
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
    let name = free_name(&plain, s, |n| {
        n.is_empty() || taken.contains(&(schema.clone(), n.to_lowercase()))
    });
    if name != plain {
        tracing::warn!(stream = %s.label(), relation = %name, "the typed relation's plain name is taken; using a suffixed name");
    }
    taken.insert((schema, name.to_lowercase()));
    name
}

fn relation(s: &Stream, t: &Typed) -> String {
    qualified(&s.schema, &t.name)
}

/// Where a materialised dedup table keeps the keys whose latest row is a
/// CDC delete (that row, typed), so that a later row only brings a key back
/// if it beats the delete.
fn tombstones(s: &Stream, t: &Typed) -> String {
    internal::qualified(&internal::tombstones(&s.schema, &t.name))
}

fn drop_existing(session: &Session, s: &Stream, t: &Typed) -> Result<()> {
    session.execute(&format!(
        "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}",
        tombstones(s, t),
        internal::qualified(&internal::legacy_tombstones(&s.schema, &t.name))
    ))?;
    match t.kind.as_deref() {
        Some("view") => session.execute(&format!("DROP VIEW IF EXISTS {}", relation(s, t)))?,
        Some("table") => session.execute(&format!("DROP TABLE IF EXISTS {}", relation(s, t)))?,
        _ => {}
    }
    Ok(())
}

fn record(session: &Session, s: &Stream, t: &Typed) -> Result<()> {
    let opt = |v: Option<String>| v.map_or("NULL".to_string(), |v| literal(&v));
    session.execute(&format!(
        "DELETE FROM {registry} WHERE stream_key = {key} \
         AND lower(schema_name) = lower({schema}); \
         INSERT INTO {registry} \
         (stream_key, schema_name, relation_name, columns, kind, table_columns, watermark, \
          watermark_count, definition) \
         VALUES ({key}, {schema}, {name}, {columns}, {kind}, {table_columns}, {wm}, {wm_count}, {definition})",
        key = literal(&stream_key(s)),
        schema = literal(&s.schema),
        name = literal(&t.name),
        columns = literal(&columns_to_json(&t.columns)),
        kind = opt(t.kind.clone()),
        table_columns = opt(t.table_columns.as_deref().map(columns_to_json)),
        wm = t.watermark.map_or("NULL".to_string(), |w| w.0.to_string()),
        wm_count = t.watermark.map_or("NULL".to_string(), |w| w.1.to_string()),
        definition = opt(t.definition.clone()),
        registry = internal::qualified(TYPED_RELATIONS),
    ))?;
    Ok(())
}

fn in_transaction(session: &Session, work: impl FnOnce() -> Result<()>) -> Result<()> {
    let txn = session.begin()?;
    work()?;
    txn.commit().context("committing")
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
) -> Result<()> {
    match mode {
        TypedOutput::Views => {
            let q = Query::new(s, &t.columns, true);
            let sql = q.relation();
            let definition = format!("{:016x}", fnv1a64(sql.as_bytes()));
            if t.kind.as_deref() == Some("view")
                && t.definition.as_deref() == Some(&definition)
                && view_exists
            {
                return Ok(());
            }
            if t.kind.as_deref() != Some("view") {
                drop_existing(session, s, t)?;
            }
            session.execute(&format!(
                "CREATE OR REPLACE VIEW {} AS {sql}",
                relation(s, t)
            ))?;
            tracing::info!(stream = %s.label(), view = %relation(s, t), "typed view created");
            t.kind = Some("view".into());
            t.definition = Some(definition);
            t.table_columns = None;
            t.watermark = None;
        }
        // Built at the end of the sync.
        TypedOutput::Tables => {}
        TypedOutput::Off => {
            drop_existing(session, s, t)?;
            t.kind = None;
            t.definition = None;
            t.table_columns = None;
            t.watermark = None;
        }
    }
    Ok(())
}

/// Brings a stream's typed table up to date with its raw table: new raw
/// rows are typed and appended (or, for `append_dedup`, merged by key);
/// the table is rebuilt whole when its columns changed, when the raw table
/// was replaced (`rebuild`, after an overwrite), or when raw rowids moved.
pub fn materialise(
    session: &Session,
    s: &Stream,
    t: &mut Typed,
    rebuild: bool,
    tables: &HashSet<(String, String)>,
) -> Result<&'static str> {
    let mut next = t.clone();
    let columns = next.columns.clone();
    let q = Query::new(s, &columns, false);
    let raw = qualified(&s.schema, &s.table);
    let rel = relation(s, &next);
    let mut how = "rebuilt";
    in_transaction(session, || {
        let (max_rowid, count, below) = {
            let wm = next.watermark.map_or(-1, |w| w.0);
            let row = session.query(&format!(
                "SELECT coalesce(max(rowid), -1), count(*), count(*) FILTER (WHERE rowid <= {wm}) FROM {raw}"
            ))?;
            let get = |i: usize| -> i64 {
                row.first()
                    .and_then(|r| r.get(i).cloned().flatten())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            (get(0), get(1), get(2))
        };
        // A table (or its tombstones) dropped by hand is rebuilt.
        let present = tables.contains(&(s.schema.to_lowercase(), next.name.to_lowercase()))
            && (!s.dedup
                || tables.contains(&(
                    internal::SCHEMA.to_string(),
                    internal::tombstones(&s.schema, &next.name).to_lowercase(),
                )));
        let full = rebuild
            || !present
            || next.kind.as_deref() != Some("table")
            || next.table_columns.as_deref() != Some(&next.columns[..])
            || next.watermark.is_none_or(|(_, c)| c != below)
            || (s.dedup && !q.keys_are_columns());
        let out = q.output_columns();
        if full {
            drop_existing(session, s, &next)?;
            let rows = q.typed_rows(None);
            if s.dedup {
                let latest = q.latest(&rows, "_airbyte_raw_rowid");
                store_latest(session, &q, &latest, &rel, &tombstones(s, &next), true)?;
            } else {
                session.execute(&format!("CREATE TABLE {rel} AS SELECT {out} FROM ({rows})"))?;
            }
        } else {
            let after = next.watermark.map(|w| w.0);
            how = if s.dedup { "merged" } else { "appended" };
            if !s.dedup {
                session.execute(&format!(
                    "INSERT INTO {rel} ({out}) SELECT {out} FROM ({})",
                    q.typed_rows(after)
                ))?;
            } else {
                merge(session, &q, &rel, &tombstones(s, &next), after)?;
            }
        }
        next.kind = Some("table".into());
        next.definition = None;
        next.table_columns = Some(next.columns.clone());
        // Rows at or below the watermark now: all of them.
        next.watermark = Some((max_rowid, count));
        record(session, s, &next)
    })
    .with_context(|| format!("refreshing the typed table {rel}"))?;
    *t = next;
    Ok(how)
}

/// Merges the raw rows after `after` into a deduplicated table: the new
/// rows compete with the table's rows and the tombstones of the same keys;
/// each key's winner goes to the table, or to the tombstones if it is a
/// CDC delete.
fn merge(
    session: &Session,
    q: &Query<'_>,
    rel: &str,
    tombs: &str,
    after: Option<i64>,
) -> Result<()> {
    let work_new = Work::New.qualified();
    let work_all = Work::All.qualified();
    let out = q.output_columns();
    let keys: Vec<String> = q.keys().iter().map(|(k, _)| key_sql(k)).collect();
    let same_key = keys
        .iter()
        .map(|k| format!("n.{k} IS NOT DISTINCT FROM t.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let key_aliases = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} AS _airbyte_k{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let matching = format!("EXISTS (SELECT 1 FROM {work_new} n WHERE {same_key})");
    session.execute(&format!(
        "CREATE OR REPLACE TABLE {work_new} AS SELECT {out}, _airbyte_deleted, \
         _airbyte_raw_rowid AS _airbyte_seq FROM ({rows}); \
         CREATE OR REPLACE TABLE {work_all} AS \
         SELECT {out}, _airbyte_deleted, _airbyte_seq FROM {work_new} UNION ALL \
         SELECT {out}, false, -1 FROM {rel} t WHERE {matching} UNION ALL \
         SELECT {out}, true, -1 FROM {tombs} t WHERE {matching}; \
         DELETE FROM {rel} t WHERE {matching}; \
         DELETE FROM {tombs} t WHERE {matching}",
        rows = q.typed_rows(after),
    ))?;
    let latest = q.latest(
        &format!(
            "SELECT *, {key_aliases}, {} FROM {work_all}",
            q.cursor_keys()
        ),
        "_airbyte_seq",
    );
    store_latest(session, q, &latest, rel, tombs, false)?;
    session.execute(&format!("DROP TABLE {work_new}; DROP TABLE {work_all}"))?;
    Ok(())
}

/// Computes `latest` (one row per key) once into a work table, then puts
/// the live rows into `rel` and the CDC deletes into `tombs`, creating
/// them (`create`) or adding to them.
fn store_latest(
    session: &Session,
    q: &Query<'_>,
    latest: &str,
    rel: &str,
    tombs: &str,
    create: bool,
) -> Result<()> {
    let work = Work::Latest.qualified();
    let out = q.output_columns();
    let put = |target: &str, which: &str| {
        let select = format!("SELECT {out} FROM {work} WHERE {which}_airbyte_deleted");
        if create {
            format!("CREATE TABLE {target} AS {select}")
        } else {
            format!("INSERT INTO {target} ({out}) {select}")
        }
    };
    session.execute(&format!(
        "CREATE OR REPLACE TABLE {work} AS SELECT {out}, _airbyte_deleted FROM ({latest}); \
         {}; {}; DROP TABLE {work}",
        put(rel, "NOT "),
        put(tombs, ""),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn airbyte_type_rules() {
        let cases = [
            (json!({"type": "string"}), ColType::Varchar),
            (json!({"type": ["null", "integer"]}), ColType::Bigint),
            (
                json!({"type": "number", "airbyte_type": "integer"}),
                ColType::Bigint,
            ),
            (json!({"type": "number"}), ColType::Double),
            (json!({"type": "string", "format": "date"}), ColType::Date),
            (
                json!({"type": "string", "format": "date-time"}),
                ColType::Timestamptz,
            ),
            (
                json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"}),
                ColType::Timestamp,
            ),
            (json!({"type": "string", "format": "time"}), ColType::Timetz),
            (
                json!({"type": "string", "format": "time", "airbyte_type": "time_without_timezone"}),
                ColType::Time,
            ),
            (json!({"type": "object"}), ColType::JsonObject),
            (json!({"type": ["array"]}), ColType::JsonArray),
            (json!({"type": ["string", "integer"]}), ColType::Json),
            (json!({"type": ["integer", "number"]}), ColType::Double),
            (
                json!({"oneOf": [{"type": "string"}, {"type": "null"}]}),
                ColType::Varchar,
            ),
            (
                json!({"$ref": "WellKnownTypes.json#/definitions/Integer"}),
                ColType::Bigint,
            ),
            (
                json!({"$ref": "WellKnownTypes.json#/definitions/BinaryData"}),
                ColType::Varchar,
            ),
            (
                json!({"$ref": "WellKnownTypes.json#/definitions/Nope"}),
                ColType::Json,
            ),
            (json!({"type": "null"}), ColType::Json),
            (json!({}), ColType::Json),
            (json!(true), ColType::Json),
        ];
        for (schema, want) in cases {
            assert_eq!(column_type(&schema), want, "{schema}");
        }
    }

    #[test]
    fn column_names_are_stable_and_unique() {
        let first = merge_columns(
            &[],
            &[
                ("Name".into(), ColType::Varchar),
                ("_airbyte_ab_id".into(), ColType::Varchar),
                ("id".into(), ColType::Bigint),
                ("name".into(), ColType::Varchar),
            ],
        );
        let names: Vec<&str> = first.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Name", "__airbyte_ab_id", "id", "name_1"]);
        let second = merge_columns(
            &first,
            &[
                ("id".into(), ColType::Double),
                ("NAME".into(), ColType::Varchar),
            ],
        );
        assert_eq!(second[2].ty, ColType::Double);
        assert_eq!(second[4].name, "NAME_2");
        assert_eq!(second.len(), 5, "columns that left the schema stay");
    }

    #[test]
    fn pointers_escape() {
        assert_eq!(pointer(&["a/b~c'd".to_string()]), "'/a~1b~0c''d'");
    }
}
