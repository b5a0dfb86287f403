//! `papilla-device`: thin binary over `papilla_device`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use papilla_device::cli::{Cli, Command, SegmentArgs, bundle_format};
use papilla_device::segment;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.bundle_format {
        println!("{}", bundle_format());
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        Some(Command::Segment(args)) => run_segment(&args),
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("papilla-device: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 when every photograph was segmented, 1 when any failed (the rest still run).
fn run_segment(args: &SegmentArgs) -> anyhow::Result<ExitCode> {
    let bundle = segment::resolve_bundle(args.bundle.as_deref())?;
    let engine = segment::load(&bundle, args.threads).context("loading the model")?;
    let mut failed = 0;
    for image in &args.images {
        match segment::exam(&engine, image, &args.out, args.refer_vcdr) {
            Ok(r) if args.json => println!("{}", serde_json::to_string(&r)?),
            Ok(r) => println!(
                "{}: vCDR {:.3}, disc {} px, cup {} px, {}{} -> {}, {}",
                image.display(),
                r.vcdr,
                r.disc_area_px,
                r.cup_area_px,
                if r.refer { "REFER" } else { "no referral" },
                if r.disc_found { "" } else { " (no optic disc found)" },
                r.mask.display(),
                r.overlay.display()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("papilla-device: error: {e}");
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
