//! The config file: everything `cas serve` and `cas sync` take as flags, for a node
//! that runs cas unattended.
//!
//! `$XDG_CONFIG_HOME/cas/config.toml` (else `~/.config/cas/config.toml`), or the file
//! `--config` names. Each key is the long name of a flag (without `--`; a repeatable
//! flag's key takes a list): `[serve]` holds `cas serve`'s (and `cas mount`'s),
//! `[sync]` `cas sync`'s, `[limits]` the rate and share limits of both, each
//! `[[schedule]]` table a period of alternative limits, and `[http]` the web API's
//! login and save paths (never flags). A flag given overrides the
//! file; [`Resolver`] records where every value in force came from, for
//! `cas config show`. An unknown key, or a value that does not parse, is an error
//! naming the file, the line and the key.

mod resolve;
pub mod schedule;
pub mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use resolve::{Resolver, Setting, Show};
pub use schedule::{Clock, InForce, Rule, Schedule, WallTime};
pub use values::{Days, Encryption, Rate, Seconds, TimeOfDay};

/// A value as the file gives it, with where it stands.
pub type Item<T> = Option<Spanned<T>>;

/// `[serve]`: `cas serve`'s flags (and `cas mount`'s network flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeSection {
    pub listen: Item<SocketAddr>,
    pub bind_interface: Item<String>,
    pub announce_ip: Item<std::net::IpAddr>,
    pub encryption: Item<crate::config::Encryption>,
    pub lsd: Item<bool>,
    pub dht: Item<bool>,
    pub dht_bootstrap: Item<Vec<String>>,
    pub tracker: Item<Vec<String>>,
    pub allow: Item<Vec<ipnet::IpNet>>,
    pub peer: Item<Vec<SocketAddr>>,
    pub mount: Item<PathBuf>,
    pub watch: Item<PathBuf>,
    pub read_timeout: Item<u64>,
    pub direct_io: Item<bool>,
    /// The web API's address (`--http`): `ADDR:PORT`, or a port on 127.0.0.1.
    pub http: Item<String>,
}

/// `[sync]`: `cas sync`'s flags, and its directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyncSection {
    pub dir: Item<PathBuf>,
    pub channel: Item<String>,
    pub node: Item<String>,
    pub quiet_ms: Item<u64>,
    pub fetch_timeout: Item<u64>,
    pub peer: Item<Vec<SocketAddr>>,
    pub no_lsd: Item<bool>,
    pub listen: Item<SocketAddr>,
    pub tracker: Item<Vec<String>>,
    pub allow: Item<Vec<ipnet::IpNet>>,
    pub encryption: Item<crate::config::Encryption>,
}

/// `[limits]`: rate limits (bytes a second, 0 none) and share limits, for both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsSection {
    pub upload_limit: Item<Rate>,
    pub download_limit: Item<Rate>,
    pub torrent_upload_limit: Item<Rate>,
    pub torrent_download_limit: Item<Rate>,
    /// A torrent stops seeding once it has sent this many times its size.
    pub ratio_limit: Item<f64>,
    /// A torrent stops seeding after seeding this long.
    pub seed_time_limit: Item<Seconds>,
}

/// `[http]`: the web API's login (never a flag: the store's lock file records the
/// command line) and the directories an add may name as its `savepath`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpSection {
    pub username: Item<String>,
    pub password: Item<String>,
    /// `blake3:SALT:HASH`, HASH the BLAKE3 hex of SALT followed by the password.
    pub password_hash: Item<String>,
    /// Directories (and what is below them) an add's `savepath` may name.
    pub save_paths: Item<Vec<PathBuf>>,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sections {
    /// The store (`--store`).
    pub store: Item<PathBuf>,
    #[serde(default)]
    pub serve: ServeSection,
    #[serde(default)]
    pub sync: SyncSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub schedule: Vec<Spanned<Rule>>,
}

/// A config file read, or none.
#[derive(Debug, Default)]
pub struct Config {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    text: String,
    pub sections: Sections,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: cannot read it", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `key` is the dotted key (`serve.listen`) when the error concerns one.
    #[error("config file {}, line {line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: Option<String>,
        message: String,
    },
}

/// Where the config file is looked for when `--config` is not given.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("cas").join("config.toml"))
}

