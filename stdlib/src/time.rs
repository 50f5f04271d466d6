//! Time functions of the projection language: parsing and formatting RFC 3339
//! timestamps and compact durations, calendar fields of a timestamp, and duration
//! constructors and their inverses (whole units in a duration).
//!
//! A timestamp is an `i64` count of microseconds since 1970-01-01T00:00:00Z, a duration
//! an `i64` count of microseconds. Calendar arithmetic is the proleptic Gregorian
//! calendar in UTC, implemented here with floor division so negative timestamps (before
//! 1970) land on the correct day.
//!
//! Invariant: parsing accepts years 0000..=9999 only, and for every timestamp in that
//! range `parse_rfc3339(&format_rfc3339(t)) == Ok(t)`; for every duration
//! `parse_duration(&format_duration(d)) == Ok(d)`. No function here reads a clock or
//! panics; calendar accessors accept every `i64`.

use crate::{Result, Trap};

/// Microseconds in a millisecond.
const MILLISECOND: i64 = 1_000;
/// Microseconds in a second.
const SECOND: i64 = 1_000_000;
/// Microseconds in a minute.
const MINUTE: i64 = 60 * SECOND;
/// Microseconds in an hour.
const HOUR: i64 = 60 * MINUTE;
/// Microseconds in a day.
const DAY: i64 = 24 * HOUR;

