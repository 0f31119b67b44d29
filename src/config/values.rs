//! The kinds of value a config file holds beyond numbers, strings and lists: rates
//! (`"1M"` a second), durations (`"36h"`), times of day (`"08:00"`) and days of the
//! week (`"mon-fri"`). Each parses from its text form (flags use the same) and shows
//! back as that form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Bytes a second; 0 is no limit. Written as a count of bytes or with a unit:
/// `512K`, `1M`, `1MiB`, `2G` (powers of 1024), optionally followed by `/s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate(pub u32);

impl Rate {
    /// The limit, or `None` for none.
    pub fn limit(self) -> Option<std::num::NonZeroU32> {
        std::num::NonZeroU32::new(self.0)
    }
}

/// A count with an optional unit: the number and the unit's text, lower-cased.
fn split_unit(s: &str) -> Result<(f64, String), String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    Ok((n, unit.trim().to_ascii_lowercase()))
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if matches!(s.trim(), "unlimited" | "none") {
            return Ok(Rate(0));
        }
        let (n, unit) = split_unit(s)?;
        let unit = unit.strip_suffix("/s").unwrap_or(&unit);
        let mult: f64 = match unit {
            "" | "b" => 1.0,
            "k" | "kb" | "kib" => 1024.0,
            "m" | "mb" | "mib" => 1024.0 * 1024.0,
            "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit (use K, M or G, bytes a second)"
                ))
            }
        };
        let v = (n * mult).round();
        if v > f64::from(u32::MAX) {
            return Err(format!("{s:?} is above the largest limit, 4G"));
        }
        Ok(Rate(v as u32))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        match v {
            0 => write!(f, "unlimited"),
            _ if v.is_multiple_of(1 << 30) => write!(f, "{}G", v >> 30),
            _ if v.is_multiple_of(1 << 20) => write!(f, "{}M", v >> 20),
            _ if v.is_multiple_of(1 << 10) => write!(f, "{}K", v >> 10),
            _ => write!(f, "{v}"),
        }
    }
}

/// A length of time, in whole seconds: a count of seconds, or `30s`, `90m`,
/// `36h`, `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Seconds, String> {
        let (n, unit) = split_unit(s)?;
        let mult = match unit.as_str() {
            "" | "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(format!("{s:?}: unknown unit (use s, m, h or d)")),
        };
        Ok(Seconds((n * mult).round() as u64))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        match v {
            _ if v > 0 && v.is_multiple_of(86400) => write!(f, "{}d", v / 86400),
            _ if v > 0 && v.is_multiple_of(3600) => write!(f, "{}h", v / 3600),
            _ if v > 0 && v.is_multiple_of(60) => write!(f, "{}m", v / 60),
            _ => write!(f, "{v}s"),
        }
    }
}

/// A time of day, in minutes since midnight: `HH:MM`, `24:00` being the day's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(pub u16);

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<TimeOfDay, String> {
        let bad = || format!("{s:?} is not a time of day (HH:MM, 00:00 to 24:00)");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Days of the week, Monday first (bit 0): `mon-fri`, `sat,sun`, `daily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Days(pub u8);

impl Days {
    /// Whether `day` (0 is Monday) is one of them.
    pub fn has(self, day: u8) -> bool {
        self.0 & (1 << (day % 7)) != 0
    }
}

/// The day `s` names (0 is Monday): `mon` or `monday`.
fn day_index(s: &str) -> Result<u8, String> {
    const LONG: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let t = s.trim().to_ascii_lowercase();
    (0..7u8)
        .find(|&d| t == DAY_NAMES[d as usize] || t == LONG[d as usize])
        .ok_or_else(|| format!("{s:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

impl FromStr for Days {
    type Err = String;
    fn from_str(s: &str) -> Result<Days, String> {
        if matches!(s.trim(), "daily" | "all" | "*") {
            return Ok(Days(0x7f));
        }
        let mut bits = 0u8;
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day_index(a)?, day_index(b)?);
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => bits |= 1 << day_index(part)?,
            }
        }
        Ok(Days(bits))
    }
}

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0x7f {
            return write!(f, "daily");
        }
        let names: Vec<&str> = (0..7u8)
            .filter(|&d| self.has(d))
            .map(|d| DAY_NAMES[d as usize])
            .collect();
        write!(f, "{}", names.join(","))
    }
}

/// Values written as text in the file, or as a bare number where one makes sense.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrNumber {
    Number(u64),
    Float(f64),
    Text(String),
}

macro_rules! deserialize_from_text {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = match TextOrNumber::deserialize(d)? {
                    TextOrNumber::Number(n) => n.to_string(),
                    TextOrNumber::Float(n) => n.to_string(),
                    TextOrNumber::Text(s) => s,
                };
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

deserialize_from_text!(Rate, Seconds, TimeOfDay, Days);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_show() {
        assert_eq!("1M".parse::<Rate>(), Ok(Rate(1 << 20)));
        assert_eq!("512KiB/s".parse::<Rate>(), Ok(Rate(512 << 10)));
        assert_eq!("1.5M".parse::<Rate>(), Ok(Rate(3 << 19)));
        assert_eq!("1000".parse::<Rate>(), Ok(Rate(1000)));
        assert_eq!("unlimited".parse::<Rate>(), Ok(Rate(0)));
        assert!("1X".parse::<Rate>().unwrap_err().contains("unknown unit"));
        assert!("5G".parse::<Rate>().is_err());
        assert_eq!(Rate(1 << 20).to_string(), "1M");
        assert_eq!(Rate(1500).to_string(), "1500");
    }

    #[test]
    fn durations_times_and_days_parse() {
        assert_eq!("36h".parse::<Seconds>(), Ok(Seconds(36 * 3600)));
        assert_eq!("90".parse::<Seconds>(), Ok(Seconds(90)));
        assert_eq!(Seconds(7 * 86400).to_string(), "7d");
        assert_eq!("08:30".parse::<TimeOfDay>(), Ok(TimeOfDay(510)));
        assert_eq!("24:00".parse::<TimeOfDay>(), Ok(TimeOfDay(1440)));
        assert!("24:01".parse::<TimeOfDay>().is_err());
        assert!("8".parse::<TimeOfDay>().is_err());
        assert_eq!("mon-fri".parse::<Days>(), Ok(Days(0x1f)));
        assert_eq!("sat,sunday".parse::<Days>(), Ok(Days(0x60)));
        assert_eq!("fri-mon".parse::<Days>(), Ok(Days(0x71)));
        assert!("monkey".parse::<Days>().is_err());
        assert_eq!(Days(0x60).to_string(), "sat,sun");
    }
}

/// Whether peer connections are encrypted (BitTorrent's Message Stream Encryption,
/// also called Protocol Encryption), in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Dial with an encrypted handshake, and again in plaintext if that fails;
    /// accept both, RC4 or plaintext as the peer offers. Reaches every peer.
    #[default]
    Prefer,
    /// Encrypted (RC4) connections only, both ways; plaintext peers are refused.
    Require,
    /// Plaintext only; peers that require encryption cannot connect.
    Off,
}

impl std::str::FromStr for Encryption {
    type Err = String;
    fn from_str(s: &str) -> Result<Encryption, String> {
        match s {
            "prefer" => Ok(Encryption::Prefer),
            "require" => Ok(Encryption::Require),
            "off" => Ok(Encryption::Off),
            _ => Err(format!("{s:?}: use prefer, require or off")),
        }
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encryption::Prefer => "prefer",
            Encryption::Require => "require",
            Encryption::Off => "off",
        })
    }
}
