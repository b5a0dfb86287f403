//! Command-line interface of `papilla-device`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes, the same for every command (documented in the README and `--help`).
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 an exam, self-test or update failed or was refused (the rest ran); \
2 usage or config error; 3 no usable model installed; 4 the exam store cannot be opened; \
5 the camera or GPIO cannot be opened.";

/// Optic disc and cup segmentation on the screening camera: one-shot exams, the service loop,
/// model updates and results export.
#[derive(Debug, Parser)]
#[command(name = "papilla-device", version, after_help = EXIT_CODES)]
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
    /// The service: wait for the trigger, capture, segment, store, light the LEDs; until
    /// SIGTERM. Prints one JSON line per exam on stdout; logs go to stderr.
    Run(ConfigArgs),
    /// The installed model, its self-test, the stored exams and the free space.
    Status(StatusArgs),
    /// Runs the installed model's self-test (exit 1 when it fails).
    Selftest(ConfigArgs),
    /// Verifies a bundle (signature, compatibility, self-test), installs it into the free slot
    /// and makes it current; the previous model stays for `rollback`.
    InstallModel(InstallArgs),
    /// Switches back to the model in the other slot (after checking it).
    Rollback(RootArgs),
    /// Writes the index of stored exams since a date as CSV or JSON lines.
    ExportResults(ExportArgs),
    /// Times each stage of a whole exam on one photograph and reports peak memory.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// Fundus photographs (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Model bundle (default: the installed model under --root, else the shipped
    /// models/papilla-default.papilla).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Device data folder whose installed model is used without --bundle.
    #[arg(long, value_name = "DIR", default_value = crate::config::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "papilla-results", value_name = "DIR")]
    pub out: PathBuf,
    /// Print one JSON object per photograph instead of a line.
    #[arg(long)]
    pub json: bool,
    /// Refer when the vertical cup-to-disc ratio reaches this value.
    #[arg(long, default_value_t = crate::config::DEFAULT_REFER_VCDR)]
    pub refer_vcdr: f64,
    /// Threads for tract's matrix products (the Pi has 4 cores).
    #[arg(long, default_value_t = crate::config::DEFAULT_THREADS)]
    pub threads: usize,
    /// Decode large JPEGs scaled down to no less than this shorter side (0: full size).
    #[arg(long, default_value_t = crate::config::DEFAULT_DECODE_MIN_SIDE)]
    pub decode_min_side: u32,
    /// The photographs are disc-centred crops, not whole fundus photographs: skip the locator
    /// and pad each crop to PAD times its longer side (without PAD, the bundle's padding).
    #[arg(long, value_name = "PAD", num_args = 0..=1)]
    pub disc_centred: Option<Option<f32>>,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Device config (TOML).
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RootArgs {
    /// Device data folder (default: the config's `root`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Device config (TOML) with the trusted keys.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The model bundle (`.papilla`, from `papilla export`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Install it even when it is older than the model in use.
    #[arg(long)]
    pub allow_downgrade: bool,
    #[command(flatten)]
    pub root: RootArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// First day (UTC) to include: 2026-11-27 or 2026-11-27T08:00:00Z.
    #[arg(long, value_name = "DATE")]
    pub since: String,
    #[command(flatten)]
    pub root: RootArgs,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A fundus photograph, e.g. ../shared/samples/idrid_sample_b.jpg (4288x2848).
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Model bundle (default: the shipped one).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Decode large JPEGs scaled down to no less than this shorter side (0: full size).
    #[arg(long, default_value_t = crate::config::DEFAULT_DECODE_MIN_SIDE)]
    pub decode_min_side: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Instead of timing stages: N exams through the service loop into a scratch store,
    /// printing memory, open files, index size and exam time every --every exams.
    #[arg(long, value_name = "N")]
    pub soak: Option<usize>,
    /// With --soak: exams between two samples.
    #[arg(long, default_value_t = 100, value_name = "K")]
    pub every: usize,
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
        assert_eq!(bundle_format(), "papilla bundle format 1.2");
        let c =
            Cli::try_parse_from(["papilla-device", "install-model", "m.papilla", "--root", "/r"])
                .unwrap();
        assert!(matches!(c.command, Some(Command::InstallModel(_))));
        assert!(
            Cli::try_parse_from(["papilla-device", "export-results"]).is_err(),
            "--since is required"
        );
    }
}