/// Duration units from largest to smallest, with the suffix `format_duration` prints.
const UNITS: [(u64, &str); 6] = [
    (DAY.unsigned_abs(), "d"),
    (HOUR.unsigned_abs(), "h"),
    (MINUTE.unsigned_abs(), "m"),
    (SECOND.unsigned_abs(), "s"),
    (MILLISECOND.unsigned_abs(), "ms"),
    (1, "us"),
];

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`). `month` is 1..=12, `day` 1..=31; exact for |year| < 2^40, far
/// beyond any caller (the parser only passes years 0..=9999).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let shifted_month = (month + 9) % 12; // March = 0 .. February = 11
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) of the day `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`). Exact for every `days` derived from an i64
/// microsecond timestamp (|days| < 1.1e8).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0 .. February = 11
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether `year` is a leap year in the proleptic Gregorian calendar.
fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// Number of days in `month` (1..=12) of `year`; 0 for a month that does not exist.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Whole days since 1970-01-01 (floored) and microseconds into that day.
fn split_day(us: i64) -> (i64, i64) {
    (us.div_euclid(DAY), us.rem_euclid(DAY))
}

/// Formats a year as four digits, or with an explicit sign and at least four digits
/// (ISO 8601 expanded form) when it lies outside 0000..=9999.
fn format_year(year: i64) -> String {
    if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+05}")
    }
}

/// A byte cursor for the fixed-layout parsers below; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// Reads exactly `n` ASCII digits (n <= 9) as a number.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let end = self.pos.checked_add(n)?;
        let chunk = self.bytes.get(self.pos..end)?;
        let mut value: i64 = 0;
        for &b in chunk {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(b - b'0');
        }
        self.pos = end;
        Some(value)
    }

    /// Consumes the next byte if it is one of `options`, returning it.
    fn one_of(&mut self, options: &[u8]) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        if options.contains(&b) {
            self.pos += 1;
            Some(b)
        } else {
            None
        }
    }

    /// The next byte, if any, without consuming it.
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Whether every byte has been consumed.
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

/// The expected layout, quoted in parse error messages.
const RFC3339_LAYOUT: &str =
    "expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or +HH:MM or -HH:MM";

/// Parses `YYYY-MM-DD` at the cursor and returns days since the epoch.
fn parse_ymd(c: &mut Cursor<'_>) -> std::result::Result<i64, &'static str> {
    const LAYOUT: &str = "expected a YYYY-MM-DD date";
    let year = c.digits(4).ok_or(LAYOUT)?;
    c.one_of(b"-").ok_or(LAYOUT)?;
    let month = c.digits(2).ok_or(LAYOUT)?;
    c.one_of(b"-").ok_or(LAYOUT)?;
    let day = c.digits(2).ok_or(LAYOUT)?;
    if !(1..=12).contains(&month) {
        return Err("month must be 01..12");
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err("that day does not exist in that month");
    }
    Ok(days_from_civil(year, month, day))
}

/// Parses a full RFC 3339 timestamp; the error is the reason, without the input.
fn parse_rfc3339_bytes(bytes: &[u8]) -> std::result::Result<i64, &'static str> {
    let mut c = Cursor { bytes, pos: 0 };
    let days = parse_ymd(&mut c).map_err(|e| {
        if e.starts_with("expected") {
            RFC3339_LAYOUT
        } else {
            e
        }
    })?;
    c.one_of(b"Tt ").ok_or(RFC3339_LAYOUT)?;
    let hour = c.digits(2).ok_or(RFC3339_LAYOUT)?;
    c.one_of(b":").ok_or(RFC3339_LAYOUT)?;
    let minute = c.digits(2).ok_or(RFC3339_LAYOUT)?;
    c.one_of(b":").ok_or(RFC3339_LAYOUT)?;
    let second = c.digits(2).ok_or(RFC3339_LAYOUT)?;
    let mut fraction_us: i64 = 0;
    if c.one_of(b".").is_some() {
        let mut digits = 0usize;
        while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
            digits += 1;
            if digits > 9 {
                return Err("the fraction of a second must have 1 to 9 digits");
            }
            if digits <= 6 {
                fraction_us = fraction_us * 10 + i64::from(b - b'0');
            }
            c.pos += 1;
        }
        if digits == 0 {
            return Err("the fraction of a second must have 1 to 9 digits");
        }
        for _ in digits..6 {
            fraction_us *= 10;
        }
    }
    let offset_seconds = match c.one_of(b"Zz+-").ok_or(RFC3339_LAYOUT)? {
        b'Z' | b'z' => 0,
        sign_byte => {
            let sign = if sign_byte == b'-' { -1 } else { 1 };
            let offset_hour = c.digits(2).ok_or(RFC3339_LAYOUT)?;
            c.one_of(b":").ok_or(RFC3339_LAYOUT)?;
            let offset_minute = c.digits(2).ok_or(RFC3339_LAYOUT)?;
            if offset_hour > 23 {
                return Err("the offset hour must be 00..23");
            }
            if offset_minute > 59 {
                return Err("the offset minute must be 00..59");
            }
            sign * (offset_hour * 3600 + offset_minute * 60)
        }
    };
    if !c.at_end() {
        return Err(RFC3339_LAYOUT);
    }
    if hour > 23 {
        return Err("hour must be 00..23");
    }
    if minute > 59 {
        return Err("minute must be 00..59");
    }
    if second > 59 {
        return Err("second must be 00..59 (leap seconds are not supported)");
    }
    // Years 0..=9999 keep every term below 2^59: no overflow is possible.
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Ok(seconds * SECOND + fraction_us)
}

/// Parses an RFC 3339 timestamp such as `2024-05-01T09:00:00Z` or
/// `2024-05-01 11:00:00.25+02:00` into microseconds since the Unix epoch.
///
/// The accepted form is `YYYY-MM-DDTHH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM)`, where the
/// separator may be `T`, `t` or a single space, the year is 0000..=9999, and the
/// fraction has 1 to 9 digits and is truncated to microseconds. The offset is applied,
/// so the result is always the UTC instant.
///
/// # Errors
///
/// [`Trap::InvalidConversion`] naming the input and the reason when the text does not
/// follow the layout, or names a date or time that does not exist (month 13,
/// February 30 in a non-leap year, hour 24, second 60, ...).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::parse_rfc3339;
/// assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Ok(1_000_000));
/// assert_eq!(parse_rfc3339("1970-01-01T02:00:00.5+02:00"), Ok(500_000));
/// assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_err());
/// ```
pub fn parse_rfc3339(s: &str) -> Result<i64> {
    parse_rfc3339_bytes(s.as_bytes()).map_err(|reason| {
        Trap::InvalidConversion(format!("`{s}` is not a valid timestamp: {reason}"))
    })
}

/// Parses a calendar date `YYYY-MM-DD` (year 0000..=9999) into the timestamp of its
/// midnight, UTC.
///
/// # Errors
///
/// [`Trap::InvalidConversion`] naming the input when it is not exactly a `YYYY-MM-DD`
/// date or the date does not exist.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::parse_date;
/// assert_eq!(parse_date("1970-01-02"), Ok(86_400_000_000));
/// assert!(parse_date("2024-13-01").is_err());
/// ```
pub fn parse_date(s: &str) -> Result<i64> {
    let mut c = Cursor {
        bytes: s.as_bytes(),
        pos: 0,
    };
    let parsed = parse_ymd(&mut c).and_then(|days| {
        if c.at_end() {
            Ok(days * DAY)
        } else {
            Err("expected a YYYY-MM-DD date")
        }
    });
    parsed.map_err(|reason| Trap::InvalidConversion(format!("`{s}` is not a valid date: {reason}")))
}

