//! Wall-clock time in the unit the decision log stores: milliseconds since the
//! Unix epoch. One function, so the online and offline paths stamp alike.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ms since the epoch; 0 if the clock is before it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const DAY_MS: i64 = 86_400_000;

/// The UTC date of `ms` as `YYYY-MM-DD` (how spend is reported per day).
pub fn utc_day(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The year and month of a `YYYY-MM-DD` day: its first 7 characters.
pub fn month_of(day: &str) -> &str {
    day.get(..7).unwrap_or(day)
}

/// The start of `ms`'s UTC month, in ms.
pub fn month_start_ms(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    days_from_civil(y, m, 1) * DAY_MS
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H.
/// Hinnant's algorithm, the inverse of `days_from_civil`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_in_utc() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(1_709_251_200_000 + 3_723_000), "2024-03-01");
        assert_eq!(utc_day(1_709_251_200_000 - 1), "2024-02-29");
        assert_eq!(
            month_start_ms(1_709_251_200_000 + 86_400_000 * 20),
            1_709_251_200_000
        );
        assert_eq!(month_of("2024-03-01"), "2024-03");
    }
}
