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
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
    fn boot_clock_adds_the_offset() {
        let c = BootClock::new(1_000_000_000);
        assert_eq!(c.rfc3339(500), "1970-01-01T00:00:01.000000500Z");
    }
}
