//! Schema hints (`schemaHints`): Spark SQL type names over inferred types.

use arrow_schema::{DataType, Field, TimeUnit};

/// Parses a schema hint list such as `id bigint, price decimal(10,2), ts timestamp`.
pub fn parse_schema_hints(text: &str) -> Result<Vec<(String, DataType)>, String> {
    let mut out = Vec::new();
    for part in split_top_level(text) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let needs_type =
            || format!("schemaHints: '{part}' needs a column name and a type, e.g. 'id bigint'");
        let (name, ty) = match part.strip_prefix('`') {
            // A quoted name may hold spaces, commas and `` for a backtick.
            Some(rest) => {
                let end = closing_backtick(rest).ok_or_else(|| {
                    format!("schemaHints: '{part}' opens a `quoted` column name it does not close")
                })?;
                (rest[..end].replace("``", "`"), &rest[end + 1..])
            }
            None => {
                let (name, ty) = part
                    .split_once(char::is_whitespace)
                    .ok_or_else(needs_type)?;
                (name.to_string(), ty)
            }
        };
        if ty.trim().is_empty() {
            return Err(needs_type());
        }
        out.push((name, parse_sql_type(ty.trim())?));
    }
    Ok(out)
}

/// Where the backtick closing a quoted name is in `rest` (what follows the
/// opening one); a doubled backtick is one inside the name.
fn closing_backtick(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            if bytes.get(i + 1) == Some(&b'`') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut quoted) = (0i32, 0usize, false);
    for (i, c) in text.char_indices() {
        match c {
            '`' => quoted = !quoted,
            _ if quoted => {}
            '(' | '<' => depth += 1,
            ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Maps a Spark SQL type name to the Arrow type Sluice writes for it.
pub fn parse_sql_type(ty: &str) -> Result<DataType, String> {
    let lower = ty.to_ascii_lowercase();
    let t = match lower.as_str() {
        "string" | "varchar" | "text" => DataType::Utf8,
        "bigint" | "long" => DataType::Int64,
        "int" | "integer" => DataType::Int32,
        "smallint" | "short" => DataType::Int16,
        "tinyint" | "byte" => DataType::Int8,
        "double" => DataType::Float64,
        "float" | "real" => DataType::Float32,
        "boolean" | "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "timestamp_ntz" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "binary" => DataType::Binary,
        _ if lower.starts_with("decimal") => {
            let inner = lower
                .trim_start_matches("decimal")
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')');
            let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
            let p: u8 = p.trim().parse().unwrap_or(10);
            let s: i8 = s.trim().parse().unwrap_or(0);
            if p == 0 || p > 38 || s < 0 || s as u8 > p {
                return Err(format!(
                    "schemaHints: bad decimal '{ty}': precision 1..=38, scale 0..=precision"
                ));
            }
            DataType::Decimal128(p, s)
        }
        _ => {
            return Err(format!(
                "schemaHints: unknown type '{ty}'; use string, bigint, int, smallint, tinyint, double, float, boolean, date, timestamp, timestamp_ntz, binary or decimal(p,s)"
            ));
        }
    };
    Ok(t)
}

/// Overrides inferred column types with `hints`; a hinted column absent
/// from the data is added (all null), as Auto Loader does.
pub fn apply_hints(mut data: Vec<Field>, hints: &[(String, DataType)]) -> Vec<Field> {
    for (name, ty) in hints {
        match data.iter_mut().find(|f| f.name() == name) {
            Some(f) => *f = Field::new(name, ty.clone(), true),
            None => data.push(Field::new(name, ty.clone(), true)),
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_hints_parse_nested_commas() {
        let h = parse_schema_hints("id bigint, price decimal(10, 2),ts timestamp").unwrap();
        assert_eq!(h[1], ("price".to_string(), DataType::Decimal128(10, 2)));
        assert_eq!(h.len(), 3);
        assert!(parse_schema_hints("id").is_err());
        assert!(parse_schema_hints("id whatever").is_err());
    }

    #[test]
    fn a_quoted_name_may_hold_spaces_commas_and_backticks() {
        let h = parse_schema_hints("`first name` STRING, `a, b` int, `x``y` date, `id` bigint")
            .unwrap();
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["first name", "a, b", "x`y", "id"]);
        assert_eq!(h[0].1, DataType::Utf8);
        assert!(parse_schema_hints("`open string").is_err());
        assert!(parse_schema_hints("`named`").is_err());
    }

    #[test]
    fn hints_override_and_add_columns() {
        let data = vec![Field::new("id", DataType::Utf8, true)];
        let hinted = apply_hints(data, &parse_schema_hints("id bigint, extra date").unwrap());
        assert_eq!(hinted[0].data_type(), &DataType::Int64);
        assert_eq!(hinted[1].name(), "extra");
    }
}
