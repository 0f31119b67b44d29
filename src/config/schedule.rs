//! Alternative rate limits on a weekly schedule (`[[schedule]]` in the config file).
//!
//! Which limits are in force is a pure function of the local wall-clock time
//! ([`Schedule::limits_at`]), so it is tested with any time one likes; the engine
//! asks it once a second with [`Clock::now`], whose start a test may set
//! (`CAS_CLOCK`, unix seconds).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::values::{Days, Rate, TimeOfDay};

/// One period of alternative limits: on `days`, from `from` to `to` (local time;
/// `to` before `from` runs over midnight into the next day).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Rule {
    pub days: Days,
    pub from: TimeOfDay,
    pub to: TimeOfDay,
    /// The global upload limit during the period (absent: the usual one).
    pub upload_limit: Option<Rate>,
    /// The global download limit during the period (absent: the usual one).
    pub download_limit: Option<Rate>,
}

/// A local wall-clock time within the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallTime {
    /// 0 is Monday.
    pub weekday: u8,
    /// Minutes since midnight, below 1440.
    pub minute: u16,
}

impl Rule {
    /// Whether the period covers `t`.
    pub fn covers(&self, t: WallTime) -> bool {
        let (from, to, m) = (self.from.0, self.to.0, t.minute);
        let yesterday = (t.weekday + 6) % 7;
        match from.cmp(&to) {
            std::cmp::Ordering::Less => self.days.has(t.weekday) && from <= m && m < to,
            // Over midnight: the evening of a listed day, or the morning after one.
            std::cmp::Ordering::Greater => {
                (self.days.has(t.weekday) && m >= from) || (self.days.has(yesterday) && m < to)
            }
            std::cmp::Ordering::Equal => self.days.has(t.weekday),
        }
    }
}

/// Global limits: the usual ones, or a rule's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InForce {
    pub upload: Rate,
    pub download: Rate,
    /// The rule in force (its index in the file, from 0), if any.
    pub rule: Option<usize>,
}

/// The usual limits and the rules that replace them at times.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    pub upload: Rate,
    pub download: Rate,
    pub rules: Vec<Rule>,
}

impl Schedule {
    /// The limits in force at `t`: the first rule that covers it, else the usual.
    pub fn limits_at(&self, t: WallTime) -> InForce {
        match self.rules.iter().position(|r| r.covers(t)) {
            Some(i) => {
                let r = &self.rules[i];
                InForce {
                    upload: r.upload_limit.unwrap_or(self.upload),
                    download: r.download_limit.unwrap_or(self.download),
                    rule: Some(i),
                }
            }
            None => InForce {
                upload: self.upload,
                download: self.download,
                rule: None,
            },
        }
    }
}

/// The clock schedules are read against: the system's, or one started at a given
/// time (`CAS_CLOCK`, unix seconds: tests) that runs at the real pace from there.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: SystemTime,
    at: Instant,
}

impl Clock {
    /// The system clock, or the one `CAS_CLOCK` sets.
    pub fn from_env() -> Clock {
        let start = std::env::var("CAS_CLOCK")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or_else(SystemTime::now, |s| UNIX_EPOCH + Duration::from_secs(s));
        Clock {
            start,
            at: Instant::now(),
        }
    }

    /// The local wall-clock time now (the time zone is the process's: `TZ`).
    pub fn now(&self) -> WallTime {
        let now = self.start + self.at.elapsed();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as libc::time_t);
        local(secs)
    }
}

extern "C" {
    /// POSIX: reads `TZ` (localtime_r need not).
    fn tzset();
}

/// `secs` since the epoch as a local wall-clock time.
fn local(secs: libc::time_t) -> WallTime {
    // SAFETY: tzset takes no arguments; it only reads the environment.
    unsafe { tzset() };
    // SAFETY: `tm` is plain data that localtime_r fills; both pointers are valid.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return WallTime {
                weekday: 0,
                minute: 0,
            };
        }
        tm
    };
    WallTime {
        // tm_wday counts from Sunday.
        weekday: ((tm.tm_wday + 6) % 7) as u8,
        minute: (tm.tm_hour * 60 + tm.tm_min) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(days: &str, from: &str, to: &str, up: &str) -> Rule {
        Rule {
            days: days.parse().unwrap(),
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            upload_limit: Some(up.parse().unwrap()),
            download_limit: None,
        }
    }

    fn at(weekday: u8, hh: u16, mm: u16) -> WallTime {
        WallTime {
            weekday,
            minute: hh * 60 + mm,
        }
    }

    #[test]
    fn a_schedule_switches_limits_at_its_boundaries() {
        let s = Schedule {
            upload: "10M".parse().unwrap(),
            download: "20M".parse().unwrap(),
            rules: vec![rule("mon-fri", "08:00", "18:00", "1M")],
        };
        let up = |t| s.limits_at(t).upload.to_string();
        assert_eq!(up(at(0, 7, 59)), "10M");
        assert_eq!(up(at(0, 8, 0)), "1M");
        assert_eq!(up(at(4, 17, 59)), "1M");
        assert_eq!(up(at(4, 18, 0)), "10M");
        assert_eq!(up(at(5, 12, 0)), "10M", "Saturday is not in mon-fri");
        // The rule leaves the download limit as it was.
        assert_eq!(s.limits_at(at(0, 9, 0)).download.to_string(), "20M");
        assert_eq!(s.limits_at(at(0, 9, 0)).rule, Some(0));
        assert_eq!(s.limits_at(at(0, 19, 0)).rule, None);
    }

    #[test]
    fn a_night_period_runs_into_the_next_morning() {
        let s = Schedule {
            upload: Rate(0),
            download: Rate(0),
            rules: vec![
                rule("fri", "22:00", "06:00", "100K"),
                rule("daily", "00:00", "00:00", "5M"),
            ],
        };
        let up = |t| s.limits_at(t).upload.to_string();
        assert_eq!(up(at(4, 21, 59)), "5M");
        assert_eq!(up(at(4, 22, 0)), "100K");
        assert_eq!(
            up(at(5, 5, 59)),
            "100K",
            "Saturday morning after Friday night"
        );
        assert_eq!(up(at(5, 6, 0)), "5M");
        assert_eq!(
            up(at(0, 3, 0)),
            "5M",
            "Monday morning: Sunday is not listed"
        );
    }

    #[test]
    fn the_clock_reads_local_time() {
        // 2026-12-07 07:59:30 UTC is a Monday.
        std::env::set_var("TZ", "UTC");
        assert_eq!(local(1_796_630_370), at(0, 7, 59));
    }
}
