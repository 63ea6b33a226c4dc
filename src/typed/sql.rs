//! The SQL of a typed relation: [`Query`] builds the typed rows of a raw
//! table, the deduplicated latest row per key, and the helper columns the
//! refresh merges on; [`cast`] types one JSON value; the cursor order
//! (`cursor_order`, `json_order`) ranks cursor values so views
//! and tables agree whatever the schema says. Pure text: nothing here
//! touches the database, and the text is what view definitions are hashed
//! by, so it changes only on purpose.

use std::sync::OnceLock;

use super::types::{ColType, Column, CDC_DELETED_AT, META_COLUMNS};
use crate::catalog::Stream;
use crate::internal;
use crate::names::{literal, qualified, quote};

use super::text;

/// A JSON pointer (RFC 6901) to a property path, as an SQL literal.
fn pointer(path: &[String]) -> String {
    let mut p = String::new();
    for part in path {
        p.push('/');
        p.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    literal(&p)
}

/// A typing rule that the SQL calls by name: a DuckDB macro in the
/// internal schema, made by [`create_rules`] before any typed SQL runs.
///
/// Written out, the rules made every view many kilobytes of SQL, which
/// DuckDB keeps, stores as a much larger tree, and writes again with the
/// whole catalog at every checkpoint (`bench/README.md`, "Measurements
/// behind settings in the code", "Typing rules as macros"). Called by name,
/// a view holds the calls only. A macro is expanded where
/// it is called, so what a query computes is the same. Inside a view the
/// call names the schema only: DuckDB binds it in the view's own catalog,
/// as it does the raw table, whatever name a client attaches the file by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rule {
    /// Types a value as a column of this type (only the types whose rule
    /// is too long to write out, see [`Rule::casting`]).
    Cast(ColType),
    /// The property's name if its value was present, not null, and did
    /// not fit its column; else NULL.
    Nulled,
    /// `_airbyte_meta` with the NULLED changes of a list of properties.
    Meta,
    /// The literal text of the number at a JSON pointer of a document
    /// (see `text::numbers_as_strings`).
    Literal,
    InstantNumber,
    OrderRank,
    OrderNumber,
    OrderExact,
    OrderText,
}

/// A rule as it is made in the file: its macro's name, and the definition
/// that name's hash is taken of, `(params) AS (body)`.
struct Made {
    rule: Rule,
    name: String,
    definition: String,
}

impl Rule {
    /// Every rule, each with its macro's name: the rule's, and a hash of its
    /// definition, so that a rule never changes under a name. A version of
    /// this connector that types a value otherwise makes a macro of a new
    /// name, and the views it makes call that one (their text changes, so
    /// they are made again), while views it leaves keep the rules they were
    /// made with.
    fn all() -> &'static [Made] {
        static RULES: OnceLock<Vec<Made>> = OnceLock::new();
        RULES.get_or_init(|| {
            ColType::ALL
                .into_iter()
                .filter_map(Rule::casting)
                .chain([
                    Rule::Nulled,
                    Rule::Meta,
                    Rule::Literal,
                    Rule::InstantNumber,
                    Rule::OrderRank,
                    Rule::OrderNumber,
                    Rule::OrderExact,
                    Rule::OrderText,
                ])
                .map(|rule| {
                    let (params, body) = rule.definition();
                    let definition = format!("({}) AS ({body})", params.join(", "));
                    let hash = internal::fnv1a64(definition.as_bytes());
                    Made {
                        rule,
                        name: format!("{}_{hash:016x}", rule.name()),
                        definition,
                    }
                })
                .collect()
        })
    }

    /// The rule that types a column of `ty`, unless it is short enough to
    /// write out.
    fn casting(ty: ColType) -> Option<Rule> {
        match ty {
            ColType::Varchar | ColType::Json | ColType::JsonObject | ColType::JsonArray => None,
            _ => Some(Rule::Cast(ty)),
        }
    }

    /// The macro's name (see [`Rule::all`]).
    fn macro_name(self) -> &'static str {
        &Rule::all()
            .iter()
            .find(|made| made.rule == self)
            .expect("every rule is in all()")
            .name
    }

    fn name(self) -> &'static str {
        match self {
            Rule::Cast(ColType::Boolean) => "boolean",
            Rule::Cast(ColType::Bigint) => "bigint",
            Rule::Cast(ColType::Double) => "double",
            Rule::Cast(ColType::Date) => "date",
            Rule::Cast(ColType::Timestamp) => "timestamp",
            Rule::Cast(ColType::Timestamptz) => "timestamptz",
            Rule::Cast(ColType::Time) => "time",
            Rule::Cast(ColType::Timetz) => "timetz",
            Rule::Cast(ty) => unreachable!("{ty:?} is written out (Rule::casting)"),
            Rule::Nulled => "nulled",
            Rule::Meta => "meta",
            Rule::Literal => "literal",
            Rule::InstantNumber => "instant_number",
            Rule::OrderRank => "order_rank",
            Rule::OrderNumber => "order_number",
            Rule::OrderExact => "order_exact",
            Rule::OrderText => "order_text",
        }
    }

    /// The macro's parameters, and its body over them.
    fn definition(self) -> (&'static [&'static str], String) {
        match self {
            // The value itself is only read by the written-out rules.
            Rule::Cast(ColType::Bigint) => (
                &["t", "s", "l"],
                cast_body("NULL", "t", "s", "l", ColType::Bigint),
            ),
            Rule::Cast(ty) => (&["t", "s"], cast_body("NULL", "t", "s", "NULL", ty)),
            Rule::Literal => (
                &["d", "p"],
                format!("json_extract_string({}, p)", text::numbers_as_strings("d")),
            ),
            Rule::Nulled => (
                &["t", "typed", "property"],
                "CASE WHEN t <> 'NULL' AND typed IS NULL THEN property END".to_string(),
            ),
            Rule::Meta => (&["meta", "nulled"], meta_body("meta", "nulled")),
            Rule::InstantNumber => (&["i"], instant_number("i")),
            Rule::OrderRank | Rule::OrderNumber | Rule::OrderExact | Rule::OrderText => {
                let [rank, number, exact, text] = json_order_body("v");
                let body = match self {
                    Rule::OrderRank => rank,
                    Rule::OrderNumber => number,
                    Rule::OrderExact => exact,
                    _ => text,
                };
                (&["v"], body)
            }
        }
    }
}

