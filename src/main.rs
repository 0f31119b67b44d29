//! The `cas` binary: a thin layer over the `cas` library (see src/cli/).

mod cli;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cas: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
