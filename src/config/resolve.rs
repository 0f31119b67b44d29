//! Each value in force picked from a flag, else the config file, else its default,
//! and recorded with where it came from, for `cas config show`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Config, Item, Rate, Seconds};

/// Values as `cas config show` prints them.
pub trait Show {
    fn show(&self) -> String;
}

macro_rules! show_display {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

show_display!(
    bool,
    u64,
    f64,
    String,
    SocketAddr,
    std::net::IpAddr,
    ipnet::IpNet,
    Rate,
    Seconds,
    crate::config::Encryption
);

impl Show for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl<T: Show> Show for Vec<T> {
    fn show(&self) -> String {
        let v: Vec<String> = self.iter().map(Show::show).collect();
        format!("[{}]", v.join(", "))
    }
}

/// One value in force and where it came from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// `flag`, `FILE:LINE`, or `default`.
    pub from: String,
}

/// Picks each value from a flag, else the file, else the default, and records
/// which.
pub struct Resolver<'a> {
    config: &'a Config,
    /// The section's name, prefixed to the keys recorded.
    section: &'static str,
    pub settings: Vec<Setting>,
}

impl<'a> Resolver<'a> {
    pub fn new(config: &'a Config, section: &'static str) -> Resolver<'a> {
        Resolver {
            config,
            section,
            settings: Vec::new(),
        }
    }

    /// The same file and record, for another section.
    pub fn section(&mut self, section: &'static str) -> &mut Self {
        self.section = section;
        self
    }

    /// Records a value shown as it is, under the current section.
    pub fn note(&mut self, key: &str, value: String, from: String) {
        self.settings.push(Setting {
            key: format!("{}.{key}", self.section),
            value,
            from,
        });
    }

    /// A value with a default.
    pub fn value<T: Show + Clone>(
        &mut self,
        key: &str,
        flag: Option<T>,
        file: &Item<T>,
        default: T,
    ) -> T {
        let (v, from) = match (flag, file) {
            (Some(v), _) => (v, "flag".to_string()),
            (None, Some(s)) => (s.get_ref().clone(), self.config.origin(s)),
            (None, None) => (default, "default".to_string()),
        };
        self.note(key, v.show(), from);
        v
    }

    /// A value that may be absent.
    pub fn optional<T: Show + Clone>(
        &mut self,
        key: &str,
        flag: Option<T>,
        file: &Item<T>,
    ) -> Option<T> {
        let (v, from) = match (flag, file) {
            (Some(v), _) => (Some(v), "flag".to_string()),
            (None, Some(s)) => (Some(s.get_ref().clone()), self.config.origin(s)),
            (None, None) => (None, "default".to_string()),
        };
        self.note(key, v.as_ref().map_or("-".into(), Show::show), from);
        v
    }

    /// A boolean flag: set by the flag, else the file, else false.
    pub fn switch(&mut self, key: &str, flag: bool, file: &Item<bool>) -> bool {
        self.value(key, flag.then_some(true), file, false)
    }

    /// A repeatable flag: the flags given replace the file's list.
    pub fn list<T: Show + Clone>(&mut self, key: &str, flag: &[T], file: &Item<Vec<T>>) -> Vec<T> {
        let flag = (!flag.is_empty()).then(|| flag.to_vec());
        self.value(key, flag, file, Vec::new())
    }
}
