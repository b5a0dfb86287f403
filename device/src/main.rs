//! `papilla-device`: thin binary over `papilla_device`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use papilla_device::cli::{Cli, bundle_format};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.bundle_format {
        println!("{}", bundle_format());
        return ExitCode::SUCCESS;
    }
    // Nothing to do yet: show what exists rather than pretend to run.
    let _ = Cli::command().print_help();
    ExitCode::from(2)
}
