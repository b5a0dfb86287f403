//! `papilla-device`: thin binary over `papilla_device`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use papilla_device::cli::{Cli, Command, bundle_format};
use papilla_device::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs to stderr without colour: journald keeps them.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if cli.bundle_format {
        println!("{}", bundle_format());
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        return ExitCode::from(commands::EXIT_CONFIG);
    };
    let result = match &command {
        Command::Segment(a) => commands::segment(a),
        Command::Run(a) => commands::run(a),
        Command::Status(a) => commands::status(a),
        Command::Selftest(a) => commands::selftest(a),
        Command::InstallModel(a) => commands::install(a),
        Command::Rollback(a) => commands::rollback(a),
        Command::ExportResults(a) => commands::export(a),
        Command::Bench(a) => commands::bench(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("papilla-device: error: {}", papilla_shared::error::Chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
