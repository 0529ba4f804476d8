//! Gateway API durations (GEP-2257), as used by HTTPRoute `timeouts` and `retry.backoff`.
//!
//! GEP-2257: "A duration string is a sequence of at most four positive integers each
//! followed by a unit ... `h` (hours), `m` (minutes), `s` (seconds), `ms` (milliseconds)";
//! the CRD's pattern is `^([0-9]{1,5}(h|m|s|ms)){1,4}$`. "0s" is the zero duration. The
//! result is in milliseconds, the finest unit the format can express, so nothing is
//! rounded.

/// Parses `text` into milliseconds, or says why it is not a Gateway API duration.
pub(crate) fn parse_ms(text: &str) -> Result<u64, &'static str> {
    const FORMAT: &str = "must be up to four <number><unit> parts, units h, m, s or ms";
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut parts = 0;
    let mut total: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &text[start..i];
        if digits.is_empty() || digits.len() > 5 {
            return Err(FORMAT);
        }
        // At most five digits: always fits.
        let n: u64 = digits.parse().map_err(|_| FORMAT)?;
        let unit_ms = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'm'), Some(b's')) => {
                i += 2;
                1
            }
            (Some(b'h'), _) => {
                i += 1;
                3_600_000
            }
            (Some(b'm'), _) => {
                i += 1;
                60_000
            }
            (Some(b's'), _) => {
                i += 1;
                1_000
            }
            _ => return Err(FORMAT),
        };
        parts += 1;
        if parts > 4 {
            return Err(FORMAT);
        }
        total += n * unit_ms;
    }
    if parts == 0 {
        return Err(FORMAT);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_durations() {
        let cases = [
            ("0s", 0),
            ("0ms", 0),
            ("500ms", 500),
            ("1s", 1_000),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1m1s1ms", 61_001),
            ("1h1m1s1ms", 3_661_001),
            ("99999ms", 99_999),
        ];
        for (text, want) in cases {
            assert_eq!(parse_ms(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn invalid_durations() {
        for text in [
            "",
            "1",
            "s",
            "1d",
            "1.5s",
            "-1s",
            "1 s",
            "100000s",
            "1h1m1s1ms1ms",
            "1sm",
            "ms",
        ] {
            assert!(parse_ms(text).is_err(), "{text:?} accepted");
        }
    }
}
