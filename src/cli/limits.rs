//! The rate and share limit flags of `cas serve` and `cas sync`, over `[limits]` and
//! `[[schedule]]` of the config file.

use std::time::Duration;

use clap::Args;

use cas::config::{Config, Rate, Resolver, Seconds};
use cas::engine::Limits;

/// Rate and share limits, for `cas serve` and `cas sync` (`[limits]` in the config
/// file; alternative limits on a schedule are set there only).
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Upload limit over every torrent, bytes a second (512K, 1M; 0: none)
    #[arg(long, value_name = "RATE")]
    upload_limit: Option<Rate>,
    /// Download limit over every torrent, bytes a second
    #[arg(long, value_name = "RATE")]
    download_limit: Option<Rate>,
    /// Upload limit of each torrent, bytes a second
    #[arg(long, value_name = "RATE")]
    torrent_upload_limit: Option<Rate>,
    /// Download limit of each torrent, bytes a second
    #[arg(long, value_name = "RATE")]
    torrent_download_limit: Option<Rate>,
    /// A complete torrent stops seeding once it has sent this many times its size
    #[arg(long, value_name = "RATIO")]
    ratio_limit: Option<f64>,
    /// A complete torrent stops seeding after seeding this long (90m, 36h, 7d)
    #[arg(long, value_name = "TIME")]
    seed_time_limit: Option<Seconds>,
}

impl LimitArgs {
    /// The limits in force: these flags, else `[limits]` and `[[schedule]]`.
    pub(super) fn resolve(&self, config: &Config, r: &mut Resolver) -> Limits {
        let l = &config.sections.limits;
        r.section("limits");
        let upload = r.value("upload-limit", self.upload_limit, &l.upload_limit, Rate(0));
        let download = r.value(
            "download-limit",
            self.download_limit,
            &l.download_limit,
            Rate(0),
        );
        let torrent_upload = r.value(
            "torrent-upload-limit",
            self.torrent_upload_limit,
            &l.torrent_upload_limit,
            Rate(0),
        );
        let torrent_download = r.value(
            "torrent-download-limit",
            self.torrent_download_limit,
            &l.torrent_download_limit,
            Rate(0),
        );
        let ratio = r.optional("ratio-limit", self.ratio_limit, &l.ratio_limit);
        let seed_time = r.optional("seed-time-limit", self.seed_time_limit, &l.seed_time_limit);
        r.section("schedule");
        for (i, rule) in config.sections.schedule.iter().enumerate() {
            let v = rule.get_ref();
            let limit = |x: Option<Rate>| x.map_or("-".to_string(), |r| r.to_string());
            r.note(
                &(i + 1).to_string(),
                format!(
                    "{} {}-{} upload {} download {}",
                    v.days,
                    v.from,
                    v.to,
                    limit(v.upload_limit),
                    limit(v.download_limit)
                ),
                config.origin(rule),
            );
        }
        Limits {
            schedule: config.schedule(upload, download),
            torrent_upload,
            torrent_download,
            ratio,
            seed_time: seed_time.map(|s| Duration::from_secs(s.0)),
        }
    }
}
