//! Command-line interface of `papilla-device`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Optic disc and cup segmentation on the screening camera. Built so far: `segment`. The
/// service commands (run, status, selftest, install-model, rollback, export-results, bench)
/// are not built yet.
#[derive(Debug, Parser)]
#[command(name = "papilla-device", version)]
pub struct Cli {
    /// Print the model-bundle format this build reads, then exit.
    #[arg(long)]
    pub bundle_format: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-shot exams: segment photographs, write mask (BMP), overlay (PNG) and record (JSON),
    /// print vCDR, disc and cup areas and the referral flag.
    ///
    /// Example: `papilla-device segment samples/wikimedia_haggstrom_normal_left_eye_1411.jpg`
    Segment(SegmentArgs),
}

#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// Fundus photographs (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Model bundle (default: the shipped models/papilla-default.papilla).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "papilla-results", value_name = "DIR")]
    pub out: PathBuf,
    /// Print one JSON object per photograph instead of a line.
    #[arg(long)]
    pub json: bool,
    /// Refer when the vertical cup-to-disc ratio reaches this value.
    #[arg(long, default_value_t = 0.6)]
    pub refer_vcdr: f64,
    /// Threads for tract's matrix products (the Pi has 4 cores).
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
}

/// The bundle format line printed by `--bundle-format`.
pub fn bundle_format() -> String {
    use papilla_shared::bundle::{FORMAT_MAJOR, FORMAT_MINOR};
    format!("papilla bundle format {FORMAT_MAJOR}.{FORMAT_MINOR}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["papilla-device", "--bundle-format"]).unwrap().bundle_format);
        assert_eq!(bundle_format(), "papilla bundle format 1.0");
    }
}
