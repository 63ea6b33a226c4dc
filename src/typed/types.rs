//! The JSON schema → DuckDB type mapping, and the columns a typed relation
//! has: which property each reads, under which name, as which type. Kept
//! apart from the SQL so the type rules (Airbyte's) and the naming rules
//! (stable across syncs) can be read and tested without a database.

use std::collections::HashSet;

use serde_json::Value;

/// The metadata columns every typed relation starts with.
pub(super) const META_COLUMNS: [&str; 4] = [
    "_airbyte_ab_id",
    "_airbyte_emitted_at",
    "_airbyte_meta",
    "_airbyte_generation_id",
];

/// The property that marks a CDC delete in `append_dedup` streams.
pub const CDC_DELETED_AT: &str = "_ab_cdc_deleted_at";

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
    pub(crate) const ALL: [ColType; 12] = [
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

pub(super) fn columns_to_json(columns: &[Column]) -> String {
    let rows: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|c| (c.property.as_str(), c.name.as_str(), c.ty.key()))
        .collect();
    serde_json::to_string(&rows).expect("strings serialize")
}

pub(super) fn columns_from_json(text: &str) -> Option<Vec<Column>> {
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
}
