//! `papilla evaluate --report DIR`: a self-contained HTML page (inline CSS, PNGs beside it, no
//! network) to look at an evaluation, and `--compare OTHER.json` to put a second model beside
//! it: summary with medians, referral and glaucoma AUC, error by true-vCDR bin, four plots and
//! the worst cases as overlays.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use thiserror::Error;

use crate::charts::{self, BLUE, ChartError, FONT, GREY, ORANGE, VERMILION};
use crate::score::ScoreReport;

/// The page.
pub const INDEX: &str = "index.html";
/// The evaluation as `evaluate --json` prints it, for a later `--compare`.
pub const JSON: &str = "report.json";
/// Per-image scores.
pub const CSV: &str = "images.csv";
/// The plots.
pub const SCATTER: &str = "vcdr_scatter.png";
pub const BLAND_ALTMAN: &str = "vcdr_bland_altman.png";
pub const DICE: &str = "dice_histograms.png";
pub const BINS: &str = "vcdr_error_by_bin.png";

/// Why the report was not written.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write the plot", path.display())]
    Png {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("{}: {what}", path.display())]
    Chart {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: ChartError,
    },
    #[error("{}: not the JSON of `papilla evaluate --json` or of a report's {JSON}", path.display())]
    Compare {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: cannot write the CSV", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}

/// A worst case already drawn as an overlay in the report folder.
#[derive(Debug, Clone)]
pub struct Case {
    /// File name of the overlay, in the report folder.
    pub file: String,
    /// Index into the report's images.
    pub image: usize,
}

/// What the page is about.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    pub report: &'a ScoreReport,
    /// The model (a bundle or run directory), as given.
    pub model: String,
    /// The data folders.
    pub data: Vec<String>,
    pub cases: Vec<Case>,
    /// A second model's evaluation and its name.
    pub compare: Option<(String, ScoreReport)>,
}

/// Reads a second model's `evaluate --json` (or `report.json`).
pub fn read_compare(path: &Path) -> Result<(String, ScoreReport), ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        what: "cannot read",
        source,
    })?;
    let report: ScoreReport = serde_json::from_str(&text)
        .map_err(|source| ReportError::Compare { path: path.to_owned(), source })?;
    // A report folder's JSON is named after the folder; a bare file after itself.
    let name = if path.file_name().is_some_and(|n| n == JSON) {
        path.parent().and_then(Path::file_name)
    } else {
        path.file_stem()
    };
    Ok((name.map_or_else(|| "other".into(), |n| n.to_string_lossy().into_owned()), report))
}

/// Writes the page, its plots, `report.json` and `images.csv` into `dir` (which holds the
/// cases' overlays already); returns the page's path.
pub fn write(dir: &Path, page: &Page<'_>) -> Result<PathBuf, ReportError> {
    let io = |path: &Path, what: &'static str| {
        let path = path.to_owned();
        move |source| ReportError::Io { path, what, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir, "cannot create the report folder"))?;
    let json = serde_json::to_string_pretty(page.report).expect("plain data serialises");
    let p = dir.join(JSON);
    std::fs::write(&p, json).map_err(io(&p, "cannot write"))?;
    let p = dir.join(CSV);
    let file = std::fs::File::create(&p).map_err(io(&p, "cannot create"))?;
    page.report
        .write_csv(std::io::BufWriter::new(file))
        .map_err(|source| ReportError::Csv { path: p.clone(), source })?;

    let other = page.compare.as_ref().map(|(name, r)| (name.as_str(), r));
    let plots: [(&str, &'static str, PlotFn); 4] = [
        (SCATTER, "cannot draw the vCDR scatter", scatter),
        (BLAND_ALTMAN, "cannot draw the Bland-Altman plot", bland_altman),
        (DICE, "cannot draw the Dice histograms", dice_histograms),
        (BINS, "cannot draw the error by true vCDR", error_by_bin),
    ];
    for (file, what, plot) in plots {
        let path = dir.join(file);
        let img = plot(page.report, other).map_err(|source| ReportError::Chart {
            path: path.clone(),
            what,
            source,
        })?;
        img.save(&path).map_err(|source| ReportError::Png { path: path.clone(), source })?;
    }
    let path = dir.join(INDEX);
    std::fs::write(&path, html(page)).map_err(io(&path, "cannot write"))?;
    Ok(path)
}

