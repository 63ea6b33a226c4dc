//! Which text each type accepts, as SQL: the one definition of the shapes a
//! date, a time, a date-time or an integer may be written in (the README's
//! "Accepted text" table says the same in prose).
//!
//! DuckDB's own casts take more than these shapes (`10:00 PM`, `EST`, `BC`,
//! `epoch`, ...) and take different things in different versions, so a
//! view read by DuckDB 1.4 would disagree with one read by 2.0, or with a
//! table built here. Every rule here therefore checks the text's shape
//! first, with patterns of its own, then casts a canonical spelling that
//! every DuckDB from 1.4 on reads alike (`YYYY-MM-DD HH:MM:SS.ffffff+HH:MM`).
//! Ranges that some DuckDB cast would wrap rather than refuse (hour 24,
//! offset minutes 60, offsets past ±15:59, year 0) are refused by the
//! patterns. Anything else is NULL, which the typing turns into a `NULLED`
//! change.
//!
//! Each rule tries the common shapes first (`GLOB`s and fixed positions,
//! cheap), then the general pattern (a regular expression and a few
//! rewrites), because a view types every row each time it is read.
//!
//! Pure text over SQL expressions: nothing here touches a database.

/// Year 0001 to 9999, month and day in range (a day past the month's end is
/// refused by the cast).
const DATE: &str = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})\
                    -(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])";
/// `HH:MM`, `HH:MM:SS`, `HH:MM:SS.f` (any number of digits; past six they
/// are cut, DuckDB keeping microseconds).
const TIME: &str = "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.][0-9]+)?)?";
/// An offset, after an optional space: `Z`, `z`, `UTC`, `GMT`, `±HH`,
/// `±HHMM`, `±HH:MM`, up to ±15:59 (the range of DuckDB's `TIMETZ`).
const OFFSET: &str = " ?(?:[Zz]|UTC|GMT|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)";
/// Any offset [`OFFSET`] accepts, at the end of a text, to drop it.
const ANY_OFFSET_AT_END: &str = " ?(?:[Zz]|UTC|GMT|[+-][0-9]{2}(?::?[0-9]{2})?)$";
/// A decimal number as JSON writes one, with an optional `+` and leading
/// zeros: what a number sent as a string may look like.
const NUMBER: &str = "[+-]?[0-9]+(?:[.][0-9]+)?(?:[eE][+-]?[0-9]+)?";

/// `GLOB` patterns of the common shapes (`[0-9]` is one digit).
const G_DATE: &str = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]";
const G_HMS: &str = "[0-9][0-9]:[0-9][0-9]:[0-9][0-9]";

fn replace(x: &str, pattern: &str, with: &str) -> String {
    format!("regexp_replace({x}, '{pattern}', '{with}')")
}

/// `±HH`, `±HHMM`, `±HH:MM`, `Z`, `UTC`, `GMT` at the end of `n` (after an
/// optional space) as `±HH:MM`.
fn offset_as_hh_mm(n: &str) -> String {
    let n = replace(n, " ?(?:[Zz]|UTC|GMT)$", "+00:00");
    let n = replace(&n, " ?([+-][0-9]{2})$", "\\1:00");
    replace(&n, " ?([+-][0-9]{2}):?([0-9]{2})$", "\\1:\\2")
}

