//! `cas config show`: the settings in force and where each came from.

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use cas::config::Setting;

use super::{print_json, Cli};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print every setting and where it came from (a flag, FILE:LINE, or the default):
    /// a running `cas serve`'s or `cas sync`'s, else what `cas serve` and `cas sync`
    /// would run with
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Shown {
    /// The config file, if one was read.
    file: Option<String>,
    /// The pid of the `cas serve` or `cas sync` whose settings these are.
    running: Option<u32>,
    settings: Vec<Setting>,
}

pub fn run(cli: &Cli, cmd: &ConfigCommand) -> Result<i32> {
    let ConfigCommand::Show { json } = cmd;
    let shown = match &cli.daemon {
        Some(d) => Shown {
            file: d.config_file.as_ref().map(|p| p.display().to_string()),
            running: Some(std::process::id()),
            settings: d.settings.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        },
        None => {
            let config = cli.config();
            let mut settings = vec![Setting {
                key: "store".into(),
                value: cli.store_path()?.display().to_string(),
                from: match (&cli.store, &config.sections.store) {
                    (Some(_), _) => "flag or CAS_STORE".into(),
                    (None, Some(s)) => config.origin(s),
                    (None, None) => "default".into(),
                },
            }];
            let serve = super::serve::ServeArgs::default().plan(config)?;
            settings.extend(serve.settings);
            let sync = super::sync::SyncArgs::default().resolve(config);
            // The limits are shared: shown once, with `serve`'s.
            settings.extend(
                sync.settings
                    .into_iter()
                    .filter(|s| s.key.starts_with("sync.")),
            );
            Shown {
                file: config.path.as_ref().map(|p| p.display().to_string()),
                running: None,
                settings,
            }
        }
    };
    if *json {
        print_json(&shown)?;
        return Ok(0);
    }
    match (&shown.file, shown.running) {
        (Some(f), Some(pid)) => outln!("# in force in cas (pid {pid}), config file {f}"),
        (None, Some(pid)) => outln!("# in force in cas (pid {pid}), no config file"),
        (Some(f), None) => outln!("# config file {f}"),
        (None, None) => outln!("# no config file"),
    }
    let width = shown
        .settings
        .iter()
        .map(|s| s.key.len() + s.value.len())
        .max();
    for s in &shown.settings {
        let pad = width.unwrap_or(0) - s.key.len() - s.value.len();
        outln!("{} = {}{}  # {}", s.key, s.value, " ".repeat(pad), s.from);
    }
    Ok(0)
}
