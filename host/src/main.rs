//! `papilla`: thin binary over `papilla_host`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;
use papilla_host::cli::{
    AverageArgs, CheckBackendArgs, Cli, Command, EvaluateArgs, ExportArgs, KeygenArgs, PredictArgs,
    ScoreArgs, SynthArgs, TrainArgs,
};
use papilla_host::score::ScoreReport;

mod draw;

/// Exit codes: 0 success, 1 error, 130 interrupted (a usable checkpoint was saved).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(args) => score(args),
        Command::Train(args) => train(*args),
        Command::Evaluate(args) => evaluate(args),
        Command::Predict(args) => predict(args),
        Command::Synth(args) => synth(args),
        Command::Export(args) => export(*args),
        Command::Average(args) => average(args),
        Command::Keygen(args) => keygen(args),
        Command::CheckBackend(args) => check_backend(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("papilla: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(
    report: &ScoreReport,
    json: bool,
    csv: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = csv {
        let file = std::fs::File::create(path)
            .with_context(|| format!("{}: cannot create the CSV file", path.display()))?;
        report
            .write_csv(std::io::BufWriter::new(file))
            .with_context(|| format!("{}: cannot write the CSV file", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn score(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let report = papilla_host::score::score_dirs(&args.pred, &args.truth, args.referral_threshold)?;
    print_report(&report, args.json, args.csv.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\npapilla: second interrupt: exiting without saving");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!("\npapilla: interrupted: saving a checkpoint (Ctrl-C again to abandon)");
    })
    .context("cannot install the Ctrl-C handler")?;
    let outcome = papilla_host::app::train(&args, interrupt, &*draw::stderr())?;
    let s = &outcome.state;
    if outcome.interrupted {
        eprintln!(
            "stopped after {} epochs; checkpoint in {} (continue with --resume)",
            s.epoch,
            args.out.display()
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if let (Some(best), Some(epoch)) = (&s.best, s.best_epoch) {
        println!(
            "best epoch {epoch}: val Dice disc {:.4}, Dice cup {:.4}, vCDR MAE {:.4} ({} images); run in {}",
            best.disc_dice,
            best.cup_dice,
            best.vcdr_mae,
            best.n,
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn evaluate(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let evaluation = papilla_host::app::evaluate(&args, &*draw::stderr())?;
    print_report(&evaluation.report, args.json, args.csv.as_deref())?;
    if let Some(page) = &evaluation.page {
        eprintln!("report: {} ({} worst cases)", page.display(), evaluation.overlays.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn predict(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let written = papilla_host::app::predict(&args, &*draw::stderr())?;
    println!("{} masks written to {}", written.len(), args.out.display());
    if let Some(zip) = &args.zip {
        println!("submission: {}", zip.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn synth(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let n = papilla_host::app::synth(&args, &*draw::stderr())?;
    println!("{n} synthetic photographs with masks in {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let r = papilla_host::app::export(&args, &*draw::stderr())?;
    println!(
        "{}: {:?}, {} bytes{}, self-test agreement {:.4}{}",
        r.bundle.display(),
        r.precision,
        r.bytes,
        if r.calibration_images > 0 {
            format!(", calibrated on {} photographs", r.calibration_images)
        } else {
            String::new()
        },
        r.selftest_agreement,
        r.signer.map(|k| format!(", signed by {k}")).unwrap_or_default()
    );
    for p in r.onnx {
        println!("onnx: {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn average(args: AverageArgs) -> anyhow::Result<ExitCode> {
    let device = burn::tensor::Device::flex();
    let done = papilla_host::average::average_last(&args.run, args.last, &args.out, &device)?;
    let (first, last) = (done.epochs[0], done.epochs[done.epochs.len() - 1]);
    println!(
        "{}: epochs {first}-{last} of {} averaged ({} tensors, {} values)",
        args.out.display(),
        args.run.display(),
        done.tensors,
        done.values
    );
    Ok(ExitCode::SUCCESS)
}

fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let (public, hex) = papilla_host::export::keygen(&args.out)?;
    println!("secret key: {} (keep it private)", args.out.display());
    println!("public key: {} ({hex})", public.display());
    Ok(ExitCode::SUCCESS)
}

fn check_backend(args: CheckBackendArgs) -> anyhow::Result<ExitCode> {
    let (check, agrees) = papilla_host::app::check_backend(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    } else {
        println!(
            "one training step at {} px, batch {}, {} parameters, {:?} against flex:",
            check.size, check.batch, check.parameters, args.backend
        );
        println!(
            "  loss            flex {:.7}  candidate {:.7}",
            check.loss_reference, check.loss_candidate
        );
        println!(
            "  gradients       worst relative difference {:.2e} ({})",
            check.worst_gradient_rel, check.worst_gradient
        );
        println!(
            "  stepped weights max difference {:.2e} (max |w| {:.3})",
            check.max_weight_diff, check.max_weight
        );
        println!(
            "  logits          max difference {:.2e} (range {:.3})",
            check.max_logit_diff, check.logit_range
        );
        println!(
            "{} within {:.0e}",
            if agrees { "agrees" } else { "DIFFERS: do not train on this backend" },
            args.tolerance
        );
    }
    Ok(if agrees { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
