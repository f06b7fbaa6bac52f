//! Time stamps: the kernel stamps events with the boot-time clock (it keeps counting through
//! suspend and never jumps); [`BootClock`] turns those into wall-clock RFC 3339 strings.

/// Converts boot-time nanoseconds to wall-clock time, using the offset between the two clocks
/// measured once when the agent starts.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Wall-clock nanoseconds at boot (CLOCK_REALTIME − CLOCK_BOOTTIME).
    pub boot_epoch_ns: i128,
}

impl BootClock {
    /// A clock whose boot happened `boot_epoch_ns` after the Unix epoch.
    pub fn new(boot_epoch_ns: i128) -> Self {
        BootClock { boot_epoch_ns }
    }

    /// Unix nanoseconds of a boot-time stamp.
    pub fn unix_ns(&self, ktime: u64) -> i128 {
        self.boot_epoch_ns + ktime as i128
    }

    /// RFC 3339 with nanoseconds, UTC, of a boot-time stamp.
    pub fn rfc3339(&self, ktime: u64) -> String {
        rfc3339(self.unix_ns(ktime))
    }
}

/// Formats Unix nanoseconds as `YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ`.
pub fn rfc3339(unix_ns: i128) -> String {
    // 128-bit division is a call; every time until 2262 fits 64 bits.
    let (secs, nanos) = match i64::try_from(unix_ns) {
        Ok(ns) => (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000)),
        Err(_) => (
            unix_ns.div_euclid(1_000_000_000) as i64,
            unix_ns.rem_euclid(1_000_000_000) as i64,
        ),
    };
    // Every event's time, and every process's start: the events of one second share all but
    // the fraction, so each thread keeps the last second's text and writes only the nanoseconds.
    let mut out = String::with_capacity(30);
    let kept = LAST_SECOND.with_borrow_mut(|(at, text)| {
        if *at != Some(secs) {
            let second = second_text(secs)
                .and_then(|second| String::from_utf8(second.to_vec()).ok())
                .unwrap_or_default();
            (*at, *text) = (Some(secs), second);
        }
        out.push_str(text);
        !text.is_empty()
    });
    if !kept {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
        return format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{nanos:09}Z");
    }
    // Nine digits: a billion more has ten, of which the first is dropped.
    out.push_str(&itoa::Buffer::new().format(1_000_000_000 + nanos as u64)[1..]);
    out.push('Z');
    out
}

thread_local! {
    /// The last second formatted (`YYYY-MM-DDThh:mm:ss.`; empty for a year outside 0 to 9999).
    static LAST_SECOND: std::cell::RefCell<(Option<i64>, String)> =
        const { std::cell::RefCell::new((None, String::new())) };
    /// The second (`YYYY-MM-DDThh:mm:ss.`) of the last time parsed in vigil's own shape and
    /// its nanoseconds since the epoch.
    static LAST_PARSED: std::cell::Cell<(Option<[u8; 20]>, u64)> =
        const { std::cell::Cell::new((None, 0)) };
}

/// `YYYY-MM-DDThh:mm:ss.` of a second since the epoch; `None` outside years 0 to 9999.
fn second_text(secs: i64) -> Option<[u8; 20]> {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00.";
    write_digits(&mut out[0..4], y as u64);
    write_digits(&mut out[5..7], m.into());
    write_digits(&mut out[8..10], d.into());
    write_digits(&mut out[11..13], (rem / 3600) as u64);
    write_digits(&mut out[14..16], (rem % 3600 / 60) as u64);
    write_digits(&mut out[17..19], (rem % 60) as u64);
    Some(out)
}

/// Writes `n`'s last `out.len()` decimal digits, zero-padded.
fn write_digits(out: &mut [u8], mut n: u64) {
    for place in out.iter_mut().rev() {
        *place = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Nanoseconds since the epoch of a UTC RFC 3339 time as vigil writes it
/// (`2026-11-25T10:00:00.123456789Z`; the fraction may be shorter or absent); `None` for
/// anything else, or a time before 1970.
pub fn parse_rfc3339_ns(t: &str) -> Option<u64> {
    fn num(s: &str) -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    // Every record's time is read back once (the exporters' `Record`): vigil's own shape is
    // read at fixed places, and the second of the last one read is kept, so that a time of the
    // same second needs only its fraction read.
    let bytes = t.as_bytes();
    if bytes.len() == 30 && bytes[29] == b'Z' {
        let kept = LAST_PARSED.with(|last| {
            let (second, at) = last.get();
            second
                .is_some_and(|second| second.as_slice() == &bytes[..20])
                .then_some(at)
        });
        if let (Some(at), Some(nanos)) = (kept, digits(&bytes[20..29])) {
            return at.checked_add(nanos);
        }
    }
    if let Some(parts) = fixed_parts(bytes) {
        let mut second = [0u8; 20];
        second.copy_from_slice(&bytes[..20]);
        let at = from_parts([
            parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], 0,
        ])?;
        LAST_PARSED.with(|last| last.set((Some(second), at)));
        return at.checked_add(parts[6]);
    }
    let (date, time) = t.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':');
    let (hh, mm, ss) = (num(h.next()?)?, num(h.next()?)?, num(h.next()?)?);
    if d.next().is_some() || h.next().is_some() || frac.len() > 9 {
        return None;
    }
    let nanos = num(frac)? * 10u64.pow(9 - frac.len() as u32);
    from_parts([y, m, day, hh, mm, ss, nanos])
}

