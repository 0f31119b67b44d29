//! `cas import`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use cas::import::{import, ImportOptions};
use cas::meta::torrent::Publish;

use super::{human, print_json, Cli};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The directory to import
    pub(super) dir: PathBuf,
    /// Ref to point at the tree [default: the directory's name]
    #[arg(long, value_name = "REF")]
    name: Option<String>,
    /// Piece length of a new store [default: 1M]; an existing store keeps its own
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    piece_length: Option<u32>,
    /// Mark the torrents private (BEP 27): no DHT, LSD or PEX
    #[arg(long)]
    private: bool,
    /// Announce URL to put in the torrents (repeatable)
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &ImportArgs) -> Result<i32> {
    let store = cli.open_or_create(args.piece_length)?;
    let opts = ImportOptions {
        ignore: Vec::new(),
        reuse: None,
        remember: true,
        cut_with: None,
        name: args.name.clone(),
        piece_length: args.piece_length,
        publish: Publish {
            private: args.private,
            trackers: args.trackers.clone(),
        },
    };
    let bar = super::bytes_bar("importing", false);
    let report = import(
        &store,
        &args.dir,
        &opts,
        &|total| bar.set_length(total),
        &|n| bar.inc(n),
    );
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        print_json(&report)?;
        return Ok(0);
    }
    outln!(
        "imported {} as ref {}: {} files, {} ({} newly stored)",
        args.dir.display(),
        report.ref_name,
        report.files.len(),
        human(report.logical_bytes),
        human(report.new_bytes)
    );
    outln!("tree       {}", report.tree);
    if let Some(d) = &report.directory_torrent {
        outln!("directory  {}", d.magnet);
    }
    outln!("manifest   {}", report.tree_torrent.magnet);
    Ok(0)
}
