//! The scalars Terminus adds for the protobuf types people use: `Int64`,
//! `UInt64`, `Bytes`, `Timestamp`, `Duration` and `JSON`. Their values are
//! the proto3 JSON mapping's (`docs/schema.md`, "Types"): 64-bit integers
//! are decimal strings (JavaScript numbers lose precision above 2^53),
//! bytes are base64, a timestamp is RFC 3339 text, a duration is seconds
//! with an `s` (`"1.5s"`), and JSON is any JSON value (Struct, Value,
//! ListValue, maps).

use serde_json::Value;

/// The added scalars: name, description, `@specifiedBy` URL.
pub const SCALARS: [(&str, &str, &str); 8] = [
    (
        "Int64",
        "A signed 64-bit integer (protobuf int64, sint64, sfixed64), written as a decimal string; input also accepts a number.",
        "https://protobuf.dev/programming-guides/json/",
    ),
    (
        "UInt64",
        "An unsigned 64-bit integer (protobuf uint64, fixed64), written as a decimal string; input also accepts a number.",
        "https://protobuf.dev/programming-guides/json/",
    ),
    (
        "Bytes",
        "Binary data (protobuf bytes) in base64, standard or URL-safe, padded or not.",
        "https://www.rfc-editor.org/rfc/rfc4648",
    ),
    (
        "Timestamp",
        "A point in time (google.protobuf.Timestamp) in RFC 3339 form, 2024-05-01T12:30:00Z.",
        "https://www.rfc-editor.org/rfc/rfc3339",
    ),
    (
        "Duration",
        "A span of time (google.protobuf.Duration): seconds with up to 9 decimals and an s, 1.5s.",
        "https://protobuf.dev/programming-guides/json/",
    ),
    (
        "Decimal",
        "An exact decimal number (SQL DECIMAL/NUMERIC) written as a string of its digits, 12345.670; input also accepts a number.",
        "https://dev.mysql.com/doc/refman/8.0/en/fixed-point-types.html",
    ),
    (
        "DateTime",
        "An ISO 8601 date and time, 2024-05-01T12:30:00 or with an offset (2024-05-01T12:30:00.250+02:00, Z for UTC) when the database's time_zone is configured.",
        "https://www.iso.org/iso-8601-date-and-time-format.html",
    ),
    (
        "JSON",
        "Any JSON value (google.protobuf.Struct, Value, ListValue, and protobuf maps).",
        "https://www.rfc-editor.org/rfc/rfc8259",
    ),
];

/// Whether `name` is one of the added scalars.
pub fn is_terminus_scalar(name: &str) -> bool {
    SCALARS.iter().any(|(n, _, _)| *n == name)
}

/// Coerces an input value (already plain JSON) to scalar `name`; `None`
/// when `name` is not an added scalar.
pub(crate) fn coerce_input(name: &str, value: &Value) -> Option<Result<Value, String>> {
    let bad = |what: &str| Err(format!("{name} cannot represent {value}: {what}"));
    let result = match name {
        "Int64" => match value {
            Value::Number(n) if n.is_i64() => Ok(Value::String(n.to_string())),
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Ok(Value::String(i.to_string())),
                Err(_) => bad("expected a signed 64-bit integer"),
            },
            _ => bad("expected a signed 64-bit integer"),
        },
        "UInt64" => match value {
            Value::Number(n) if n.is_u64() => Ok(Value::String(n.to_string())),
            Value::String(s) => match s.trim().parse::<u64>() {
                Ok(i) => Ok(Value::String(i.to_string())),
                Err(_) => bad("expected an unsigned 64-bit integer"),
            },
            _ => bad("expected an unsigned 64-bit integer"),
        },
        "Bytes" => match value {
            Value::String(s) if is_base64(s) => Ok(value.clone()),
            _ => bad("expected base64 text"),
        },
        "Timestamp" => match value {
            Value::String(s) if is_rfc3339(s) => Ok(value.clone()),
            _ => bad("expected an RFC 3339 timestamp such as 2024-05-01T12:30:00Z"),
        },
        "Duration" => match value {
            Value::String(s) if is_duration(s) => Ok(value.clone()),
            _ => bad("expected seconds with an s, such as 1.5s"),
        },
        "Decimal" => match value {
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::String(t) if is_decimal(t.trim()) => Ok(Value::String(t.trim().to_string())),
            _ => bad("expected a decimal number such as 12.50"),
        },
        "DateTime" => match value {
            Value::String(t) if iso_date_time(t).is_some() => Ok(value.clone()),
            _ => bad("expected an ISO 8601 date-time such as 2024-05-01T12:30:00"),
        },
        "JSON" => Ok(value.clone()),
        _ => return None,
    };
    Some(result)
}

/// Serializes an upstream value as scalar `name`: `None` when `name` is not
/// an added scalar, `Some(None)` when the value does not fit.
pub(crate) fn serialize(name: &str, value: &Value) -> Option<Option<Value>> {
    let out = match name {
        "Int64" => match value {
            Value::Number(n) if n.is_i64() => Some(Value::String(n.to_string())),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .map(|i| Value::String(i.to_string())),
            _ => None,
        },
        "UInt64" => match value {
            Value::Number(n) if n.is_u64() => Some(Value::String(n.to_string())),
            Value::String(s) => s
                .trim()
                .parse::<u64>()
                .ok()
                .map(|i| Value::String(i.to_string())),
            _ => None,
        },
        "Bytes" | "Timestamp" | "Duration" => value.is_string().then(|| value.clone()),
        "Decimal" => match value {
            Value::Number(n) => Some(Value::String(n.to_string())),
            Value::String(t) if is_decimal(t) => Some(value.clone()),
            _ => None,
        },
        "DateTime" => match value {
            Value::String(t) => iso_date_time(t).map(Value::String),
            _ => None,
        },
        "JSON" => Some(value.clone()),
        _ => return None,
    };
    Some(out)
}