/// Where typed SQL runs, which decides how it names a rule: a statement
/// names it in full, as every statement names its objects (the session's
/// default catalog is DuckDB's own); a view by schema and name only, so it
/// binds in the view's own catalog whatever name a client attaches the file
/// by, as the view's raw table does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    Statement,
    View,
}

/// A call of `rule` on `args` (SQL expressions).
fn call(scope: Scope, rule: Rule, args: &[&str]) -> String {
    let name = rule.macro_name();
    let name = match scope {
        Scope::Statement => internal::typing_rule(name),
        Scope::View => internal::typing_rule_in_view(name),
    };
    format!("{name}({})", args.join(", "))
}

/// The statements that make every [`Rule`]'s macro that is missing (a
/// macro never changes under its name, see [`Rule::macro_name`]): run
/// before any typed SQL (see `typed::prepare`).
pub(super) fn create_rules() -> String {
    Rule::all()
        .iter()
        .map(|made| {
            format!(
                "CREATE MACRO IF NOT EXISTS {}{};\n",
                internal::typing_rule(&made.name),
                made.definition
            )
        })
        .collect()
}

/// `meta` (a record's `_airbyte_meta`) with a NULLED change for each
/// property named in `nulled` (a list, NULL where the value fit), after
/// the changes the source recorded.
fn meta_body(meta: &str, nulled: &str) -> String {
    let names = format!("list_filter({nulled}, lambda x: x IS NOT NULL)");
    let new = format!(
        "to_json(list_transform({names}, lambda x: {{'field': x, 'change': 'NULLED', \
         'reason': 'DESTINATION_TYPECAST_ERROR'}}))::VARCHAR"
    );
    // The recorded changes (if an array) followed by the new ones. (In a
    // macro DuckDB reads `->` as a lambda, hence `json_extract`.)
    let old = format!(
        "coalesce(CASE WHEN json_type(json_extract({meta}, '$.changes')) = 'ARRAY' \
         THEN json_extract({meta}, '$.changes')::VARCHAR END, '[]')"
    );
    format!(
        "CASE WHEN len({names}) > 0 THEN json_merge_patch(coalesce({meta}, '{{}}'), \
         json_object('changes', (CASE WHEN {old} = '[]' THEN {new} \
         ELSE substr({old}, 1, length({old}) - 1) || ',' || substr({new}, 2) END)::JSON)) \
         ELSE {meta} END"
    )
}

