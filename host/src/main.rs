//! `papilla`: thin binary over `papilla_host`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use papilla_host::cli::{Cli, Command, ScoreArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(args) => score(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("papilla: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn score(args: ScoreArgs) -> anyhow::Result<()> {
    let report = papilla_host::score::score_dirs(&args.pred, &args.truth)?;
    if let Some(path) = &args.csv {
        let file = std::fs::File::create(path)
            .with_context(|| format!("{}: cannot create the CSV file", path.display()))?;
        report
            .write_csv(std::io::BufWriter::new(file))
            .with_context(|| format!("{}: cannot write the CSV file", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