/// A referral-table row: its name, the figure, whether higher is better, decimals.
type ReferralRow = (&'static str, fn(&crate::score::Referral) -> f64, bool, usize);

type PlotFn = fn(&ScoreReport, Option<(&str, &ScoreReport)>) -> Result<image::RgbImage, ChartError>;

const PLOT_W: u32 = 560;
const PLOT_H: u32 = 420;

fn pairs(r: &ScoreReport) -> Vec<(f64, f64)> {
    r.images.iter().map(|i| (i.scores.vcdr_true, i.scores.vcdr)).collect()
}

/// Predicted against true vCDR, with the identity line and the referral threshold.
fn scatter(
    r: &ScoreReport,
    other: Option<(&str, &ScoreReport)>,
) -> Result<image::RgbImage, ChartError> {
    charts::draw(PLOT_W, PLOT_H, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .caption("vCDR: predicted against true", (FONT, 17))
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        c.configure_mesh()
            .x_desc("true vCDR (experts' masks)")
            .y_desc("predicted vCDR")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        c.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], GREY.stroke_width(1)))?
            .label("identity")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREY));
        let t = r.referral.threshold;
        let dashed = GREY.mix(0.5).stroke_width(1);
        c.draw_series(LineSeries::new([(t, 0.0), (t, 1.0)], dashed))?;
        c.draw_series(LineSeries::new([(0.0, t), (1.0, t)], dashed))?;
        if let Some((name, o)) = other {
            c.draw_series(pairs(o).into_iter().map(|p| Circle::new(p, 3, ORANGE.filled())))?
                .label(name.to_owned())
                .legend(|(x, y)| Circle::new((x + 8, y), 3, ORANGE.filled()));
        }
        c.draw_series(pairs(r).into_iter().map(|p| Circle::new(p, 3, BLUE.filled())))?
            .label("this model")
            .legend(|(x, y)| Circle::new((x + 8, y), 3, BLUE.filled()));
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        Ok(())
    })
}

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The bias and 95 % limits of agreement of predicted minus true vCDR.
pub fn agreement(r: &ScoreReport) -> (f64, f64, f64) {
    let d: Vec<f64> = r.images.iter().map(|i| i.scores.vcdr - i.scores.vcdr_true).collect();
    let (bias, sd) = mean_sd(&d);
    (bias, bias - 1.96 * sd, bias + 1.96 * sd)
}