/// Formats a timestamp as RFC 3339 in UTC with a `Z` suffix, printing the fraction as
/// exactly six digits only when it is non-zero: `2024-05-01T09:00:00Z`,
/// `2024-05-01T09:00:00.250000Z`.
///
/// Years outside 0000..=9999 (reachable only through timestamp arithmetic) are printed
/// in ISO 8601 expanded form with a sign, e.g. `-0001-12-31T00:00:00Z`; such text is
/// not accepted back by [`parse_rfc3339`].
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::format_rfc3339;
/// assert_eq!(format_rfc3339(1_714_554_000_000_000), "2024-05-01T09:00:00Z");
/// assert_eq!(format_rfc3339(1_714_554_000_250_000), "2024-05-01T09:00:00.250000Z");
/// assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
/// ```
pub fn format_rfc3339(us: i64) -> String {
    let (days, time_of_day) = split_day(us);
    let date = format_date(days);
    let hour = time_of_day / HOUR;
    let minute = time_of_day % HOUR / MINUTE;
    let second = time_of_day % MINUTE / SECOND;
    let fraction = time_of_day % SECOND;
    if fraction == 0 {
        format!("{date}T{hour:02}:{minute:02}:{second:02}Z")
    } else {
        format!("{date}T{hour:02}:{minute:02}:{second:02}.{fraction:06}Z")
    }
}

/// Formats the day `days` after the epoch as `YYYY-MM-DD`.
fn format_date(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{}-{month:02}-{day:02}", format_year(year))
}

/// Returns the UTC calendar day of a timestamp as `YYYY-MM-DD`, the usual key for
/// daily buckets.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::day;
/// assert_eq!(day(1_714_554_000_000_000), "2024-05-01");
/// assert_eq!(day(-1), "1969-12-31");
/// ```
pub fn day(us: i64) -> String {
    format_date(split_day(us).0)
}

/// Returns the UTC calendar month of a timestamp as `YYYY-MM`, the usual key for
/// monthly buckets.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::month(1_714_554_000_000_000), "2024-05");
/// ```
pub fn month(us: i64) -> String {
    let (year, month, _) = civil_from_days(split_day(us).0);
    format!("{}-{month:02}", format_year(year))
}

/// Returns the UTC calendar year of a timestamp (proleptic Gregorian; year 0 is 1 BC).
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::year(1_714_554_000_000_000), 2024);
/// assert_eq!(datamesh_stdlib::time::year(-1), 1969);
/// ```
pub fn year(us: i64) -> i64 {
    civil_from_days(split_day(us).0).0
}

/// Returns the UTC hour of the day of a timestamp, 0..=23.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::hour(1_714_554_000_000_000), 9);
/// assert_eq!(datamesh_stdlib::time::hour(-1), 23);
/// ```
pub fn hour(us: i64) -> i64 {
    split_day(us).1 / HOUR
}

/// Returns the UTC minute of the hour of a timestamp, 0..=59.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::minute(90 * 60 * 1_000_000), 30);
/// ```
pub fn minute(us: i64) -> i64 {
    split_day(us).1 % HOUR / MINUTE
}

/// Returns the UTC day of the month of a timestamp, 1..=31.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::day_of_month(1_714_554_000_000_000), 1);
/// ```
pub fn day_of_month(us: i64) -> i64 {
    civil_from_days(split_day(us).0).2
}

/// Returns the ISO weekday of a timestamp's UTC day: 1 = Monday through 7 = Sunday.
///
/// # Examples
///
/// ```
/// // 1970-01-01 was a Thursday.
/// assert_eq!(datamesh_stdlib::time::weekday(0), 4);
/// ```
pub fn weekday(us: i64) -> i64 {
    (split_day(us).0 + 3).rem_euclid(7) + 1
}

/// Returns the timestamp of midnight UTC at the start of the timestamp's day, for
/// truncating timestamps to daily buckets.
///
/// The few microseconds before the earliest representable midnight (within a day of
/// `i64::MIN`) have no representable start of day and saturate to `i64::MIN`.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::start_of_day;
/// assert_eq!(start_of_day(1_714_554_000_000_000), 1_714_521_600_000_000);
/// assert_eq!(start_of_day(-1), -86_400_000_000);
/// ```
pub fn start_of_day(us: i64) -> i64 {
    us.saturating_sub(split_day(us).1)
}

