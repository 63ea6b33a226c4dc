//! Typing a record while it is appended, in Rust, so that typed tables are
//! written in the same pass as the raw rows with no JSON parsed again in
//! DuckDB.
//!
//! [`type_record`] gives exactly what the SQL in `sql` gives for the
//! values it takes: JSON nulls and missing properties, booleans, integers
//! that fit a BIGINT, finite numbers, strings for text columns, ISO dates
//! and date-times in their common shapes, and JSON values for JSON columns.
//! Anything else (a number sent as a string, a date-time in another shape,
//! a time, an object for a text column ...) makes it give up on the whole
//! record: that record is typed by the SQL instead, so the SQL stays the one
//! definition of every typing rule, and this is only a faster path to the
//! same values. `tests/typing.rs` and the differential property test hold
//! the two to each other.
//!
//! One difference is by design: a JSON column keeps the value's text as the
//! source sent it, where the SQL keeps DuckDB's rewriting of it (`1.50`
//! becomes `1.5`, `"\u00e9"` becomes `"é"`). Both are the same JSON value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::types::{ColType, Column, CDC_DELETED_AT};
use crate::duck::Cell;

/// What typing one record gave.
pub struct TypedRecord {
    /// Whether the record is a CDC delete (`_ab_cdc_deleted_at` is a column
    /// and the record has a non-null value for it).
    pub deleted: bool,
}

/// Types `data` (a record's JSON text) for `columns`, as the SQL would:
/// `cells` gets one cell per column and `nulled` the indexes of the columns
/// whose value did not fit (NULL, and a `NULLED` change in the row's meta).
/// None: some value is not one this function types; leave the record to the
/// SQL.
pub fn type_record<'a>(
    data: &'a str,
    columns: &[Column],
    cells: &mut Vec<Cell<'a>>,
    nulled: &mut Vec<usize>,
) -> Option<TypedRecord> {
    cells.clear();
    nulled.clear();
    // A record whose data is no object has none of the properties.
    let fields = if data.trim_start().starts_with('{') {
        serde_json::from_str::<Fields<'a>>(data).ok()?.0
    } else {
        Vec::new()
    };
    let mut deleted = false;
    for (i, c) in columns.iter().enumerate() {
        // DuckDB's JSON functions read the first of duplicate keys.
        let value = fields
            .iter()
            .find(|(k, _)| k.0 == c.property)
            .map(|(_, v)| v.get());
        if c.property == CDC_DELETED_AT {
            deleted = value.is_some_and(|v| !v.starts_with('n'));
        }
        let cell = match value {
            None => Cell::Null,
            Some(v) => match cell(v, c.ty)? {
                Some(cell) => cell,
                None => {
                    nulled.push(i);
                    Cell::Null
                }
            },
        };
        cells.push(cell);
    }
    Some(TypedRecord { deleted })
}

/// The JSON kinds a value can be, by its first byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
    Array,
}

fn kind(v: &str) -> Kind {
    match v.as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        _ => Kind::Number,
    }
}

/// One value `v` (JSON text) typed as `ty`. None: not typed here (the SQL
/// decides); Some(None): the value does not fit (NULL and NULLED); a JSON
/// null is a plain NULL.
fn cell(v: &str, ty: ColType) -> Option<Option<Cell<'_>>> {
    let k = kind(v);
    if k == Kind::Null {
        return Some(Some(Cell::Null));
    }
    match (ty, k) {
        // Text of a non-string value is DuckDB's rewriting of its JSON.
        (ColType::Varchar, Kind::String) => Some(Some(Cell::Text(string(v)?))),
        (ColType::Varchar, _) => None,
        (ColType::Boolean, Kind::Bool) => Some(Some(Cell::Bool(v.starts_with('t')))),
        (ColType::Boolean, Kind::String) => {
            let s = string(v)?;
            // `lower(trim(s))`: kept to ASCII without surrounding spaces,
            // where the rule is plain.
            if !s.is_ascii() || s.trim() != s {
                return None;
            }
            if s.eq_ignore_ascii_case("true") {
                Some(Some(Cell::Bool(true)))
            } else if s.eq_ignore_ascii_case("false") {
                Some(Some(Cell::Bool(false)))
            } else {
                Some(None)
            }
        }
        (ColType::Bigint, Kind::Number) => {
            let digits = v.strip_prefix('-').unwrap_or(v);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(Some(Cell::BigInt(v.parse().ok()?)))
        }
        (ColType::Double, Kind::Number) => {
            let mut x: f64 = v.parse().ok()?;
            if !x.is_finite() {
                return None;
            }
            // DuckDB reads the integer literal `-0` as the integer 0, so its
            // double is +0.0; `-0.0` stays negative in both.
            if x == 0.0 && !v.contains(['.', 'e', 'E']) {
                x = 0.0;
            }
            Some(Some(Cell::Double(x)))
        }
        // Numbers, booleans and dates sent as strings: the SQL's rules.
        (ColType::Bigint | ColType::Double, Kind::String) => None,
        (ColType::Date, Kind::String) => {
            let s = string(v)?;
            let (y, m, d) = date(s.as_bytes())?;
            Some(Some(Cell::Date(days_from_civil(y, m, d))))
        }
        (ColType::Timestamptz, Kind::String) => {
            Some(Some(Cell::Micros(timestamp(string(v)?.as_bytes(), true)?)))
        }
        (ColType::Timestamp, Kind::String) => {
            Some(Some(Cell::Micros(timestamp(string(v)?.as_bytes(), false)?)))
        }
        (ColType::Time | ColType::Timetz, Kind::String) => None,
        (ColType::Json, _) => Some(Some(Cell::Text(Cow::Borrowed(v)))),
        (ColType::JsonObject, Kind::Object) | (ColType::JsonArray, Kind::Array) => {
            Some(Some(Cell::Text(Cow::Borrowed(v))))
        }
        // Any other kind does not fit the column.
        _ => Some(None),
    }
}