/// Bland-Altman: the difference (predicted - true) against the mean of the two, with the
/// bias and the 95 % limits of agreement.
fn bland_altman(
    r: &ScoreReport,
    _: Option<(&str, &ScoreReport)>,
) -> Result<image::RgbImage, ChartError> {
    let points: Vec<(f64, f64)> = r
        .images
        .iter()
        .map(|i| ((i.scores.vcdr + i.scores.vcdr_true) / 2.0, i.scores.vcdr - i.scores.vcdr_true))
        .collect();
    let (bias, lo, hi) = agreement(r);
    let span = points.iter().map(|p| p.1.abs()).fold(lo.abs().max(hi.abs()), f64::max);
    let y = (span * 1.15).max(0.1);
    charts::draw(PLOT_W, PLOT_H, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .caption("vCDR agreement (Bland-Altman)", (FONT, 17))
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, -y..y)?;
        c.configure_mesh()
            .x_desc("mean of predicted and true vCDR")
            .y_desc("predicted - true vCDR")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        c.draw_series(LineSeries::new([(0.0, bias), (1.0, bias)], BLACK.stroke_width(2)))?
            .label(format!("bias {bias:+.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        for v in [lo, hi] {
            c.draw_series(LineSeries::new([(0.0, v), (1.0, v)], VERMILION.stroke_width(1)))?;
        }
        c.draw_series(std::iter::once(PathElement::new(vec![(0.0, hi), (0.0, hi)], VERMILION)))?
            .label(format!("95% limits {lo:+.3} .. {hi:+.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], VERMILION));
        c.draw_series(points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        Ok(())
    })
}

/// Counts of `values` in 20 bins of 0.05 on [0, 1] (1.0 in the last).
fn histogram(values: impl Iterator<Item = f64>) -> [u32; 20] {
    let mut bins = [0u32; 20];
    for v in values {
        bins[((v.clamp(0.0, 1.0) * 20.0) as usize).min(19)] += 1;
    }
    bins
}

/// Histograms of the disc and cup Dice per image.
fn dice_histograms(
    r: &ScoreReport,
    _: Option<(&str, &ScoreReport)>,
) -> Result<image::RgbImage, ChartError> {
    let disc = histogram(r.images.iter().map(|i| i.scores.disc_dice));
    let cup = histogram(r.images.iter().map(|i| i.scores.cup_dice));
    let top = disc.iter().chain(&cup).copied().max().unwrap_or(1).max(1);
    charts::draw(PLOT_W, PLOT_H, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .caption("Dice per image", (FONT, 17))
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0u32..top + top / 8 + 1)?;
        c.configure_mesh()
            .x_desc("Dice")
            .y_desc("images")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        // Disc bars on the left half of each 0.05 bin, cup on the right half.
        for (counts, colour, name, offset) in
            [(disc, GREEN_BAR, "disc", 0.0), (cup, BLUE, "cup", 0.025)]
        {
            c.draw_series(counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, &n)| {
                let x0 = i as f64 * 0.05 + offset;
                Rectangle::new([(x0, 0), (x0 + 0.025, n)], colour.filled())
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        Ok(())
    })
}

const GREEN_BAR: RGBColor = charts::GREEN;

fn bin_label(lo: f64, hi: f64) -> String {
    if hi.is_finite() { format!("{lo:.1}-{hi:.1}") } else { format!(">= {lo:.1}") }
}

/// Signed vCDR error by true-vCDR bin: where cups come out too small (below zero).
fn error_by_bin(
    r: &ScoreReport,
    other: Option<(&str, &ScoreReport)>,
) -> Result<image::RgbImage, ChartError> {
    let edges = crate::score::VCDR_BIN_EDGES;
    let bins = edges.len() - 1;
    let find = |rep: &ScoreReport, lo: f64| rep.vcdr_bins.iter().find(|b| b.lo == lo).copied();
    let mut span: f64 = 0.05;
    for rep in std::iter::once(r).chain(other.map(|o| o.1)) {
        for b in &rep.vcdr_bins {
            span = span.max(b.signed_error.abs());
        }
    }
    let y = span * 1.2;
    charts::draw(PLOT_W, PLOT_H, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .caption("signed vCDR error by true vCDR", (FONT, 17))
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..bins as f64, -y..y)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(bins * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x.fract() - 0.5).abs() < 1e-6 && i < bins {
                    bin_label(edges[i], edges[i + 1])
                } else {
                    String::new()
                }
            })
            .x_desc("true vCDR")
            .y_desc("mean predicted - true")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        c.draw_series(LineSeries::new([(0.0, 0.0), (bins as f64, 0.0)], BLACK))?;
        let series: Vec<(&str, &ScoreReport, RGBColor, f64)> = match other {
            Some((name, o)) => vec![("this model", r, BLUE, 0.1), (name, o, ORANGE, 0.5)],
            None => vec![("this model", r, BLUE, 0.25)],
        };
        let width = if other.is_some() { 0.4 } else { 0.5 };
        for (name, rep, colour, offset) in series {
            c.draw_series((0..bins).filter_map(|i| {
                let b = find(rep, edges[i])?;
                let x0 = i as f64 + offset;
                Some(Rectangle::new([(x0, 0.0), (x0 + width, b.signed_error)], colour.filled()))
            }))?
            .label(name.to_owned())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        Ok(())
    })
}