/// Multiplies a count by a unit, trapping on overflow.
fn scaled(n: i64, unit: i64) -> Result<i64> {
    n.checked_mul(unit).ok_or(Trap::Overflow("duration"))
}

/// Returns the duration of `n` days (of exactly 24 hours) in microseconds.
///
/// # Errors
///
/// [`Trap::Overflow`]`("duration")` when the duration does not fit in an i64.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{time::days, Trap};
/// assert_eq!(days(2), Ok(172_800_000_000));
/// assert_eq!(days(i64::MAX), Err(Trap::Overflow("duration")));
/// ```
pub fn days(n: i64) -> Result<i64> {
    scaled(n, DAY)
}

/// Returns the duration of `n` hours in microseconds.
///
/// # Errors
///
/// [`Trap::Overflow`]`("duration")` when the duration does not fit in an i64.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::hours(1), Ok(3_600_000_000));
/// ```
pub fn hours(n: i64) -> Result<i64> {
    scaled(n, HOUR)
}

/// Returns the duration of `n` minutes in microseconds.
///
/// # Errors
///
/// [`Trap::Overflow`]`("duration")` when the duration does not fit in an i64.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::minutes(-2), Ok(-120_000_000));
/// ```
pub fn minutes(n: i64) -> Result<i64> {
    scaled(n, MINUTE)
}

/// Returns the duration of `n` seconds in microseconds.
///
/// # Errors
///
/// [`Trap::Overflow`]`("duration")` when the duration does not fit in an i64.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::seconds(3), Ok(3_000_000));
/// ```
pub fn seconds(n: i64) -> Result<i64> {
    scaled(n, SECOND)
}

/// Returns the duration of `n` milliseconds in microseconds.
///
/// # Errors
///
/// [`Trap::Overflow`]`("duration")` when the duration does not fit in an i64.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::millis(250), Ok(250_000));
/// ```
pub fn millis(n: i64) -> Result<i64> {
    scaled(n, MILLISECOND)
}

/// Returns the whole days (of exactly 24 hours) in a duration, truncated toward zero:
/// the inverse of [`days`] (`d / 1d` in the language).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::{days, hours, to_days};
/// assert_eq!(to_days(days(3).unwrap() + hours(23).unwrap()), 3);
/// assert_eq!(to_days(-hours(36).unwrap()), -1);
/// ```
pub fn to_days(us: i64) -> i64 {
    us / DAY
}

/// Returns the whole hours in a duration, truncated toward zero.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::to_hours(5_400_000_000), 1);
/// ```
pub fn to_hours(us: i64) -> i64 {
    us / HOUR
}

/// Returns the whole minutes in a duration, truncated toward zero.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::to_minutes(-90_000_000), -1);
/// ```
pub fn to_minutes(us: i64) -> i64 {
    us / MINUTE
}

/// Returns the whole seconds in a duration, truncated toward zero.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::to_seconds(2_999_999), 2);
/// ```
pub fn to_seconds(us: i64) -> i64 {
    us / SECOND
}

/// Returns the whole milliseconds in a duration, truncated toward zero.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::to_millis(1_500), 1);
/// ```
pub fn to_millis(us: i64) -> i64 {
    us / MILLISECOND
}

/// Returns a duration as a count of microseconds (its exact value).
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::time::to_micros(-7), -7);
/// ```
pub fn to_micros(us: i64) -> i64 {
    us
}

/// Parses a compact duration such as `1h30m`, `250ms`, `2d` or `-1m30s` into
/// microseconds.
///
/// The text is an optional leading `-` (negating the whole duration) followed by one or
/// more groups of ASCII digits and a unit: `d` (24 hours), `h`, `m`, `s`, `ms`, `us`.
/// Groups may come in any order and units may repeat; their values are added.
///
/// # Errors
///
/// [`Trap::InvalidConversion`] naming the input when it is empty or malformed (missing
/// digits or unit, unknown unit, whitespace, `+` sign), or when the total does not fit
/// in an i64.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::parse_duration;
/// assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000));
/// assert_eq!(parse_duration("250ms"), Ok(250_000));
/// assert_eq!(parse_duration("-1m30s"), Ok(-90_000_000));
/// assert!(parse_duration("1x").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<i64> {
    parse_duration_bytes(s.as_bytes()).map_err(|reason| {
        Trap::InvalidConversion(format!("`{s}` is not a valid duration: {reason}"))
    })
}