/// The SQL aliases a merge compares rows under: the rows coming in, and the
/// rows a typed table (or its tombstones) already holds. A typed column
/// never starts with `_airbyte_` (`types::merge_columns`), so no column can
/// shadow them, where a short alias could: in `SELECT 1 FROM staged n WHERE
/// n.id = o.id`, a JSON column `o` of `staged` turns `o.id` into a field
/// of that column instead of the outer table `o`.
pub(super) const INCOMING: &str = "_airbyte_incoming";
pub(super) const STORED: &str = "_airbyte_stored";

/// A stream's typed relation, as SQL.
pub(super) struct Query<'a> {
    stream: &'a Stream,
    columns: &'a [Column],
    /// How the raw table is named in the SQL: fully qualified in statements;
    /// by its name alone inside a view's definition, which DuckDB binds in
    /// the view's own schema and catalog. So the view still resolves when a
    /// client opens the file under its own catalog name, even one that
    /// equals a schema name (`sales.duckdb` with a schema `sales`).
    raw: String,
    /// What orders the rows by arrival (`_airbyte_raw_rowid` in the typed
    /// rows): the raw table's rowid, or a pending table's `_airbyte_seq`.
    seq: &'static str,
    /// How the SQL names the typing rules.
    scope: Scope,
}

/// Key and cursor expressions of a dedup relation: a typed column where the
/// path is a top-level property, else the raw JSON at the path (its text
/// for keys, its JSON value for the cursor).
pub(super) enum KeyExpr {
    Column(String, ColType),
    Raw(usize),
}

impl<'a> Query<'a> {
    /// The query behind a view (`in_view`) or a statement.
    pub(super) fn new(stream: &'a Stream, columns: &'a [Column], in_view: bool) -> Self {
        let raw = if in_view {
            quote(&stream.table)
        } else {
            qualified(&stream.schema, &stream.table)
        };
        Query {
            stream,
            columns,
            raw,
            seq: "rowid",
            scope: if in_view {
                Scope::View
            } else {
                Scope::Statement
            },
        }
    }

