//! Times and durations given on the command line: `--as-of` and `--now` take RFC 3339 or unix
//! seconds, `--grace` takes seconds or a number with a unit (s, m, h, d).

/// Parses RFC 3339 (`2024-05-01T12:00:00Z`, any offset) or unix seconds into unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Some(secs);
    }
    t.parse::<jiff::Timestamp>().ok().map(|ts| ts.as_second())
}

/// Parses `3600`, `90s`, `30m`, `6h` or `1d` into seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Unix seconds as RFC 3339 in UTC, for logs and summaries.
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{secs}"))
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_spellings() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Some(1_700_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2023-11-14"), None);
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("3600"), Some(3600));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("6h"), Some(21_600));
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("-1d"), None);
        assert_eq!(parse_duration(""), None);
    }
}