/// Parses a duration; the error is the reason, without the input.
fn parse_duration_bytes(bytes: &[u8]) -> std::result::Result<i64, &'static str> {
    const LAYOUT: &str =
        "expected one or more <number><unit> groups like 1h30m, with units d, h, m, s, ms, us";
    const RANGE: &str = "it is outside the duration range";
    let negative = bytes.first() == Some(&b'-');
    let mut pos = usize::from(negative);
    if pos >= bytes.len() {
        return Err(LAYOUT);
    }
    // Sum the magnitude as u64 so that i64::MIN (magnitude 2^63) is reachable.
    let mut magnitude: u64 = 0;
    while pos < bytes.len() {
        let start = pos;
        let mut count: u64 = 0;
        while let Some(&b) = bytes.get(pos).filter(|b| b.is_ascii_digit()) {
            count = count
                .checked_mul(10)
                .and_then(|c| c.checked_add(u64::from(b - b'0')))
                .ok_or(RANGE)?;
            pos += 1;
        }
        if pos == start {
            return Err(LAYOUT);
        }
        let (unit, width) = match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(b'd'), _) => (DAY, 1),
            (Some(b'h'), _) => (HOUR, 1),
            (Some(b'm'), Some(b's')) => (MILLISECOND, 2),
            (Some(b'm'), _) => (MINUTE, 1),
            (Some(b's'), _) => (SECOND, 1),
            (Some(b'u'), Some(b's')) => (1, 2),
            _ => return Err(LAYOUT),
        };
        pos += width;
        magnitude = count
            .checked_mul(unit.unsigned_abs())
            .and_then(|group| magnitude.checked_add(group))
            .ok_or(RANGE)?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude).ok_or(RANGE)
    } else {
        i64::try_from(magnitude).map_err(|_| RANGE)
    }
}