fn is_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len() - body.len() <= 2
        && body.len() % 4 != 1
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)`.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|d| d.len() == range.len() && d.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3)
                && b.get(i + 3) == Some(&b':')
                && digits(i + 4..i + 6)
                && i + 6 == b.len()
        }
        _ => false,
    }
}

/// `-?digits(.digits)?`: how SQL writes a DECIMAL.
fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = body.split_once('.').unwrap_or((body, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// A date-time as ISO 8601: SQL's `YYYY-MM-DD HH:MM:SS[.f]` gets its `T`;
/// an offset (`Z`, `+hh:mm`) is kept; `None` when it is not a date-time.
fn iso_date_time(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.len() < 19 || !matches!(b[10], b' ' | b'T' | b't') {
        return None;
    }
    let mut iso = text.to_string();
    iso.replace_range(10..11, "T");
    let with_zone = if iso[19..]
        .trim_start_matches(|c: char| c == '.' || c.is_ascii_digit())
        .is_empty()
    {
        format!("{iso}Z")
    } else {
        iso.clone()
    };
    is_rfc3339(&with_zone).then_some(iso)
}

/// `-?seconds(.up to 9 digits)?s`.
fn is_duration(text: &str) -> bool {
    let Some(body) = text.strip_suffix('s') else {
        return false;
    };
    let body = body.strip_prefix('-').unwrap_or(body);
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && (fraction.is_empty() || !body.ends_with('.'))
        && !body.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sixty_four_bit_integers_are_strings_both_ways() {
        assert_eq!(coerce_input("Int64", &json!(-5)), Some(Ok(json!("-5"))));
        assert_eq!(
            coerce_input("Int64", &json!("9007199254740993")),
            Some(Ok(json!("9007199254740993")))
        );
        assert!(coerce_input("Int64", &json!("9223372036854775808"))
            .unwrap()
            .is_err());
        assert!(coerce_input("Int64", &json!(1.5)).unwrap().is_err());
        assert_eq!(
            coerce_input("UInt64", &json!("18446744073709551615")),
            Some(Ok(json!("18446744073709551615")))
        );
        assert!(coerce_input("UInt64", &json!(-1)).unwrap().is_err());
        assert_eq!(serialize("Int64", &json!(7)), Some(Some(json!("7"))));
        assert_eq!(serialize("UInt64", &json!("x")), Some(None));
        assert_eq!(serialize("Int", &json!(7)), None);
    }

    #[test]
    fn decimals_and_date_times_from_sql() {
        assert_eq!(
            serialize("Decimal", &json!("12345678901234.123456")),
            Some(Some(json!("12345678901234.123456")))
        );
        assert_eq!(serialize("Decimal", &json!(12)), Some(Some(json!("12"))));
        assert_eq!(serialize("Decimal", &json!("1e5")), Some(None));
        assert_eq!(
            coerce_input("Decimal", &json!(" -0.50 ")),
            Some(Ok(json!("-0.50")))
        );
        assert_eq!(
            serialize("DateTime", &json!("2024-02-29 13:05:09.120")),
            Some(Some(json!("2024-02-29T13:05:09.120")))
        );
        assert_eq!(
            serialize("DateTime", &json!("2024-02-29T13:05:09+05:30")),
            Some(Some(json!("2024-02-29T13:05:09+05:30")))
        );
        assert_eq!(serialize("DateTime", &json!("2024-02-29")), Some(None));
        assert!(coerce_input("DateTime", &json!("soon")).unwrap().is_err());
    }

    #[test]
    fn bytes_timestamps_and_durations_are_checked_on_input() {
        assert!(coerce_input("Bytes", &json!("iVBORwD/")).unwrap().is_ok());
        assert!(coerce_input("Bytes", &json!("aGk")).unwrap().is_ok());
        assert!(coerce_input("Bytes", &json!("a")).unwrap().is_err());
        assert!(coerce_input("Bytes", &json!("not base64!"))
            .unwrap()
            .is_err());
        for ok in ["2024-05-01T12:30:00Z", "2023-01-02T03:04:05.250+02:00"] {
            assert!(
                coerce_input("Timestamp", &json!(ok)).unwrap().is_ok(),
                "{ok}"
            );
        }
        for bad in ["2024-05-01", "2024-05-01T12:30:00", "yesterday"] {
            assert!(
                coerce_input("Timestamp", &json!(bad)).unwrap().is_err(),
                "{bad}"
            );
        }
        for ok in ["1s", "1.5s", "-0.000000001s", "31536000s"] {
            assert!(
                coerce_input("Duration", &json!(ok)).unwrap().is_ok(),
                "{ok}"
            );
        }
        for bad in ["1", "1.s", "s", "1.0000000001s", "1m"] {
            assert!(
                coerce_input("Duration", &json!(bad)).unwrap().is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            coerce_input("JSON", &json!({"a": [1]})),
            Some(Ok(json!({"a": [1]})))
        );
        assert_eq!(coerce_input("Money", &json!(1)), None);
    }
}
