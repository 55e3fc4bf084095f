//! SigV4's timestamps: `YYYYMMDD'T'HHMMSS'Z'` (`X-Amz-Date`) and the `YYYYMMDD` date of a
//! credential scope, both in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Utc};

const FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A request time as SigV4 writes it, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AmzDate(DateTime<Utc>);

impl AmzDate {
    /// Parses `20150830T123600Z`; `None` for anything else.
    pub fn parse(text: &str) -> Option<AmzDate> {
        if text.len() != 16 {
            return None;
        }
        NaiveDateTime::parse_from_str(text, FORMAT)
            .ok()
            .map(|t| AmzDate(t.and_utc()))
    }

    /// `at`, to the second.
    pub fn from_system_time(at: SystemTime) -> AmzDate {
        let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        AmzDate(DateTime::from_timestamp(secs as i64, 0).unwrap_or_default())
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.timestamp().max(0) as u64)
    }

    /// `20150830T123600Z`.
    pub fn timestamp(self) -> String {
        self.0.format(FORMAT).to_string()
    }

    /// `20150830`, the credential scope's date.
    pub fn date(self) -> String {
        self.0.format("%Y%m%d").to_string()
    }

    /// How far apart two times are, either way.
    pub fn distance(self, other: AmzDate) -> Duration {
        Duration::from_secs(self.0.timestamp().abs_diff(other.0.timestamp()))
    }

    pub fn plus(self, by: Duration) -> AmzDate {
        AmzDate(self.0 + chrono::Duration::seconds(by.as_secs() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_anything_else_is_refused() {
        let t = AmzDate::parse("20150830T123600Z").unwrap();
        assert_eq!(t.timestamp(), "20150830T123600Z");
        assert_eq!(t.date(), "20150830");
        assert_eq!(AmzDate::from_system_time(t.to_system_time()), t);
        for bad in [
            "2015-08-30T12:36:00Z",
            "20150830T123600",
            "20151330T123600Z",
            "",
        ] {
            assert_eq!(AmzDate::parse(bad), None, "{bad}");
        }
        let later = t.plus(Duration::from_secs(900));
        assert_eq!(later.timestamp(), "20150830T125100Z");
        assert_eq!(t.distance(later), later.distance(t));
    }
}
