//! scratch
#![allow(clippy::print_stderr)]

#[test]
fn explore() {
    let c = duckdb::Connection::open_in_memory().unwrap();
    let exprs = [
        "TRY_CAST('10:30:00Z' AS TIME WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('10:30:00+02:00' AS TIME WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('15:45:30-05:00' AS TIME WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25T10:30:00+02:00' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25T10:30:00Z' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25T10:30:00+02:00' AS TIMESTAMP)::VARCHAR",
        "TRY_CAST('1504-02-29T01:23:45+05:00' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('9999-12-21T01:23:45+05:00' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('1504-02-29' AS DATE)::VARCHAR",
        "TRY_CAST('2024-07-25 10:30:00 UTC' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25 10:30:00 GMT' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25 10:30:00 Europe/Paris' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "('{\"a\":[-12345.678, 100000000000000000.1234, 1000000000000000000000000000000000000000000000000000.1234]}'::JSON -> '/a')::VARCHAR",
        "('{\"a\":10000000000000000000000.1234}'::JSON -> '/a')::VARCHAR",
        "json_type('{\"a\":10000000000000000000000.1234}'::JSON -> '/a')",
        "json_type('{\"a\":99999999999999999999}'::JSON -> '/a')",
        "json_type('{\"a\":18446744073709551615}'::JSON -> '/a')",
        "json_type('{\"a\":9223372036854775808}'::JSON -> '/a')",
        "(('{\"a\":9223372036854775807}'::JSON -> '/a') ->> '$')",
        "(('{\"a\":99999999999999999999}'::JSON -> '/a') ->> '$')",
        "(('{\"a\":1e2}'::JSON -> '/a') ->> '$')",
        "(('{\"a\":1.0}'::JSON -> '/a') ->> '$')",
        "(('{\"a\":-0.0}'::JSON -> '/a') ->> '$')",
        "TRY_CAST('NaN' AS DOUBLE)::VARCHAR",
        "TRY_CAST('Infinity' AS DOUBLE)::VARCHAR",
        "TRY_CAST('-Infinity' AS DOUBLE)::VARCHAR",
        "TRY_CAST('1e400' AS DOUBLE)::VARCHAR",
        "TRY_CAST('1_000' AS DOUBLE)::VARCHAR",
        "TRY_CAST('0x10' AS DOUBLE)::VARCHAR",
        "TRY_CAST('1_000' AS BIGINT)::VARCHAR",
        "TRY_CAST('  42 ' AS BIGINT)::VARCHAR",
        "TRY_CAST('+42' AS BIGINT)::VARCHAR",
        "TRY_CAST('9223372036854775808' AS BIGINT)::VARCHAR",
        "TRY_CAST('1e3' AS DOUBLE)::VARCHAR",
        "json_type('{\"a\":NaN}'::JSON -> '/a')",
        "('\"abc\"'::JSON)::VARCHAR",
        "TRY_CAST('10:30:00' AS TIME)::VARCHAR",
        "TRY_CAST('10:30:00.123456' AS TIME)::VARCHAR",
        "TRY_CAST('24:00:00' AS TIME)::VARCHAR",
        "TRY_CAST('2024-07-25' AS TIMESTAMP)::VARCHAR",
        "TRY_CAST('2024-07-25T10:30:00.123Z' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25T10:30:00' AS DATE)::VARCHAR",
        "TRY_CAST('not a date' AS DATE)::VARCHAR",
        "TRY_CAST('2024-02-30' AS DATE)::VARCHAR",
        "TRY_CAST('infinity' AS DATE)::VARCHAR",
        "TRY_CAST('infinity' AS TIMESTAMP)::VARCHAR",
        "TRY_CAST('epoch' AS TIMESTAMP)::VARCHAR",
        "TRY_CAST('10:30:00+25:00' AS TIME WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25 10:30:00+0530' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('2024-07-25 10:30:00+05' AS TIMESTAMP WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('10:30:00+0530' AS TIME WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('10:30Z' AS TIME WITH TIME ZONE)::VARCHAR",
        "TRY_CAST('-0001-01-01' AS DATE)::VARCHAR",
        "TRY_CAST('0001-01-01 BC' AS DATE)::VARCHAR",
    ];
    for e in exprs {
        let r: Result<Option<String>, _> = c.query_row(&format!("SELECT {e}"), [], |r| r.get(0));
        eprintln!("{e}  =>  {r:?}");
    }
}
