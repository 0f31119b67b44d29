//! `cas add`: adopt a torrent made by any client, with its data (`--data`) or by
//! downloading it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use cas::engine::Source;

use super::{human, print_json, Cli};

#[derive(Args, Debug)]
pub struct AddArgs {
    /// A .torrent file or a magnet link
    target: String,
    /// The torrent's data: its file, or its directory; every piece is checked
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// A name for the torrent, shown by `cas stats`
    #[arg(long)]
    name: Option<String>,
    /// Without --data: connect to this peer (repeatable)
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    peers: Vec<std::net::SocketAddr>,
    #[arg(long)]
    json: bool,
}

impl AddArgs {
    pub(super) fn absolutize(&mut self, cwd: &std::path::Path) {
        if let Some(d) = &mut self.data {
            if d.is_relative() {
                *d = cwd.join(&*d);
            }
        }
        let t = std::path::Path::new(&self.target);
        if !self.target.starts_with("magnet:") && t.is_relative() {
            self.target = cwd.join(t).to_string_lossy().into_owned();
        }
    }
}

pub fn add(cli: &Cli, args: &AddArgs) -> Result<i32> {
    let Some(data) = &args.data else {
        // No data: a download, like `cas get`.
        let get = super::serve::GetArgs::for_add(&args.target, &args.peers, args.json);
        let code = super::serve::get_cmd(cli, &get)?;
        return Ok(code);
    };
    if args.target.starts_with("magnet:") {
        bail!(
            "--data needs the .torrent file: a magnet link does not say how the data is laid out"
        );
    }
    let bytes = std::fs::read(&args.target).with_context(|| format!("reading {}", args.target))?;
    let store = cli.open_or_create(None)?;
    let bar = super::bytes_bar("checking", args.json);
    let adopted = cas::adopt::add_with_data(
        &store,
        &bytes,
        std::path::Path::new(&args.target),
        data,
        args.name.as_deref(),
        &|n, total| {
            bar.set_length(total);
            bar.set_position(n);
        },
    );
    bar.finish_and_clear();
    let (meta, report) = adopted?;
    let ih = meta.info_hash;
    let fetching = !report.complete && cli.daemon.is_some();
    if let (Some(d), false) = (&cli.daemon, report.complete) {
        d.rt.block_on(d.engine.add(Source::Torrent(bytes), &args.peers))?;
    }
    if args.json {
        print_json(&report)?;
        return Ok(0);
    }
    outln!(
        "torrent {ih} ({}): {} pieces, {} stored now ({}), {} already in the store",
        meta.name,
        report.pieces,
        report.pieces_new,
        human(report.new_bytes),
        report.pieces_known
    );
    for f in &report.missing_files {
        errln!("{}: missing or short under {}", f, data.display());
    }
    if !report.bad_pieces.is_empty() {
        errln!(
            "{} pieces do not match the torrent: {}",
            report.bad_pieces.len(),
            list(&report.bad_pieces)
        );
        if fetching {
            errln!("fetching them from peers");
        } else {
            errln!("`cas serve` fetches them from peers (or `cas get {ih}`)");
        }
    }
    Ok(0)
}

/// "1, 2, 5-9" for a sorted list of piece numbers.
fn list(pieces: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        while j + 1 < pieces.len() && pieces[j + 1] == pieces[j] + 1 {
            j += 1;
        }
        out.push(match i == j {
            true => pieces[i].to_string(),
            false => format!("{}-{}", pieces[i], pieces[j]),
        });
        i = j + 1;
    }
    out.join(", ")
}