/// A date-time text `s` (an SQL expression of type VARCHAR) as a
/// `TIMESTAMP WITH TIME ZONE` (`zone`) or a `TIMESTAMP`; NULL unless it is
/// `infinity`, `-infinity` (any case) or
/// `YYYY-MM-DD[(T|t| )TIME[OFFSET]]`, spaces around it allowed. No time is
/// midnight; no offset is UTC. A `TIMESTAMP` keeps the time as written and
/// drops the offset.
pub(super) fn date_time(s: &str, zone: bool) -> String {
    let ty = if zone { "TIMESTAMPTZ" } else { "TIMESTAMP" };
    let utc = if zone { " || '+00'" } else { "" };
    // The common shapes, at fixed positions: hour 24 and year 0 are the
    // only values a cast of them would take that the general rule refuses.
    let ok = format!("left({s}, 4) <> '0000' AND substr({s}, 12, 2) < '24'");
    let local = format!("left({s}, 10) || ' ' || substr({s}, 12, 8)");
    let dt = format!("{G_DATE}[Tt ]{G_HMS}");
    let with_offset = if zone {
        format!("{local} || substr({s}, 20, 6)")
    } else {
        local.clone()
    };
    let common = [
        (
            format!("{s} GLOB '{dt}[Zz]' AND {ok}"),
            format!("{local}{utc}"),
        ),
        (format!("{s} GLOB '{dt}' AND {ok}"), format!("{local}{utc}")),
        (
            format!("{s} GLOB '{dt}.[0-9][0-9][0-9][Zz]' AND {ok}"),
            format!("{local} || substr({s}, 20, 4){utc}"),
        ),
        (
            format!("{s} GLOB '{dt}.[0-9][0-9][0-9][0-9][0-9][0-9][Zz]' AND {ok}"),
            format!("{local} || substr({s}, 20, 7){utc}"),
        ),
        (
            format!(
                "{s} GLOB '{dt}[+-][0-9][0-9]:[0-9][0-9]' AND {ok} \
                 AND substr({s}, 21, 2) <= '15' AND substr({s}, 24, 2) <= '59'"
            ),
            with_offset,
        ),
        (
            format!("{s} GLOB '{G_DATE}' AND left({s}, 4) <> '0000'"),
            format!("{s} || ' 00:00:00'{utc}"),
        ),
    ];
    // The general rule: the whole grammar, then a canonical spelling.
    let x = format!("trim({s})");
    let n = replace(&x, "^(.{10})$", "\\1 00:00:00");
    let n = replace(&n, "^(.{10})[Tt ]", "\\1 ");
    let n = replace(&n, "^(.{16})([^:]|$)", "\\1:00\\2");
    let n = replace(&n, "^(.{19}[.][0-9]{6})[0-9]+", "\\1");
    let n = if zone {
        replace(
            &offset_as_hh_mm(&n),
            "^(.{19}(?:[.][0-9]{1,6})?)$",
            "\\1+00:00",
        )
    } else {
        replace(&n, ANY_OFFSET_AT_END, "")
    };
    let whens: String = common
        .iter()
        .map(|(when, text)| format!("WHEN {when} THEN TRY_CAST({text} AS {ty}) "))
        .collect();
    format!(
        "CASE {whens}WHEN lower({x}) IN ('infinity', '-infinity') THEN CAST(lower({x}) AS {ty}) \
         WHEN regexp_full_match({x}, '{DATE}(?:[Tt ]{TIME}(?:{OFFSET})?)?') THEN TRY_CAST({n} AS {ty}) END"
    )
}

/// A date text `s` as a DATE: `YYYY-MM-DD`, spaces around it allowed, or
/// `infinity`, `-infinity` (any case); else NULL.
pub(super) fn date(s: &str) -> String {
    let x = format!("trim({s})");
    format!(
        "CASE WHEN {s} GLOB '{G_DATE}' AND left({s}, 4) <> '0000' THEN TRY_CAST({s} AS DATE) \
         WHEN lower({x}) IN ('infinity', '-infinity') THEN CAST(lower({x}) AS DATE) \
         WHEN regexp_full_match({x}, '{DATE}') THEN TRY_CAST({x} AS DATE) END"
    )
}