    /// The query over `source` (qualified), a table of the raw layout with
    /// an `_airbyte_seq` column giving the arrival order: the records typed
    /// by SQL while their stream's typed rows are appended (see `inline`).
    pub(super) fn over_pending(stream: &'a Stream, columns: &'a [Column], source: String) -> Self {
        Query {
            stream,
            columns,
            raw: source,
            seq: "_airbyte_seq",
            scope: Scope::Statement,
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

    pub(super) fn keys(&self) -> Vec<(KeyExpr, &[String])> {
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

    /// The key expressions of a dedup relation's rows (see [`key_sql`]).
    pub(super) fn key_columns(&self) -> Vec<String> {
        self.keys().iter().map(|(k, _)| key_sql(k)).collect()
    }

    /// The condition that an [`INCOMING`] row and a [`STORED`] row have the
    /// same key, NULL parts matching NULL.
    pub(super) fn same_key(&self) -> String {
        self.key_columns()
            .iter()
            .map(|k| format!("{INCOMING}.{k} IS NOT DISTINCT FROM {STORED}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Whether every key and the cursor are typed columns whose values are
    /// compared as what they mean, not as JSON text: a JSON column holds a
    /// value's text as written, which DuckDB's typing rewrites (`1.50` as
    /// `1.5`), so two rows of one key could differ in it.
    pub(super) fn keys_are_plain_columns(&self) -> bool {
        let plain = |k: &KeyExpr| {
            matches!(k, KeyExpr::Column(_, ty)
                if !matches!(ty, ColType::Json | ColType::JsonObject | ColType::JsonArray))
        };
        self.keys().iter().all(|(k, _)| plain(k)) && self.cursor().is_none_or(|(k, _)| plain(&k))
    }

    /// Whether every key and the cursor are typed columns (the condition for
    /// merging new rows into a table without rereading the raw table).
    pub(super) fn keys_are_columns(&self) -> bool {
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
    ///
    /// Built in levels, each a `SELECT` over the one before, because a
    /// level reads the columns the one below names: raw values, then typed
    /// values, then the metadata (with the values that did not fit) and
    /// helpers.
    pub(super) fn typed_rows(&self, after: Option<i64>) -> String {
        let l1 = self.raw_values(after);
        let l2 = self.typed_values(&l1);
        self.with_helpers(&l2)
    }

    /// Level 1: the raw values of every property (`_airbyte_v<i>` as JSON,
    /// `_airbyte_s<i>` as text, `_airbyte_t<i>` its JSON type) and of keys
    /// and a cursor that are no typed column (`_airbyte_r<slot>`).
    fn raw_values(&self, after: Option<i64>) -> String {
        let mut l1 = vec![
            format!("{} AS _airbyte_raw_rowid", self.seq),
            "_airbyte_ab_id, _airbyte_emitted_at, _airbyte_meta, _airbyte_generation_id"
                .to_string(),
        ];
        if self.columns.iter().any(|c| c.ty == ColType::Bigint) {
            l1.push("_airbyte_data".to_string());
        }
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
                // A NUL cannot be written in SQL text: no such path matches.
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
        for (i, c) in self.columns.iter().enumerate() {
            let n = i + 1;
            l1b.push(format!(
                "_airbyte_values[{n}] AS _airbyte_v{i}, _airbyte_strings[{n}] AS _airbyte_s{i}, \
                 _airbyte_types[{n}] AS _airbyte_t{i}"
            ));
            // An integer column reads a number with a fraction or an
            // exponent from its literal text, which DuckDB's JSON reader
            // does not keep (it holds the number as a DOUBLE).
            if c.ty == ColType::Bigint {
                let literal = call(
                    self.scope,
                    Rule::Literal,
                    &["_airbyte_data", &pointer(std::slice::from_ref(&c.property))],
                );
                l1b.push(format!(
                    "CASE WHEN _airbyte_types[{n}] = 'DOUBLE' THEN {literal} END AS _airbyte_l{i}"
                ));
            }
        }
        format!("SELECT {} FROM ({l1})", l1b.join(", "))
    }

    /// Level 2: each property cast to its column, under the column's name.
    fn typed_values(&self, l1: &str) -> String {
        let mut l2 = vec!["*".to_string()];
        for (i, c) in self.columns.iter().enumerate() {
            l2.push(format!(
                "{} AS {}",
                cast(self.scope, i, c.ty),
                quote(&c.name)
            ));
        }
        format!("SELECT {} FROM ({l1})", l2.join(", "))
    }

    /// Level 3: the output columns, `_airbyte_meta` with the cast errors
    /// added, and the key, cursor and delete helpers.
    fn with_helpers(&self, l2: &str) -> String {
        let mut l3 = vec![
            "_airbyte_raw_rowid".to_string(),
            "_airbyte_ab_id".to_string(),
            "_airbyte_emitted_at".to_string(),
            format!("({})::JSON AS _airbyte_meta", self.meta()),
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

    /// `_airbyte_meta` with a NULLED change per value that did not fit,
    /// after the changes the source recorded (see [`meta_body`]).
    fn meta(&self) -> String {
        if self.columns.is_empty() {
            return "_airbyte_meta".to_string();
        }
        let nulled: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                call(
                    self.scope,
                    Rule::Nulled,
                    &[
                        &format!("_airbyte_t{i}"),
                        &quote(&c.name),
                        &literal(&c.property),
                    ],
                )
            })
            .collect();
        call(
            self.scope,
            Rule::Meta,
            &["_airbyte_meta", &format!("[{}]", nulled.join(", "))],
        )
    }

    /// The output columns, quoted and comma separated.
    pub(super) fn output_columns(&self) -> String {
        META_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain(self.columns.iter().map(|c| quote(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The cursor's order keys `_airbyte_cr` (rank), `_airbyte_cn`
    /// (number) and `_airbyte_cs` (text), all NULL without a cursor value.
    pub(super) fn cursor_keys(&self) -> String {
        let [rank, number, exact, text] = match self.cursor() {
            None => [
                "NULL".to_string(),
                "NULL".to_string(),
                "NULL".to_string(),
                "NULL".to_string(),
            ],
            Some((k, _)) => cursor_order(self.scope, &k),
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
    pub(super) fn relation(&self) -> String {
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
    pub(super) fn latest(&self, rows: &str, seq: &str) -> String {
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
fn cursor_order(scope: Scope, k: &KeyExpr) -> [String; 4] {
    let null = || "NULL".to_string();
    match k {
        KeyExpr::Raw(slot) => json_order(scope, &format!("_airbyte_r{slot}")),
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
                ColType::Timestamptz => {
                    known(3, call(scope, Rule::InstantNumber, &[&c]), null(), null())
                }
                ColType::Date | ColType::Timestamp => known(
                    3,
                    call(scope, Rule::InstantNumber, &[&format!("{c}::TIMESTAMP")]),
                    null(),
                    null(),
                ),
                // Times carry no date: their text sorts as they do.
                ColType::Time | ColType::Timetz => {
                    known(4, null(), null(), format!("{c}::VARCHAR"))
                }
                // A string column holds text (a number sent to it anyway is
                // its JSON text): ordered as a JSON string.
                ColType::Varchar => json_order(scope, &format!("to_json({c})")),
                ColType::Json | ColType::JsonObject | ColType::JsonArray => json_order(scope, &c),
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
fn json_order(scope: Scope, v: &str) -> [String; 4] {
    [
        call(scope, Rule::OrderRank, &[v]),
        call(scope, Rule::OrderNumber, &[v]),
        call(scope, Rule::OrderExact, &[v]),
        call(scope, Rule::OrderText, &[v]),
    ]
}

/// The four parts of [`json_order`] as SQL over `v`.
fn json_order_body(v: &str) -> [String; 4] {
    let t = format!("json_type({v})");
    let s = format!("({v} ->> '$')");
    // Written out, not called: no rule calls another (see
    // `rules_call_no_rule_and_every_rule_is_made`).
    let instant = text::date_time(&s, true);
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

/// The SQL that types property `i` (its JSON value `_airbyte_v<i>`, text
/// `_airbyte_s<i>` and JSON type `_airbyte_t<i>`, all NULL when the property
/// is missing) as `ty`; NULL where the value does not fit. The short rules
/// are written out; the others are called by name (see [`Rule`]).
fn cast(scope: Scope, i: usize, ty: ColType) -> String {
    let v = format!("_airbyte_v{i}");
    let t = format!("_airbyte_t{i}");
    let s = format!("_airbyte_s{i}");
    let l = format!("_airbyte_l{i}");
    match Rule::casting(ty) {
        Some(rule @ Rule::Cast(ColType::Bigint)) => call(scope, rule, &[&t, &s, &l]),
        Some(rule) => call(scope, rule, &[&t, &s]),
        None => cast_body(&v, &t, &s, &l, ty),
    }
}

/// [`cast`] written out over the value `v`, its text `s`, its JSON type
/// `t`, and for a BIGINT column `l`, the literal text of a number DuckDB's
/// JSON reader holds as a DOUBLE (see [`Query::raw_values`]). What text
/// each type accepts is [`text`]'s.
fn cast_body(v: &str, t: &str, s: &str, l: &str, ty: ColType) -> String {
    let json_number = format!("{t} IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')");
    let is_string = format!("{t} = 'VARCHAR'");
    match ty {
        // Non-strings as their JSON text.
        ColType::Varchar => format!("CASE WHEN {t} <> 'NULL' THEN {s} END"),
        ColType::Boolean => format!(
            "CASE WHEN {t} = 'BOOLEAN' THEN {s} = 'true' WHEN {is_string} THEN \
             CASE lower(trim({s})) WHEN 'true' THEN true WHEN 'false' THEN false END END"
        ),
        // An integer's text is exact; a number with a fraction or an
        // exponent is read from its literal, never through a DOUBLE.
        ColType::Bigint => format!(
            "CASE WHEN {t} IN ('BIGINT', 'UBIGINT', 'HUGEINT') THEN TRY_CAST({s} AS BIGINT) \
             WHEN {t} = 'DOUBLE' THEN {} WHEN {is_string} THEN {} END",
            text::integer(l),
            text::integer(&format!("trim({s})"))
        ),
        // A JSON number beyond DOUBLE's range (`1e400`) does not fit; the
        // strings "NaN" and "Infinity" are how sources send those values.
        ColType::Double => format!(
            "CASE WHEN {json_number} THEN CASE WHEN isinf(TRY_CAST({s} AS DOUBLE)) THEN NULL \
             ELSE TRY_CAST({s} AS DOUBLE) END \
             WHEN {is_string} THEN {} END",
            text::double(&format!("trim({s})"))
        ),
        ColType::Date => format!("CASE WHEN {is_string} THEN {} END", text::date(s)),
        ColType::Timestamp => format!(
            "CASE WHEN {is_string} THEN {} END",
            text::date_time(s, false)
        ),
        // Text without an offset is UTC, whatever the reading session's
        // time zone.
        ColType::Timestamptz => format!(
            "CASE WHEN {is_string} THEN {} END",
            text::date_time(s, true)
        ),
        ColType::Time => format!("CASE WHEN {is_string} THEN {} END", text::time(s, false)),
        ColType::Timetz => format!("CASE WHEN {is_string} THEN {} END", text::time(s, true)),
        ColType::Json => format!("CASE WHEN {t} <> 'NULL' THEN {v} END"),
        ColType::JsonObject => format!("CASE WHEN {t} = 'OBJECT' THEN {v} END"),
        ColType::JsonArray => format!("CASE WHEN {t} = 'ARRAY' THEN {v} END"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule stands alone, so its name's hash covers all it does (a
    /// rule calling another could change under its name); every rule a cast
    /// calls is made; names differ.
    #[test]
    fn rules_call_no_rule_and_every_rule_is_made() {
        for made in Rule::all() {
            let (_, body) = made.rule.definition();
            assert!(
                !body.contains(crate::names::INTERNAL_SCHEMA),
                "{:?}",
                made.rule
            );
        }
        let made = create_rules();
        for ty in ColType::ALL {
            if let Some(rule) = Rule::casting(ty) {
                assert!(Rule::all().iter().any(|made| made.rule == rule));
                let name = internal::typing_rule(rule.macro_name());
                assert!(
                    made.contains(&format!("MACRO IF NOT EXISTS {name}(")),
                    "{ty:?}"
                );
            }
        }
        let names: std::collections::HashSet<_> = Rule::all()
            .iter()
            .map(|made| made.rule.macro_name())
            .collect();
        assert_eq!(names.len(), Rule::all().len());
    }

    /// A view names a rule without the catalog (it binds in its own); a
    /// statement names it in full.
    #[test]
    fn views_name_rules_without_the_catalog() {
        let view = call(Scope::View, Rule::Cast(ColType::Bigint), &["t", "s"]);
        let statement = call(Scope::Statement, Rule::Cast(ColType::Bigint), &["t", "s"]);
        assert!(
            view.starts_with("\"_airbyte_internal\".\"typed_bigint_"),
            "{view}"
        );
        assert_eq!(
            statement,
            format!("{}.{view}", crate::names::quote(crate::database::CATALOG))
        );
    }

    /// The SQL a typed relation is made of, pinned: a view whose text
    /// changes is made again in every user's file at the next sync, and a
    /// rule whose text changes gets a macro of a new name. Change this
    /// hash only on purpose (and say so in the commit).
    #[test]
    fn generated_sql_is_pinned() {
        use super::super::types::{merge_columns, schema_properties};
        let catalog = crate::catalog::Catalog::parse(
            r#"{"streams":[
              {"stream":{"name":"every type","json_schema":{"type":"object","properties":{
                "s":{"type":"string"},"b":{"type":"boolean"},"i":{"type":"integer"},
                "n":{"type":"number"},"d":{"type":"string","format":"date"},
                "ts":{"type":"string","format":"date-time","airbyte_type":"timestamp_without_timezone"},
                "tz":{"type":"string","format":"date-time"},
                "t":{"type":"string","format":"time","airbyte_type":"time_without_timezone"},
                "ttz":{"type":"string","format":"time"},"o":{"type":"object"},"a":{"type":"array"},
                "j":{},"_ab_cdc_deleted_at":{"type":["null","string"],"format":"date-time"}}}},
               "destination_sync_mode":"append"},
              {"stream":{"name":"by key","namespace":"n s","json_schema":{"type":"object","properties":{
                "k":{"type":"integer"},"c":{"type":"string","format":"date-time"},"x":{}}}},
               "destination_sync_mode":"append_dedup","primary_key":[["k"],["meta","id"]],
               "cursor_field":["c"]},
              {"stream":{"name":"json cursor","json_schema":{"type":"object","properties":{
                "k":{"type":"string"},"v":{}}}},
               "destination_sync_mode":"append_dedup","primary_key":[["k"]],
               "cursor_field":["meta","v"]}]}"#,
            "main",
        )
        .unwrap();
        let mut all = create_rules();
        for s in &catalog.streams {
            let columns = merge_columns(&[], &schema_properties(&s.json_schema));
            for in_view in [true, false] {
                let q = Query::new(s, &columns, in_view);
                all += &q.relation();
                all += &q.typed_rows(Some(7));
                all += &q.latest("x", "_airbyte_seq");
                all += &q.same_key();
                all += &q.cursor_keys();
            }
            let q = Query::over_pending(s, &columns, "p".into());
            all += &q.typed_rows(None);
        }
        let hash = format!("{:016x}", internal::fnv1a64(all.as_bytes()));
        assert_eq!(hash, "823edb8219f88250", "the generated SQL changed");
    }

    #[test]
    fn pointers_escape() {
        assert_eq!(pointer(&["a/b~c'd".to_string()]), "'/a~1b~0c''d'");
    }
}
