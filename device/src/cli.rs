//! Command-line interface of `papilla-device`.

use clap::Parser;

/// Optic disc and cup segmentation on the screening camera. The exam commands (segment, run,
/// status, selftest, install-model, rollback, export-results, bench) are not built yet.
#[derive(Debug, Parser)]
#[command(name = "papilla-device", version)]
pub struct Cli {
    /// Print the model-bundle format this build reads, then exit.
    #[arg(long)]
    pub bundle_format: bool,
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
