//! Command-line interface of `papilla`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Optic disc and cup segmentation of colour fundus photographs: the training-host tool.
#[derive(Debug, Parser)]
#[command(name = "papilla", version, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score a GAMMA/REFUGE submission folder against its ground truth (REFUGE metrics).
    ///
    /// Each ground-truth mask (.bmp or .png, 0 cup / 128 rim / 255 background) needs a
    /// prediction of the same name in --pred. Example:
    /// `papilla score --pred results/ --truth refuge512/test/Disc_Cup_Masks --json`
    Score(ScoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Folder of predicted masks (BMP, named like the ground truth).
    #[arg(long, value_name = "DIR")]
    pub pred: PathBuf,
    /// Folder of ground-truth masks.
    #[arg(long, value_name = "DIR")]
    pub truth: PathBuf,
    /// Print one JSON object (n, disc_dice, cup_dice, vcdr_mae, ..., images) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write per-image scores to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["papilla", "score", "--pred", "p", "--truth", "t", "--json"])
                .unwrap();
        let Command::Score(args) = cli.command;
        assert!(args.json);
        assert_eq!(args.truth, PathBuf::from("t"));
    }
}