impl Config {
    /// Reads `explicit` (which must exist), or the default file if there is one.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
            None => match default_path() {
                Some(p) if p.exists() => p,
                _ => return Ok(Config::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::parse(&path, text)
    }

    /// Parses the text of the file at `path`.
    pub fn parse(path: &Path, text: String) -> Result<Config, ConfigError> {
        let sections: Sections = toml::from_str(&text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let line = line_of(&text, at);
            let (key, message) = explain(&text, at, e.message());
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message,
            }
        })?;
        Ok(Config {
            path: Some(path.to_path_buf()),
            text,
            sections,
        })
    }

    /// Where a value of the file stands, as `cas config show` says it.
    pub fn origin<T>(&self, item: &Spanned<T>) -> String {
        let path = self.path.as_deref().unwrap_or(Path::new("?"));
        format!(
            "{}:{}",
            path.display(),
            line_of(&self.text, item.span().start)
        )
    }

    /// The schedule of alternative limits, around the usual limits given.
    pub fn schedule(&self, upload: Rate, download: Rate) -> Schedule {
        Schedule {
            upload,
            download,
            rules: self
                .sections
                .schedule
                .iter()
                .map(|r| r.get_ref().clone())
                .collect(),
        }
    }
}

/// The line (from 1) of byte `at` of `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key at byte `at` (the table header above it, then the key on its
/// line) and serde's message in the file's words.
fn explain(text: &str, at: usize, message: &str) -> (Option<String>, String) {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let dotted = match (&table, &key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k.clone()),
        _ => None,
    };
    let message = message.trim();
    let message = match (message.strip_prefix("unknown field "), &dotted) {
        (Some(rest), Some(d)) => {
            let known = rest
                .split_once(", expected ")
                .map(|(_, k)| format!(" (expected {k})"))
                .unwrap_or_default();
            format!("unknown key `{d}`{known}")
        }
        (None, Some(d)) => format!("key `{d}`: {message}"),
        _ => message.to_string(),
    };
    (dotted, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/cas.toml"), text.to_string())
    }

    #[test]
    fn an_unknown_key_names_the_file_the_line_and_the_key() {
        let e = parse("[serve]\nlisten = \"0.0.0.0:6881\"\nuplod-limit = 5\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("config file /etc/cas.toml, line 3: "),
            "{text}"
        );
        assert!(text.contains("unknown key `serve.uplod-limit`"), "{text}");
        match e {
            ConfigError::Invalid { line, key, .. } => {
                assert_eq!((line, key.as_deref()), (3, Some("serve.uplod-limit")))
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn a_bad_value_names_its_key_and_line() {
        let e = parse("[limits]\n\nupload-limit = \"1X\"\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("`limits.upload-limit`"), "{text}");
        assert!(text.contains("unknown unit"), "{text}");
    }

    #[test]
    fn flags_override_the_file_and_each_value_says_where_it_came_from() {
        let c = parse("[serve]\nlisten = \"0.0.0.0:6881\"\ntracker = [\"http://t/a\"]\n").unwrap();
        let s = &c.sections.serve;
        let mut r = Resolver::new(&c, "serve");
        let listen = r.value("listen", None, &s.listen, "0.0.0.0:0".parse().unwrap());
        let trackers = r.list("tracker", &["http://u/b".to_string()], &s.tracker);
        let lsd = r.switch("lsd", false, &s.lsd);
        assert_eq!(listen.port(), 6881);
        assert_eq!(trackers, ["http://u/b"]);
        assert!(!lsd);
        let from: Vec<(&str, &str)> = r
            .settings
            .iter()
            .map(|s| (s.key.as_str(), s.from.as_str()))
            .collect();
        assert_eq!(
            from,
            [
                ("serve.listen", "/etc/cas.toml:2"),
                ("serve.tracker", "flag"),
                ("serve.lsd", "default")
            ]
        );
    }

    #[test]
    fn encryption_is_read_from_serve_and_sync() {
        use crate::config::Encryption;
        let c = parse("[serve]\nencryption = \"require\"\n[sync]\nencryption = \"off\"\n").unwrap();
        let (serve, sync) = (&c.sections.serve.encryption, &c.sections.sync.encryption);
        assert_eq!(
            serve.as_ref().map(|s| *s.get_ref()),
            Some(Encryption::Require)
        );
        assert_eq!(sync.as_ref().map(|s| *s.get_ref()), Some(Encryption::Off));
        let text = parse("[serve]\nencryption = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("line 2") && text.contains("`serve.encryption`"),
            "{text}"
        );
        assert!(text.contains("prefer"), "{text}");
        assert_eq!("prefer".parse::<Encryption>(), Ok(Encryption::Prefer));
        assert!("on".parse::<Encryption>().is_err());
        assert_eq!(Encryption::Require.to_string(), "require");
    }

    #[test]
    fn schedules_are_read_from_the_file() {
        let c = parse(
            "[[schedule]]\ndays = \"mon-fri\"\nfrom = \"08:00\"\nto = \"18:00\"\nupload-limit = \"1M\"\n",
        )
        .unwrap();
        let s = c.schedule(Rate(0), Rate(0));
        let t = WallTime {
            weekday: 2,
            minute: 9 * 60,
        };
        assert_eq!(s.limits_at(t).upload, Rate(1 << 20));
        let e = parse("[[schedule]]\ndays = \"mon\"\nfrom = \"8\"\nto = \"18:00\"\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
