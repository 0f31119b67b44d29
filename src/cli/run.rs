//! What `cas serve` and `cas sync` run until stopped: the service, the control
//! socket, the signals (SIGTERM, SIGINT, SIGHUP) and what systemd is told.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use cas::config::{Config, Resolver, Setting};
use cas::engine::EngineOptions;
use cas::service::{MountOptions, Service, ServiceOptions};
use cas::sync::node::SyncOptions;

use super::limits::LimitArgs;
use super::{notify, Cli};

/// What `cas serve` or `cas sync` runs, resolved from the flags and the config file.
pub(super) struct Plan {
    pub engine: EngineOptions,
    pub mount: Option<MountOptions>,
    pub watch: Option<PathBuf>,
    pub sync: Option<SyncOptions>,
    /// The web API (`cas serve --http`).
    pub web: Option<cas::webapi::WebOptions>,
    /// The limit flags, to resolve again over a config file read again.
    pub limit_args: LimitArgs,
    /// `--allow` flags, to resolve again over `[serve]` on a reload (`cas serve`
    /// only: `cas sync`'s allow-list is read at start).
    pub allow_args: Option<Vec<ipnet::IpNet>>,
    /// Every value in force and where it came from (`cas config show`).
    pub settings: Vec<Setting>,
}

/// `cas serve`, and `cas sync` when the plan has a sync: the engine, the control
/// socket, then what the plan asks for, until SIGINT or SIGTERM; SIGHUP reads the
/// config file again (limits and schedule). Readiness and stopping are told to
/// systemd (`$NOTIFY_SOCKET`).
pub(super) fn run_daemon(cli: &Cli, plan: Plan) -> Result<i32> {
    let store = cli.open()?;
    let rt = super::serve::runtime()?;
    let held = store.clone();
    let r = rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Before the first line is printed: whoever reads it may signal us at once.
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let Plan {
            engine: options,
            mount,
            watch,
            sync,
            web,
            limit_args,
            allow_args,
            settings,
        } = plan;
        let mut service = Service::start(
            store.clone(),
            ServiceOptions {
                engine: options,
                sync: sync.clone(),
                watch,
                mount,
                web,
            },
        )
        .await?;
        let engine = service.engine().clone();
        let daemon = Arc::new(super::daemon::Daemon {
            store,
            engine: engine.clone(),
            rt: tokio::runtime::Handle::current(),
            syncs: service.syncs().to_vec(),
            settings: std::sync::Mutex::new(settings),
            config_file: cli.config().path.clone(),
        });
        super::daemon::listen(daemon.clone())?;
        let ready = match &sync {
            Some(opts) => format!(
                "syncing {} on channel {} at {}",
                opts.dir.display(),
                opts.channel,
                engine.listen_addr()
            ),
            None => {
                let (all, active) = (engine.started_with(), engine.active_count());
                let lazy = match active < all {
                    true => format!(" ({active} active, the others when a peer asks)"),
                    false => String::new(),
                };
                format!("seeding {all} torrents{lazy} on {}", engine.listen_addr())
            }
        };
        outln!("{ready}");
        if let Some(addr) = service.web_addr() {
            outln!("web API on http://{addr}");
        }
        if let (Some(at), true) = (service.mounted_at(), service.detached_stale_mount) {
            errln!(
                "{}: a mount left by a process that died (transport endpoint is not connected) \
                 was unmounted first",
                at.display()
            );
        }
        if let Some(at) = service.mounted_at() {
            outln!(
                "mounted {} on {} (read-only)",
                engine.store().root().display(),
                at.display()
            );
        }
        std::io::stdout().flush()?;
        notify::send(&format!("READY=1\nSTATUS={ready}"));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    notify::reloading();
                    reload(cli, &limit_args, allow_args.as_deref(), &daemon).await;
                    notify::send("READY=1");
                }
                e = service.failed() => {
                    errln!("{e:#}");
                    std::process::exit(1);
                }
            }
        }
        notify::send("STOPPING=1");
        errln!("stopping");
        if let Some(at) = service.stop().await {
            errln!("unmounted {}", at.display());
        }
        anyhow::Ok(0)
    });
    // What was received is durable before the process ends; librqbit's tasks (and
    // blocking reads still running) go with it.
    held.commit()?;
    rt.shutdown_background();
    r
}

/// SIGHUP: the config file read again; its limits and schedule, and for `cas serve`
/// its allow-list (flags still win), replace the engine's. A file that does not
/// parse changes nothing.
async fn reload(
    cli: &Cli,
    limit_args: &LimitArgs,
    allow_args: Option<&[ipnet::IpNet]>,
    daemon: &super::daemon::Daemon,
) {
    let config = match Config::load(cli.config_path()) {
        Ok(c) => c,
        Err(e) => {
            errln!("reload: {e}; the settings in force are kept");
            return;
        }
    };
    let mut r = Resolver::new(&config, "serve");
    if let Some(flags) = allow_args {
        let allow = r.list("allow", flags, &config.sections.serve.allow);
        if let Err(e) = daemon.engine.set_allow(&allow).await {
            errln!("reload: the allow-list: {e:#}; the one in force is kept");
            r.settings.clear();
        }
    }
    daemon
        .engine
        .set_limits(limit_args.resolve(&config, &mut r));
    let mut settings = daemon.settings.lock().unwrap_or_else(|e| e.into_inner());
    // The schedule's periods may be fewer than before: all of them go.
    settings
        .retain(|s| !s.key.starts_with("schedule.") && !r.settings.iter().any(|n| n.key == s.key));
    settings.extend(std::mem::take(&mut r.settings));
    drop(settings);
    errln!(
        "reloaded {}",
        config
            .path
            .as_ref()
            .map_or("the limits (no config file)".to_string(), |p| p
                .display()
                .to_string())
    );
}