/// The contents of a JSON string `v`, borrowed when it has no escapes.
/// None for a string holding a NUL, which SQL text handles differently.
fn string(v: &str) -> Option<Cow<'_, str>> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let s = if inner.contains('\\') {
        Cow::Owned(serde_json::from_str::<String>(v).ok()?)
    } else {
        Cow::Borrowed(inner)
    };
    (!s.contains('\0')).then_some(s)
}

fn number(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// `YYYY-MM-DD`, a real day of years 1 to 9999.
fn date(b: &[u8]) -> Option<(i32, u32, u32)> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (number(&b[..4])?, number(&b[5..7])?, number(&b[8..])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (y >= 1 && (1..=days).contains(&d)).then_some((y as i32, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}]` and, where `offset` allows, a `Z` or
/// `±HH:MM` suffix (none means UTC), as microseconds since the epoch.
fn timestamp(b: &[u8], offset: bool) -> Option<i64> {
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = date(&b[..10])?;
    let t = &b[11..];
    if t[2] != b':' || t[5] != b':' {
        return None;
    }
    let (h, mi, s) = (number(&t[..2])?, number(&t[3..5])?, number(&t[6..8])?);
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut rest = &t[8..];
    let mut micros = 0i64;
    if let Some(f) = rest.strip_prefix(b".") {
        let n = f.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=6).contains(&n) {
            return None;
        }
        micros = i64::from(number(&f[..n])?) * 10i64.pow(6 - n as u32);
        rest = &f[n..];
    }
    let shift = match rest {
        [] => 0,
        [b'Z' | b'z'] if offset => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if offset => {
            let (oh, om) = (number(&[*h1, *h2])?, number(&[*m1, *m2])?);
            if oh > 14 || om > 59 {
                return None;
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let secs =
        i64::from(days_from_civil(y, mo, d)) * 86_400 + i64::from(h * 3600 + mi * 60 + s) - shift;
    Some(secs * 1_000_000 + micros)
}

/// A record's top-level properties in order, keys unescaped, values as
/// their JSON text.
struct Fields<'a>(Vec<(Key<'a>, &'a RawValue)>);

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(entry) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(property: &str, ty: ColType) -> Column {
        Column {
            property: property.into(),
            name: property.into(),
            ty,
        }
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn timestamps_in_the_common_shapes() {
        let t = |s: &str| timestamp(s.as_bytes(), true);
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(t("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(t("1969-12-31T23:00:00-01:00"), Some(0));
        for other in [
            "1970-01-01T24:00:00Z",
            "1970-02-30T00:00:00Z",
            "1970-01-01T00:00Z",
            "1970-01-01T00:00:00.1234567Z",
            "1970-01-01T00:00:00 UTC",
            "1970-01-01T00:00:00+0100",
            " 1970-01-01T00:00:00Z",
            "infinity",
        ] {
            assert_eq!(t(other), None, "{other}");
        }
        assert_eq!(timestamp(b"1970-01-01T00:00:00Z", false), None);
    }

    #[test]
    fn records_type_or_give_up() {
        let columns = [
            col("i", ColType::Bigint),
            col("s", ColType::Varchar),
            col("o", ColType::JsonObject),
            col(CDC_DELETED_AT, ColType::Timestamptz),
        ];
        let (mut cells, mut nulled) = (Vec::new(), Vec::new());
        let data = r#"{"i":7,"s":"a\nb","o":[1],"i":8,"_ab_cdc_deleted_at":null}"#;
        let r = type_record(data, &columns, &mut cells, &mut nulled).unwrap();
        assert!(!r.deleted);
        assert_eq!(
            cells,
            [
                Cell::BigInt(7),
                Cell::Text("a\nb".into()),
                Cell::Null,
                Cell::Null
            ]
        );
        assert_eq!(nulled, [2]);
        let r = type_record(
            r#"{"_ab_cdc_deleted_at":"2024-01-01T00:00:00Z"}"#,
            &columns,
            &mut cells,
            &mut nulled,
        )
        .unwrap();
        assert!(r.deleted);
        // Left to the SQL: a number for a text column, a fraction for an
        // integer, a numeric string.
        for data in [r#"{"s":1}"#, r#"{"i":1.0}"#, r#"{"i":"1"}"#] {
            assert!(type_record(data, &columns, &mut cells, &mut nulled).is_none());
        }
        // Not an object: every property is missing.
        type_record("[1]", &columns, &mut cells, &mut nulled).unwrap();
        assert!(cells.iter().all(|c| *c == Cell::Null));
    }
}