/// The number `t` writes in ASCII digits, `None` if any byte is not one.
fn digits(t: &[u8]) -> Option<u64> {
    t.iter().try_fold(0u64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// `YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ` split into its seven numbers; `None` for any other shape.
fn fixed_parts(t: &[u8]) -> Option<[u64; 7]> {
    if t.len() != 30 || t[29] != b'Z' {
        return None;
    }
    let mut parts = [0u64; 7];
    let fields = [
        (0, 4, b'-'),
        (5, 2, b'-'),
        (8, 2, b'T'),
        (11, 2, b':'),
        (14, 2, b':'),
        (17, 2, b'.'),
        (20, 9, b'Z'),
    ];
    for (part, (at, width, after)) in parts.iter_mut().zip(fields) {
        if t[at + width] != after {
            return None;
        }
        for b in &t[at..at + width] {
            if !b.is_ascii_digit() {
                return None;
            }
            *part = *part * 10 + u64::from(b - b'0');
        }
    }
    Some(parts)
}

/// Nanoseconds since the epoch of a checked civil date and time.
fn from_parts([y, m, day, hh, mm, ss, nanos]: [u64; 7]) -> Option<u64> {
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days since the epoch from a civil date (H. Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    // Nanoseconds since the epoch fit 64 bits until 2554: a later time is none.
    days.checked_mul(86_400)?
        .checked_add(hh * 3600 + mm * 60 + ss)?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.123456789Z, a leap day.
        assert_eq!(
            rfc3339(1_709_210_096_123_456_789),
            "2024-02-29T12:34:56.123456789Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn the_kept_second_is_the_instant_s_own() {
        let reference = |ns: i128| {
            let secs = ns.div_euclid(1_000_000_000) as i64;
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let rem = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60,
                ns.rem_euclid(1_000_000_000)
            )
        };
        // Within a second, across seconds, back in time, across a day and a year.
        let base = 1_767_225_599_999_999_998i128; // 2025-12-31T23:59:59.999999998Z
        for ns in [
            base,
            base + 1,
            base + 2,
            base + 3,
            base - 1_000_000_000,
            base + 2,
            base + 86_400_000_000_000,
            0,
            base,
            // Year 10000: no second kept, written in full, twice; then a kept one again.
            253_402_300_800_000_000_005,
            253_402_300_800_000_000_006,
            base,
        ] {
            assert_eq!(rfc3339(ns), reference(ns), "{ns}");
        }
    }

    #[test]
    fn parses_what_it_formats() {
        for ns in [0i128, 1_709_210_096_123_456_789, 1_764_000_000_000_000_001] {
            assert_eq!(parse_rfc3339_ns(&rfc3339(ns)), Some(ns as u64));
        }
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:56Z"),
            Some(1_709_210_096_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:56.5Z"),
            Some(1_709_210_096_500_000_000)
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56.Z",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_kept_second_of_a_parsed_time_serves_only_its_own_second() {
        let base = 1_709_210_096_000_000_000u64;
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:56.000000007Z"),
            Some(base + 7)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:56.999999999Z"),
            Some(base + 999_999_999)
        );
        assert_eq!(parse_rfc3339_ns("2024-02-29T12:34:56.00000000xZ"), None);
        assert_eq!(parse_rfc3339_ns("2024-02-29T12:34:56.0000000000"), None);
        // Past 2554 nanoseconds since the epoch no longer fit 64 bits.
        assert_eq!(parse_rfc3339_ns("9999-12-31T23:59:59.999999999Z"), None);
        assert_eq!(parse_rfc3339_ns("9999-12-31T23:59:59.000000001Z"), None);
        assert_eq!(
            parse_rfc3339_ns("2554-07-21T23:34:33Z"),
            Some(18_446_744_073_000_000_000)
        );
        assert_eq!(parse_rfc3339_ns("2554-07-21T23:34:34Z"), None);
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:57.000000001Z"),
            Some(base + 1_000_000_001)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:56.5Z"),
            Some(base + 500_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:34:56.000000002Z"),
            Some(base + 2)
        );
        // A thread that parsed nothing yet has no second to match.
        std::thread::spawn(|| {
            let zeros = format!("{}000000001Z", "\0".repeat(20));
            assert_eq!(parse_rfc3339_ns(&zeros), None);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn boot_clock_adds_the_offset() {
        let c = BootClock::new(1_000_000_000);
        assert_eq!(c.rfc3339(500), "1970-01-01T00:00:01.000000500Z");
        assert_eq!(
            rfc3339(1_764_930_245_123_456_789),
            "2025-12-05T10:24:05.123456789Z"
        );
        assert_eq!(
            rfc3339(-1),
            format!("{:04}-12-31T23:59:59.999999999Z", 1969)
        );
        assert_eq!(
            rfc3339(253_402_300_800_000_000_000),
            "10000-01-01T00:00:00.000000000Z"
        );
    }
}