/// The median of `v` (0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The summary rows: name, mean, median, and whether higher is better.
fn summary_rows(r: &ScoreReport) -> Vec<(&'static str, f64, f64, bool)> {
    let s = &r.summary;
    let med = |f: fn(&papilla_shared::metrics::ImageScores) -> f64| {
        median(r.images.iter().map(|i| f(&i.scores)).collect())
    };
    vec![
        ("Dice disc", s.disc_dice, med(|s| s.disc_dice), true),
        ("Dice cup", s.cup_dice, med(|s| s.cup_dice), true),
        ("IoU disc", s.disc_iou, med(|s| s.disc_iou), true),
        ("IoU cup", s.cup_iou, med(|s| s.cup_iou), true),
        ("vCDR MAE", s.vcdr_mae, med(|s| s.vcdr_error()), false),
        ("hCDR MAE", s.hcdr_mae, med(|s| s.hcdr_error()), false),
        ("aCDR MAE", s.acdr_mae, med(|s| s.acdr_error()), false),
    ]
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;\
color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:\
1px solid #ccc}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;\
padding:.25em .6em;text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-\
align:left}.better{color:#060}.worse{color:#a00}.plots img{width:48%;min-width:360px;margin:\
.5%}.cases{display:flex;flex-wrap:wrap;gap:1em}.case{width:260px;font-size:.85em}.case img{\
width:260px;height:auto;border:1px solid #999}.key span{display:inline-block;width:1em;height:\
.8em;margin:0 .3em 0 1em}.meta{color:#555}";

/// One number, with the difference to the other model's when there is one.
fn cell(v: f64, other: Option<f64>, higher_better: bool, digits: usize) -> String {
    let mut s = format!("<td>{v:.digits$}</td>");
    if let Some(o) = other {
        let d = v - o;
        let class = if d.abs() < 0.5 * 10f64.powi(-(digits as i32)) {
            ""
        } else if (d > 0.0) == higher_better {
            " class=\"better\""
        } else {
            " class=\"worse\""
        };
        let _ = write!(s, "<td>{o:.digits$}</td><td{class}>{d:+.digits$}</td>");
    }
    s
}

/// The page's HTML.
pub fn html(page: &Page<'_>) -> String {
    let r = page.report;
    let other = page.compare.as_ref();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Papilla evaluation: \
         {}</title><style>{STYLE}</style></head><body>",
        esc(&page.model)
    );
    let _ = write!(
        h,
        "<h1>Papilla evaluation</h1><p class=\"meta\">model <code>{}</code> on {} ({} images)",
        esc(&page.model),
        page.data.iter().map(|d| format!("<code>{}</code>", esc(d))).collect::<Vec<_>>().join(", "),
        r.summary.n
    );
    if let Some((name, o)) = other {
        let _ = write!(h, "; compared with <b>{}</b> ({} images)", esc(name), o.summary.n);
    }
    h += ". Files: <a href=\"images.csv\">images.csv</a> (per image), \
          <a href=\"report.json\">report.json</a> (for <code>--compare</code>).</p>";

    // Summary.
    let head = |first: &str| match other {
        Some((name, _)) => format!(
            "<tr><th>{first}</th><th>this model</th><th>{}</th><th>difference</th></tr>",
            esc(name)
        ),
        None => format!("<tr><th>{first}</th><th>this model</th></tr>"),
    };
    h += "<h2>Summary</h2><table id=\"summary\"><tr><th rowspan=\"2\">metric</th>";
    let span = if other.is_some() { 3 } else { 1 };
    let _ =
        write!(h, "<th colspan=\"{span}\">mean</th><th colspan=\"{span}\">median</th></tr><tr>");
    for _ in 0..2 {
        h += "<th>this model</th>";
        if let Some((name, _)) = other {
            let _ = write!(h, "<th>{}</th><th>difference</th>", esc(name));
        }
    }
    h += "</tr>";
    let theirs = other.map(|(_, o)| summary_rows(o));
    for (k, (name, mean, med, better)) in summary_rows(r).into_iter().enumerate() {
        let t = theirs.as_ref().map(|t| (t[k].1, t[k].2));
        let _ = write!(
            h,
            "<tr><td>{name}</td>{}{}</tr>",
            cell(mean, t.map(|t| t.0), better, 4),
            cell(med, t.map(|t| t.1), better, 4)
        );
    }
    h += "</table>";
    let (bias, lo, hi) = agreement(r);
    let _ = write!(
        h,
        "<p>vCDR bias (predicted - true) {bias:+.3}, 95% limits of agreement {lo:+.3} to {hi:+.3}.</p>"
    );

    // Referral.
    let rf = &r.referral;
    let _ = write!(h, "<h2>Referral at vCDR &ge; {}</h2><table id=\"referral\">", rf.threshold);
    h += &head("");
    let orf = other.map(|(_, o)| o.referral);
    let rows: [ReferralRow; 6] = [
        ("eyes that should be referred (true vCDR at or above)", |x| x.eligible as f64, true, 0),
        ("referred", |x| x.referred as f64, true, 0),
        ("missed", |x| x.missed as f64, false, 0),
        ("sensitivity", |x| x.sensitivity, true, 3),
        ("eyes below the threshold", |x| x.below as f64, true, 0),
        ("false referrals", |x| x.false_referrals as f64, false, 0),
    ];
    for (name, get, better, digits) in rows {
        let _ = write!(
            h,
            "<tr><td>{name}</td>{}</tr>",
            cell(get(rf), orf.as_ref().map(get), better, digits)
        );
    }
    if let Some(a) = r.glaucoma_auc {
        let _ = write!(
            h,
            "<tr><td>glaucoma AUC of the predicted vCDR</td>{}</tr>",
            cell(a, other.and_then(|(_, o)| o.glaucoma_auc), true, 3)
        );
    }
    if let Some(a) = r.glaucoma_auc_truth {
        let _ = write!(
            h,
            "<tr><td>glaucoma AUC of the experts' vCDR (ceiling)</td>{}</tr>",
            cell(a, other.and_then(|(_, o)| o.glaucoma_auc_truth), true, 3)
        );
    }
    h += "</table>";
    if let Some([g, n]) = r.glaucoma_eyes {
        let _ = write!(h, "<p>{g} eyes with glaucoma, {n} without.</p>");
    }

    // Bins.
    h += "<h2>Error by true vCDR</h2><table id=\"bins\"><tr><th>true vCDR</th><th>n</th>\
          <th>signed error</th><th>absolute error</th><th>Dice cup</th>";
    if let Some((name, _)) = other {
        let _ = write!(h, "<th>{0}: signed error</th><th>{0}: Dice cup</th>", esc(name));
    }
    h += "</tr>";
    for b in &r.vcdr_bins {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:+.4}</td><td>{:.4}</td><td>{:.4}</td>",
            bin_label(b.lo, b.hi),
            b.n,
            b.signed_error,
            b.abs_error,
            b.cup_dice
        );
        if let Some((_, o)) = other {
            match o.vcdr_bins.iter().find(|x| x.lo == b.lo) {
                Some(x) => {
                    let _ = write!(h, "<td>{:+.4}</td><td>{:.4}</td>", x.signed_error, x.cup_dice);
                }
                None => h += "<td></td><td></td>",
            }
        }
        h += "</tr>";
    }
    h += "</table>";

    // Plots.
    h += "<h2>Plots</h2><div class=\"plots\">";
    for (file, alt) in [
        (SCATTER, "predicted against true vCDR"),
        (BLAND_ALTMAN, "Bland-Altman plot of the vCDR"),
        (DICE, "histograms of disc and cup Dice"),
        (BINS, "signed vCDR error by true vCDR"),
    ] {
        let _ = write!(h, "<img src=\"{file}\" alt=\"{alt}\">");
    }
    h += "</div>";

    // Worst cases.
    if !page.cases.is_empty() {
        h += "<h2>Worst cases (lowest cup Dice)</h2><p class=\"key\">outlines: \
              <span style=\"background:#00e600\"></span>predicted disc\
              <span style=\"background:#1e50ff\"></span>predicted cup\
              <span style=\"background:#ffe600\"></span>true disc\
              <span style=\"background:#00e6e6\"></span>true cup</p><div class=\"cases\">";
        for c in &page.cases {
            let Some(i) = r.images.get(c.image) else { continue };
            let s = &i.scores;
            let diagnosis = match i.glaucoma {
                Some(true) => ", glaucoma",
                Some(false) => ", normal",
                None => "",
            };
            let _ = write!(
                h,
                "<div class=\"case\"><a href=\"{0}\"><img src=\"{0}\" alt=\"{1}\"></a><br><b>{1}</b>\
                 {diagnosis}<br>Dice disc {2:.3}, cup {3:.3}<br>vCDR {4:.3}, true {5:.3}</div>",
                esc(&c.file),
                esc(&i.name),
                s.disc_dice,
                s.cup_dice,
                s.vcdr,
                s.vcdr_true
            );
        }
        h += "</div>";
    }
    close_page(h)
}