/// A time text `s` as a `TIME WITH TIME ZONE` (`zone`) or a `TIME`: `TIME`
/// then an optional `OFFSET`, spaces around it allowed; else NULL. No
/// offset is UTC; a `TIME` keeps the time as written and drops the offset.
pub(super) fn time(s: &str, zone: bool) -> String {
    let ty = if zone { "TIMETZ" } else { "TIME" };
    let utc = if zone { " || '+00'" } else { "" };
    let x = format!("trim({s})");
    let n = replace(&x, "^([0-9]{2}:[0-9]{2})([^:]|$)", "\\1:00\\2");
    let n = replace(&n, "^([0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{6})[0-9]+", "\\1");
    let n = if zone {
        replace(
            &offset_as_hh_mm(&n),
            "^([0-9:]{8}(?:[.][0-9]{1,6})?)$",
            "\\1+00:00",
        )
    } else {
        replace(&n, ANY_OFFSET_AT_END, "")
    };
    format!(
        "CASE WHEN {s} GLOB '{G_HMS}' AND {s} < '24' THEN TRY_CAST({s}{utc} AS {ty}) \
         WHEN regexp_full_match({x}, '{TIME}(?:{OFFSET})?') THEN TRY_CAST({n} AS {ty}) END"
    )
}

/// A number's text `x` (an SQL expression, trimmed) as the BIGINT it
/// equals exactly: `NUMBER` whose value is a whole number within BIGINT's
/// range (`12345678901234567.0`, `1e3`, `100e-2`); else NULL. Worked out on
/// the digits, never through a DOUBLE, so nothing is rounded.
pub(super) fn integer(x: &str) -> String {
    let int = format!("regexp_extract({x}, '^[+-]?([0-9]*)', 1)");
    let frac = format!("regexp_extract({x}, '^[^.eE]*[.]([0-9]*)', 1)");
    let exp = format!("regexp_extract({x}, '[eE]([+-]?[0-9]+)$', 1)");
    // The digits without leading zeros, then without trailing ones: the
    // value is `digits` times ten to the power `shift`.
    let m = format!("ltrim({int} || {frac}, '0')");
    let digits = format!("rtrim({m}, '0')");
    let shift = format!(
        "(CASE WHEN {exp} = '' THEN 0 ELSE TRY_CAST({exp} AS BIGINT) END \
         - length({frac}) + length({m}) - length({digits}))"
    );
    let sign = format!("CASE WHEN starts_with({x}, '-') THEN '-' ELSE '' END");
    format!(
        "CASE WHEN regexp_full_match({x}, '[+-]?[0-9]+') THEN TRY_CAST({x} AS BIGINT) \
         WHEN NOT regexp_full_match({x}, '{NUMBER}') THEN NULL \
         WHEN {digits} = '' THEN 0 \
         WHEN {shift} IS NULL OR {shift} < 0 OR length({digits}) + {shift} > 19 THEN NULL \
         ELSE TRY_CAST({sign} || {digits} || repeat('0', {shift}) AS BIGINT) END"
    )
}

/// A number sent as a string, `x` (trimmed), as a DOUBLE: `NUMBER` within
/// DOUBLE's range, or `NaN`, `Infinity`, `-Infinity`, `inf`, `-inf` (any
/// case, `+` allowed); else NULL.
pub(super) fn double(x: &str) -> String {
    let d = format!("TRY_CAST({x} AS DOUBLE)");
    format!(
        "CASE WHEN regexp_full_match({x}, '{NUMBER}') THEN CASE WHEN isinf({d}) THEN NULL ELSE {d} END \
         WHEN lower({x}) = 'nan' THEN 'NaN'::DOUBLE \
         WHEN lower({x}) IN ('infinity', '+infinity', 'inf', '+inf') THEN 'Infinity'::DOUBLE \
         WHEN lower({x}) IN ('-infinity', '-inf') THEN '-Infinity'::DOUBLE END"
    )
}

