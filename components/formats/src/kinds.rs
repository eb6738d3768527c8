//! The type lattice text cells (CSV fields) are inferred by: each cell is
//! classified, a column's kind is the join of its cells', and a kind maps
//! to the Arrow type the column is read as.

use arrow_schema::{DataType, TimeUnit};

/// The type lattice of inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No value seen yet.
    Null,
    /// A whole number (`bigint`).
    Int,
    /// A number with a fraction or exponent (`double`).
    Float,
    /// `true` or `false`, in any case.
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// A date and time (UTC).
    Timestamp,
    /// Anything else.
    Text,
}

/// The kind of one text cell.
pub fn classify(s: &str) -> Kind {
    if s.parse::<i64>().is_ok() {
        Kind::Int
    } else if s.parse::<f64>().is_ok() && s.bytes().any(|b| b.is_ascii_digit()) {
        Kind::Float
    } else if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        Kind::Bool
    } else if s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
        Kind::Date
    } else if s.len() >= 16
        && s.as_bytes()[4] == b'-'
        && arrow_cast::parse::string_to_timestamp_nanos(s).is_ok()
    {
        Kind::Timestamp
    } else {
        Kind::Text
    }
}

/// The kind of a column holding cells of kinds `a` and `b`.
pub fn merge(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (x, y) if x == y => x,
        (Kind::Null, y) => y,
        (x, Kind::Null) => x,
        (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
        (Kind::Date, Kind::Timestamp) | (Kind::Timestamp, Kind::Date) => Kind::Timestamp,
        _ => Kind::Text,
    }
}

/// The Arrow type a column of kind `k` is read as.
pub fn kind_type(k: Kind) -> DataType {
    match k {
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Date => DataType::Date32,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Null | Kind::Text => DataType::Utf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_lattice() {
        assert_eq!(classify("12"), Kind::Int);
        assert_eq!(classify("1.5"), Kind::Float);
        assert_eq!(classify("TRUE"), Kind::Bool);
        assert_eq!(classify("2024-02-29"), Kind::Date);
        assert_eq!(classify("2024-02-29T10:00:00Z"), Kind::Timestamp);
        assert_eq!(classify("2024-02-29 10:00:00"), Kind::Timestamp);
        assert_eq!(classify("NaN-ish"), Kind::Text);
        assert_eq!(merge(Kind::Int, Kind::Float), Kind::Float);
        assert_eq!(merge(Kind::Int, Kind::Bool), Kind::Text);
        assert_eq!(merge(Kind::Null, Kind::Date), Kind::Date);
    }
}