/// Formats a duration in the canonical compact form parsed by [`parse_duration`]: units
/// `d h m s ms us` from largest to smallest, zero units omitted, `0s` for zero and a
/// leading `-` for negative durations.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::time::format_duration;
/// assert_eq!(format_duration(5_400_000_000), "1h30m");
/// assert_eq!(format_duration(250_000), "250ms");
/// assert_eq!(format_duration(90_061_000_001), "1d1h1m1s1us");
/// assert_eq!(format_duration(0), "0s");
/// assert_eq!(format_duration(-90_000_000), "-1m30s");
/// ```
pub fn format_duration(us: i64) -> String {
    if us == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if us < 0 {
        out.push('-');
    }
    // unsigned_abs handles i64::MIN, whose magnitude does not fit in an i64.
    let mut rest = us.unsigned_abs();
    for (unit, suffix) in UNITS {
        let count = rest / unit;
        rest %= unit;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(suffix);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0000-01-01T00:00:00Z.
    const MIN_IN_RANGE: i64 = -62_167_219_200_000_000;
    /// 9999-12-31T23:59:59.999999Z.
    const MAX_IN_RANGE: i64 = 253_402_300_799_999_999;

    fn invalid(result: Result<i64>, input: &str) -> bool {
        matches!(result, Err(Trap::InvalidConversion(ref m)) if m.contains(&format!("`{input}`")))
    }

    /// A small deterministic generator (64-bit LCG with an output mix) for sweeps.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state ^ (*state >> 29)
    }

    #[test]
    fn civil_conversions_agree_over_the_whole_range() {
        let mut days = days_from_civil(0, 1, 1);
        assert_eq!(days, -719_528);
        for year in 0..=9999 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), days);
                    assert_eq!(civil_from_days(days), (year, month, day));
                    days += 1;
                }
            }
        }
        assert_eq!(days, days_from_civil(10_000, 1, 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2000));
        assert!(is_leap_year(2024));
        assert!(is_leap_year(0));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2023));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2024, 13), 0);
    }

    #[test]
    fn parse_rfc3339_basic() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2024-05-01T09:00:00Z"),
            Ok(1_714_554_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01t09:00:00z"),
            Ok(1_714_554_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01 09:00:00Z"),
            Ok(1_714_554_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T11:00:00+02:00"),
            Ok(1_714_554_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T04:30:00-04:30"),
            Ok(1_714_554_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T09:00:00-00:00"),
            Ok(1_714_554_000_000_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999999Z"), Ok(-1));
        assert_eq!(parse_rfc3339("0000-01-01T00:00:00Z"), Ok(MIN_IN_RANGE));
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59.999999Z"),
            Ok(MAX_IN_RANGE)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Ok(951_782_400_000_000)
        );
    }

    #[test]
    fn parse_rfc3339_fraction_is_truncated_to_micros() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.5Z"), Ok(500_000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.25Z"), Ok(250_000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000001Z"), Ok(1));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.0000019Z"), Ok(1));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.999999999Z"), Ok(999_999));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.0000009Z"),
            Ok(-1_000_000)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000Z"), Ok(0));
    }

    #[test]
    fn parse_rfc3339_offsets_may_leave_the_year_range() {
        // A valid RFC 3339 text always parses, even if its UTC instant is in year -1 or 10000.
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00+01:00"),
            Ok(MIN_IN_RANGE - HOUR)
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59.999999-23:59"),
            Ok(MAX_IN_RANGE + 23 * HOUR + 59 * MINUTE)
        );
    }

    #[test]
    fn parse_rfc3339_rejects_malformed_and_impossible() {
        for s in [
            "",
            "2024",
            "2024-05-01",
            "2024-05-01T09:00Z",
            "2024-05-01T09:00:00",
            "2024-05-01T09:00:00ZZ",
            "2024-05-01T09:00:00Z ",
            " 2024-05-01T09:00:00Z",
            "2024-05-01X09:00:00Z",
            "2024-05-01  09:00:00Z",
            "2024-5-01T09:00:00Z",
            "24-05-01T09:00:00Z",
            "+2024-05-01T09:00:00Z",
            "12024-05-01T09:00:00Z",
            "-0001-05-01T09:00:00Z",
            "2024-05-01T9:00:00Z",
            "2024-05-01T09:00:00.Z",
            "2024-05-01T09:00:00.1234567890Z",
            "2024-05-01T09:00:00,5Z",
            "2024-05-01T09:00:00+0200",
            "2024-05-01T09:00:00+02",
            "2024-05-01T09:00:00+24:00",
            "2024-05-01T09:00:00+02:60",
            "2024-05-01T09:00:00UTC",
            "2024-00-01T09:00:00Z",
            "2024-13-01T09:00:00Z",
            "2024-05-00T09:00:00Z",
            "2024-04-31T09:00:00Z",
            "2023-02-29T09:00:00Z",
            "1900-02-29T09:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T09:60:00Z",
            "2024-05-01T09:00:60Z",
            "2024-05-01T09:00:00.5é",
            "２024-05-01T09:00:00Z",
            "2024-05-01T09:00:00+02:00\u{0}",
        ] {
            assert!(
                invalid(parse_rfc3339(s), s),
                "{s:?} -> {:?}",
                parse_rfc3339(s)
            );
        }
        assert_eq!(
            parse_rfc3339("2023-02-29T00:00:00Z"),
            Err(Trap::InvalidConversion(
                "`2023-02-29T00:00:00Z` is not a valid timestamp: that day does not exist in that month"
                    .to_string()
            ))
        );
    }

    #[test]
    fn parse_date_midnight_utc() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("1969-12-31"), Ok(-DAY));
        assert_eq!(parse_date("2024-02-29"), Ok(1_709_164_800_000_000));
        assert_eq!(parse_date("0000-01-01"), Ok(MIN_IN_RANGE));
        assert_eq!(parse_date("9999-12-31"), Ok(MAX_IN_RANGE + 1 - DAY));
        for s in [
            "",
            "2024-02-30",
            "2023-02-29",
            "2024-1-01",
            "2024-01-01T00:00:00Z",
            "2024-01-01 ",
            "2024/01/01",
            "20240101",
        ] {
            assert!(invalid(parse_date(s), s), "{s:?}");
        }
    }

    #[test]
    fn format_rfc3339_examples() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_714_554_000_000_000),
            "2024-05-01T09:00:00Z"
        );
        assert_eq!(
            format_rfc3339(1_714_554_000_250_000),
            "2024-05-01T09:00:00.250000Z"
        );
        assert_eq!(format_rfc3339(1), "1970-01-01T00:00:00.000001Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_rfc3339(-1_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(MIN_IN_RANGE), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(MAX_IN_RANGE), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn format_rfc3339_outside_year_range_never_panics() {
        assert_eq!(
            format_rfc3339(MIN_IN_RANGE - 1),
            "-0001-12-31T23:59:59.999999Z"
        );
        assert_eq!(format_rfc3339(MAX_IN_RANGE + 1), "+10000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(i64::MAX), "+294247-01-10T04:00:54.775807Z");
        assert_eq!(format_rfc3339(i64::MIN), "-290308-12-21T19:59:05.224192Z");
        assert!(parse_rfc3339(&format_rfc3339(MAX_IN_RANGE + 1)).is_err());
    }

    #[test]
    fn rfc3339_round_trips() {
        let mut state = 42;
        let span = (MAX_IN_RANGE - MIN_IN_RANGE).unsigned_abs() + 1;
        let mut samples = vec![MIN_IN_RANGE, MAX_IN_RANGE, 0, -1, 1, -DAY, DAY - 1];
        for _ in 0..20_000 {
            let offset = i64::try_from(lcg(&mut state) % span).expect("span fits in i64");
            samples.push(MIN_IN_RANGE + offset);
            // Also whole seconds, which print without a fraction.
            samples.push(MIN_IN_RANGE + offset / SECOND * SECOND);
        }
        for t in samples {
            let text = format_rfc3339(t);
            assert_eq!(parse_rfc3339(&text), Ok(t), "{text}");
        }
    }

    #[test]
    fn calendar_fields() {
        let t = parse_rfc3339("2024-05-01T09:41:07.5Z").expect("valid timestamp");
        assert_eq!(day(t), "2024-05-01");
        assert_eq!(month(t), "2024-05");
        assert_eq!(year(t), 2024);
        assert_eq!(hour(t), 9);
        assert_eq!(minute(t), 41);
        assert_eq!(day_of_month(t), 1);
        assert_eq!(weekday(t), 3); // Wednesday
        assert_eq!(
            start_of_day(t),
            parse_date("2024-05-01").expect("valid date")
        );

        // Negative timestamps use floor division.
        assert_eq!(day(-1), "1969-12-31");
        assert_eq!(month(-1), "1969-12");
        assert_eq!(year(-1), 1969);
        assert_eq!(hour(-1), 23);
        assert_eq!(minute(-1), 59);
        assert_eq!(day_of_month(-1), 31);
        assert_eq!(weekday(-1), 3); // 1969-12-31 was a Wednesday
        assert_eq!(start_of_day(-1), -DAY);
        assert_eq!(start_of_day(-DAY), -DAY);
        assert_eq!(start_of_day(-DAY - 1), -2 * DAY);
        assert_eq!(start_of_day(0), 0);

        assert_eq!(day(MIN_IN_RANGE), "0000-01-01");
        assert_eq!(weekday(MIN_IN_RANGE), 6); // 0000-01-01 was a Saturday
        assert_eq!(day(MAX_IN_RANGE), "9999-12-31");
        assert_eq!(weekday(MAX_IN_RANGE), 5); // 9999-12-31 is a Friday
        assert_eq!(day(parse_date("2024-05-05").expect("valid")), "2024-05-05");
        assert_eq!(weekday(parse_date("2024-05-05").expect("valid")), 7); // Sunday
        assert_eq!(weekday(parse_date("2024-05-06").expect("valid")), 1); // Monday
    }

    #[test]
    fn calendar_fields_accept_every_i64() {
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            assert!((0..=23).contains(&hour(t)));
            assert!((0..=59).contains(&minute(t)));
            assert!((1..=31).contains(&day_of_month(t)));
            assert!((1..=7).contains(&weekday(t)));
            assert!(!day(t).is_empty());
            assert!(!month(t).is_empty());
            assert!(start_of_day(t) <= t);
        }
        assert_eq!(year(i64::MIN), -290_308);
        assert_eq!(year(i64::MAX), 294_247);
        assert_eq!(day(i64::MIN), "-290308-12-21");
        assert_eq!(month(i64::MAX), "+294247-01");
        // The earliest representable midnight and what precedes it.
        let earliest_midnight = (i64::MIN / DAY) * DAY;
        assert_eq!(start_of_day(earliest_midnight + 5), earliest_midnight);
        assert_eq!(start_of_day(earliest_midnight - 1), i64::MIN);
        assert_eq!(start_of_day(i64::MIN), i64::MIN);
        assert_eq!(start_of_day(i64::MAX), i64::MAX - i64::MAX % DAY);
    }

    #[test]
    fn duration_constructors() {
        assert_eq!(days(1), Ok(DAY));
        assert_eq!(hours(-1), Ok(-HOUR));
        assert_eq!(minutes(0), Ok(0));
        assert_eq!(seconds(1), Ok(SECOND));
        assert_eq!(millis(1), Ok(1_000));
        assert_eq!(days(106_751_991), Ok(106_751_991 * DAY));
        assert_eq!(days(106_751_992), Err(Trap::Overflow("duration")));
        assert_eq!(days(-106_751_992), Err(Trap::Overflow("duration")));
        assert_eq!(hours(i64::MIN), Err(Trap::Overflow("duration")));
        assert_eq!(minutes(i64::MAX), Err(Trap::Overflow("duration")));
        assert_eq!(
            seconds(i64::MAX / SECOND + 1),
            Err(Trap::Overflow("duration"))
        );
        assert_eq!(millis(i64::MIN / 1000), Ok(i64::MIN / 1000 * 1000));
        assert_eq!(millis(i64::MIN / 1000 - 1), Err(Trap::Overflow("duration")));
    }

    #[test]
    fn parse_duration_groups() {
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration("250ms"), Ok(250 * MILLISECOND));
        assert_eq!(parse_duration("2d"), Ok(2 * DAY));
        assert_eq!(parse_duration("1m30s"), Ok(90 * SECOND));
        assert_eq!(parse_duration("7us"), Ok(7));
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("-0s"), Ok(0));
        assert_eq!(parse_duration("-1h"), Ok(-HOUR));
        assert_eq!(
            parse_duration("1d1h1m1s1ms1us"),
            Ok(DAY + HOUR + MINUTE + SECOND + 1001)
        );
        assert_eq!(parse_duration("1s1h"), Ok(HOUR + SECOND));
        assert_eq!(parse_duration("1m1m"), Ok(2 * MINUTE));
        assert_eq!(parse_duration("90m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration("1ms1m"), Ok(MINUTE + MILLISECOND));
        assert_eq!(parse_duration("007s"), Ok(7 * SECOND));
        assert_eq!(parse_duration("9223372036854775807us"), Ok(i64::MAX));
        assert_eq!(parse_duration("-9223372036854775808us"), Ok(i64::MIN));
    }

    #[test]
    fn parse_duration_rejects_malformed_and_overflow() {
        for s in [
            "",
            "-",
            "--1s",
            "+1s",
            "1",
            "h",
            "1h30",
            "1 h",
            " 1h",
            "1h ",
            "1H",
            "1x",
            "1u",
            "1µs",
            "1ns",
            "1.5h",
            "1h-30m",
            "1_000ms",
            "9223372036854775808us",
            "-9223372036854775809us",
            "99999999999999999999s",
            "106751992d",
            "9223372036854775807us1us",
            "-9223372036854775808us1us",
        ] {
            assert!(
                invalid(parse_duration(s), s),
                "{s:?} -> {:?}",
                parse_duration(s)
            );
        }
    }

    #[test]
    fn format_duration_examples() {
        assert_eq!(format_duration(5_400_000_000), "1h30m");
        assert_eq!(format_duration(250_000), "250ms");
        assert_eq!(format_duration(90_061_000_001), "1d1h1m1s1us");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(1), "1us");
        assert_eq!(format_duration(-1), "-1us");
        assert_eq!(format_duration(DAY * 400), "400d");
        assert_eq!(format_duration(-90 * SECOND), "-1m30s");
        assert_eq!(format_duration(i64::MAX), "106751991d4h54s775ms807us");
        assert_eq!(format_duration(i64::MIN), "-106751991d4h54s775ms808us");
    }

    #[test]
    fn duration_round_trips() {
        let mut state = 7;
        let mut samples = vec![0, 1, -1, i64::MAX, i64::MIN, i64::MIN + 1, DAY, -DAY];
        for _ in 0..20_000 {
            let raw = lcg(&mut state);
            let shift = raw % 63;
            let magnitude = i64::try_from((raw >> 1) >> shift).expect("63-bit value fits");
            samples.push(if raw.is_multiple_of(2) {
                magnitude
            } else {
                -magnitude
            });
        }
        for d in samples {
            let text = format_duration(d);
            assert_eq!(parse_duration(&text), Ok(d), "{text}");
        }
    }
}
