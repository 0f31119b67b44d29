//! The `cas` binary: a thin layer over the `cas` library (see src/cli/).

mod cli;

/// What is logged when `CAS_LOG` is not set. Two of librqbit's warnings are not for
/// users: the uTP socket asks for a 160 MiB UDP receive buffer and warns, at every
/// start, when the system's `rmem_max` (208 KiB by default) refuses it; and the
/// have-bitfield it keeps for fastresume is not flushed when `cas get` exits without
/// stopping the session (the store, not that file, says what is held).
const DEFAULT_LOG: &str = "warn,librqbit_utp::socket=error,librqbit::bitv=error";

fn main() {
    use tracing_subscriber::prelude::*;
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match tracing_subscriber::EnvFilter::try_from_env("CAS_LOG") {
        Ok(filter) => tracing_subscriber::registry()
            .with(filter)
            .with(stderr)
            .init(),
        Err(_) => tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(DEFAULT_LOG))
            .with(stderr.with_filter(NotPaused))
            .init(),
    }
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cas: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Leaves out librqbit's lines about a task of a torrent that ended because cas paused
/// the torrent (to restart it): they say "ERROR", yet nothing went wrong.
struct NotPaused;

impl<S> tracing_subscriber::layer::Filter<S> for NotPaused {
    fn enabled(
        &self,
        _: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if event.metadata().target() != "librqbit_core::spawn_utils" {
            return true;
        }
        let mut paused = Paused(false);
        event.record(&mut paused);
        !paused.0
    }
}

/// Whether an event's message says its torrent was paused.
struct Paused(bool);

impl tracing::field::Visit for Paused {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 |= format!("{value:?}").ends_with("torrent was paused");
        }
    }
}