/// Ends a page: the image check, then the closing tags.
fn close_page(mut h: String) -> String {
    h += IMAGES_CHECK;
    h += "</body></html>\n";
    h
}

/// For people nothing; for the pages' browser tests, whether every image decoded.
const IMAGES_CHECK: &str = "<script>addEventListener('load',()=>{const i=[...document.images];\
    document.body.dataset.imagesTotal=i.length;\
    document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;});\
    </script>";

/// The page of a training run: where it stands, its best epoch, `curves.png` and the epochs as
/// a table, with links to the files beside it. Rewritten after every epoch, so a browser
/// reload shows the run's progress.
pub fn run_page(
    name: &str,
    epochs: usize,
    state: &crate::run_dir::RunState,
    history: &[crate::history::EpochMetrics],
) -> String {
    use crate::run_dir::{CONFIG_FILE, METRICS_FILE, PLOT_FILE, STATE_FILE};
    let mut h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>papilla run {0}</title>\
         <style>{STYLE}</style></head><body><h1>Training run {0}</h1><p>epoch {1} of {epochs}, \
         {2} of training.",
        esc(name),
        state.epoch,
        crate::progress::fmt_duration(state.wall_time_s)
    );
    if let (Some(e), Some(b)) = (state.best_epoch, &state.best) {
        let _ = write!(
            h,
            " Best epoch {e}: validation Dice disc {:.4}, cup {:.4}, vCDR MAE {:.4} ({} images), \
             kept as <code>model-best.bpk</code>.",
            b.disc_dice, b.cup_dice, b.vcdr_mae, b.n
        );
    }
    let _ = write!(
        h,
        "</p><p><a href=\"{PLOT_FILE}\"><img src=\"{PLOT_FILE}\" alt=\"training curves\" \
         style=\"max-width:100%\"></a></p><p>Files: <a href=\"{METRICS_FILE}\">{METRICS_FILE}</a>, \
         <a href=\"{CONFIG_FILE}\">{CONFIG_FILE}</a>, <a href=\"{STATE_FILE}\">{STATE_FILE}</a>.</p>\
         <h2>Epochs</h2><table id=\"epochs\"><tr><th>epoch</th><th>lr</th><th>loss</th>\
         <th>Dice disc</th><th>Dice cup</th><th>vCDR MAE</th><th>score</th><th>img/s</th></tr>"
    );
    // Newest first: the row a person reloads the page for.
    for m in history.iter().rev() {
        let best = if Some(m.epoch) == state.best_epoch { " class=\"better\"" } else { "" };
        let _ = write!(
            h,
            "<tr{best}><td>{}</td><td>{:.2e}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
             <td>{:.4}</td><td>{:.4}</td><td>{:.2}</td></tr>",
            m.epoch,
            m.lr,
            m.train_loss,
            m.val_disc_dice,
            m.val_cup_dice,
            m.val_vcdr_mae,
            m.score,
            m.images_per_s
        );
    }
    h += "</table>";
    close_page(h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::score::ScoredImage;
    use papilla_shared::metrics::ImageScores;

    fn image(name: &str, vcdr: f64, vcdr_true: f64, cup: f64) -> ScoredImage {
        ScoredImage {
            name: name.into(),
            glaucoma: Some(name.starts_with('g')),
            scores: ImageScores {
                disc_dice: 0.9,
                cup_dice: cup,
                vcdr,
                vcdr_true,
                ..ImageScores::default()
            },
            vcdr_error: (vcdr - vcdr_true).abs(),
            pred_snapped: 0,
            truth_snapped: 0,
        }
    }

    fn report() -> ScoreReport {
        ScoreReport::new(
            vec![
                image("g0001", 0.55, 0.75, 0.6),
                image("g0002", 0.7, 0.8, 0.8),
                image("n0001", 0.4, 0.35, 0.9),
            ],
            Vec::new(),
            0.6,
        )
    }

    #[test]
    fn medians_and_agreement_limits() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
        // Differences -0.2, -0.1, +0.05: mean -0.0833, sd 0.1258.
        let (bias, lo, hi) = agreement(&report());
        assert!((bias + 0.25 / 3.0).abs() < 1e-12, "{bias}");
        assert!(
            (hi - bias - 1.96 * 0.125_830_573).abs() < 1e-6
                && (bias - lo - (hi - bias)).abs() < 1e-12
        );
    }

    #[test]
    fn the_page_has_its_tables_plots_and_a_comparison() {
        let r = report();
        let mut other = report();
        other.summary.cup_dice = 0.5;
        let page = Page {
            report: &r,
            model: "m <1>.papilla".into(),
            data: vec!["test".into()],
            cases: vec![Case { file: "01_g0001.png".into(), image: 0 }],
            compare: Some(("older".into(), other)),
        };
        let h = html(&page);
        for id in ["summary", "referral", "bins"] {
            assert!(h.contains(&format!("<table id=\"{id}\">")), "{id}");
        }
        for f in [SCATTER, BLAND_ALTMAN, DICE, BINS, "01_g0001.png"] {
            assert!(h.contains(&format!("src=\"{f}\"")), "{f}");
        }
        assert!(h.contains("m &lt;1&gt;.papilla"), "escaped");
        // Mean cup Dice 0.7667 against 0.5: a better difference of +0.2667.
        assert!(
            h.contains("<td>0.7667</td><td>0.5000</td><td class=\"better\">+0.2667</td>"),
            "{h}"
        );
        assert!(h.contains("glaucoma AUC of the predicted vCDR"));
        let dir = tempfile::tempdir().unwrap();
        let index = write(dir.path(), &page).unwrap();
        assert_eq!(index, dir.path().join(INDEX));
        for f in [SCATTER, BLAND_ALTMAN, DICE, BINS] {
            let img = image::open(dir.path().join(f)).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (PLOT_W, PLOT_H), "{f}");
            let blue = img.pixels().filter(|p| p.0 == [0, 114, 178]).count();
            assert!(blue > 20, "{f}: this model's points or bars drawn ({blue} pixels)");
        }
        // report.json reads back as a comparison named after its folder.
        let (name, back) = read_compare(&dir.path().join(JSON)).unwrap();
        assert_eq!(name, dir.path().file_name().unwrap().to_string_lossy());
        assert_eq!(back.images.len(), 3);
        // The open-ended bin survives JSON (serde_json's float parse may differ in the last bit).
        assert_eq!(back.vcdr_bins.len(), r.vcdr_bins.len());
        for (b, a) in back.vcdr_bins.iter().zip(&r.vcdr_bins) {
            assert_eq!((b.lo, b.hi, b.n), (a.lo, a.hi, a.n));
            assert!((b.signed_error - a.signed_error).abs() < 1e-12, "{b:?} {a:?}");
        }
        assert_eq!(back.vcdr_bins.last().unwrap().hi, f64::INFINITY);
        let csv = std::fs::read_to_string(dir.path().join(CSV)).unwrap();
        assert_eq!(csv.lines().count(), 4);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"n\": 1}").unwrap();
        let err = read_compare(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.json") && err.contains("evaluate --json"), "{err}");
    }
}