/// `data` (a JSON document's text) with every number written as a string
/// of its literal text, so that `json_extract_string` gives a number's
/// digits as they were sent (DuckDB's JSON reader holds a number with a
/// fraction or an exponent as a DOUBLE, which rounds
/// `12345678901234567.0`).
///
/// One pass finds strings and numbers left to right, so digits inside a
/// string are never taken for a number; strings gain two marker bytes
/// (`chr(1)`), numbers one on each side. Marker bytes cannot occur in JSON
/// text (control characters in strings are escaped), so removing the
/// pairs and turning the rest into quotes leaves valid JSON.
pub(super) fn numbers_as_strings(data: &str) -> String {
    let marked = format!(
        "regexp_replace({data}, '(\"(?:[^\"\\\\]|\\\\.)*\")|(-?[0-9]+(?:[.][0-9]+)?(?:[eE][+-]?[0-9]+)?)', \
         '\\1' || chr(1) || '\\2' || chr(1), 'g')"
    );
    format!("replace(replace({marked}, chr(1) || chr(1), ''), chr(1), '\"')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duck::Instance;

    /// Evaluates `rule` over each text in DuckDB, as text.
    fn eval(rule: impl Fn(&str) -> String, texts: &[&str]) -> Vec<Option<String>> {
        let session = Instance::open(":memory:", &[]).unwrap();
        texts
            .iter()
            .map(|t| {
                let t = crate::names::literal(t);
                session
                    .query_value(&format!("SELECT ({})::VARCHAR", rule(&t)))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn integers_are_exact_or_null() {
        let texts = [
            "42",
            "-0",
            "+7",
            "007",
            "1.0",
            "1.5",
            "1e3",
            "1E-2",
            "100e-2",
            "12345678901234567.0",
            "1.2345678901234567e16",
            "1.0000000000000001",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "92233720368547758070e-1",
            "1e19",
            "0e999999999999999999",
            "1e999999999999999999",
            "1_000",
            "0x10",
            "",
            "1.",
            ".5",
        ];
        let want = [
            Some("42"),
            Some("0"),
            Some("7"),
            Some("7"),
            Some("1"),
            None,
            Some("1000"),
            None,
            Some("1"),
            Some("12345678901234567"),
            Some("12345678901234567"),
            None,
            Some("9223372036854775807"),
            None,
            Some("-9223372036854775808"),
            Some("9223372036854775807"),
            None,
            Some("0"),
            None,
            None,
            None,
            None,
            None,
            None,
        ];
        let got = eval(integer, &texts);
        for ((t, g), w) in texts.iter().zip(&got).zip(want) {
            assert_eq!(g.as_deref(), w, "{t}");
        }
    }

    #[test]
    fn numbers_keep_their_literal_text() {
        let doc =
            r#"{"a":1.50,"b":"x\"1","c":[1,-2e3,{"d":0.0}],"e":"\\","f":12345678901234567.0}"#;
        let got = eval(numbers_as_strings, &[doc]);
        assert_eq!(
            got[0].as_deref(),
            Some(
                r#"{"a":"1.50","b":"x\"1","c":["1","-2e3",{"d":"0.0"}],"e":"\\","f":"12345678901234567.0"}"#
            )
        );
    }

    /// The common shapes' short cuts give what the general rule gives.
    #[test]
    fn common_shapes_agree_with_the_general_rule() {
        let texts = [
            "2024-01-01T10:00:00Z",
            "2024-01-01t10:00:00z",
            "2024-01-01 10:00:00",
            "2024-01-01T10:00:00.123Z",
            "2024-01-01T10:00:00.123456Z",
            "2024-01-01T10:00:00+05:30",
            "2024-01-01T10:00:00-15:59",
            "2024-01-01T10:00:00+16:00",
            "2024-01-01T10:00:00+05:60",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "0000-01-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-01-01",
            "0000-01-01",
            "2024-13-01",
        ];
        for zone in [true, false] {
            let general = |s: &str| {
                let full = date_time(s, zone);
                // Everything after the common shapes' WHENs.
                let at = full.find("WHEN lower(").unwrap();
                format!("CASE {}", &full[at..])
            };
            assert_eq!(
                eval(|s| date_time(s, zone), &texts),
                eval(general, &texts),
                "zone {zone}"
            );
        }
    }
}
