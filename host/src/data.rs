//! Training and evaluation data: GAMMA/REFUGE and RIM-ONE DL folder layouts, the seed's
//! cleaning step as a reported feature, and an in-memory cache of decoded, resized samples
//! (an epoch never decodes a JPEG again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use papilla_shared::files;
use papilla_shared::labels::{Class, LabelMap, MaskRole};
use papilla_shared::photo::DecodeOptions;
use papilla_shared::preprocess::{Geometry, PreprocessConfig, Rect, Resized, mirror_index, resize};
use papilla_shared::synth::SplitMix64;
use thiserror::Error;

use crate::progress::{Bar, Progress, Silent};

/// Folder names of the GAMMA task-3 layout.
pub const GAMMA_IMAGES: &str = "fundus color images";
pub const GAMMA_MASKS: [&str; 2] = ["Disc_Cup_Masks", "Disc_Cup_Mask"];
/// RIM-ONE DL's published layout.
pub const RIMONE_IMAGES: &str = "partitioned_randomly/images";
pub const RIMONE_MASKS: &str = "RIM-ONE_DL_reference_segmentations";

/// Largest photograph accepted, per side: real fundus cameras stay far below; a
/// 30000x30000 file is an attack or a mistake.
pub const MAX_SIDE: u32 = 12_000;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{}: cannot list the folder", dir.display())]
    ListDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: not a known data layout (expected `{GAMMA_IMAGES}/` with `Disc_Cup_Masks/`, or RIM-ONE DL's `{RIMONE_IMAGES}/` with `{RIMONE_MASKS}/`)",
        dir.display()
    )]
    UnknownLayout { dir: PathBuf },
    #[error("{}: no usable image/mask pairs ({skipped} skipped)", dir.display())]
    Empty { dir: PathBuf, skipped: usize },
}

/// Where the masks of one image are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaskFiles {
    /// One 0/128/255 mask (GAMMA, REFUGE).
    Combined(PathBuf),
    /// Separate binary disc and cup masks (RIM-ONE DL).
    DiscCup { disc: PathBuf, cup: PathBuf },
}

/// An image and its masks, matched by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Identifier: the file stem.
    pub name: String,
    pub image: PathBuf,
    pub masks: MaskFiles,
    /// The diagnosis where the layout gives one: RIM-ONE DL's `glaucoma/` and `normal/`
    /// folders, REFUGE's `g0001`/`n0001` names.
    pub glaucoma: Option<bool>,
}

/// REFUGE's training-set names carry the diagnosis: `g0001` glaucoma, `n0001` normal.
pub fn refuge_diagnosis(stem: &str) -> Option<bool> {
    let (head, digits) = stem.split_at_checked(1)?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match head {
        "g" => Some(true),
        "n" => Some(false),
        _ => None,
    }
}

/// A file left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub path: PathBuf,
    pub reason: String,
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    files::list_files(dir).map_err(|source| DataError::ListDir { dir: dir.to_owned(), source })
}

/// File stem as a string (empty when there is none).
pub fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Finds the image/mask pairs of a data folder. `rimone_split` picks RIM-ONE DL's official
/// split (`train` or `test`) when `dir` is its root; a GAMMA folder is taken whole.
pub fn scan(dir: &Path, rimone_split: &str) -> Result<(Vec<Pair>, Vec<Skip>), DataError> {
    let images = dir.join(GAMMA_IMAGES);
    if images.is_dir() {
        let Some(masks) = GAMMA_MASKS.iter().map(|m| dir.join(m)).find(|m| m.is_dir()) else {
            return Err(DataError::UnknownLayout { dir: dir.to_owned() });
        };
        return scan_gamma(&images, &masks);
    }
    if dir.join(RIMONE_MASKS).is_dir() && dir.join(RIMONE_IMAGES).is_dir() {
        return scan_rimone(dir, rimone_split);
    }
    Err(DataError::UnknownLayout { dir: dir.to_owned() })
}

fn scan_gamma(images: &Path, masks: &Path) -> Result<(Vec<Pair>, Vec<Skip>), DataError> {
    let mut skips = Vec::new();
    let mut by_stem: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in list(masks)? {
        if crate::masks::is_mask_file(&m) {
            by_stem.insert(stem(&m), m);
        } else {
            skips.push(Skip { path: m, reason: "not a .bmp or .png mask".into() });
        }
    }
    let mut pairs = Vec::new();
    for img in list(images)? {
        if !files::is_photo_name(&img) {
            skips.push(Skip { path: img, reason: "not a .jpg or .png image".into() });
            continue;
        }
        let name = stem(&img);
        match by_stem.remove(&name) {
            Some(mask) => pairs.push(Pair {
                glaucoma: refuge_diagnosis(&name),
                name,
                image: img,
                masks: MaskFiles::Combined(mask),
            }),
            None => skips.push(Skip { path: img, reason: "no mask of the same name".into() }),
        }
    }
    for (_, mask) in by_stem {
        skips.push(Skip { path: mask, reason: "no image of the same name".into() });
    }
    Ok((pairs, skips))
}

fn scan_rimone(root: &Path, split: &str) -> Result<(Vec<Pair>, Vec<Skip>), DataError> {
    let mut skips = Vec::new();
    let mut masks: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    let mut diagnosis: BTreeMap<String, bool> = BTreeMap::new();
    for group in ["normal", "glaucoma"] {
        let dir = root.join(RIMONE_MASKS).join(group);
        if !dir.is_dir() {
            continue;
        }
        for m in list(&dir)? {
            let s = stem(&m);
            if let Some(id) = s.strip_suffix("-1-Disc-T") {
                diagnosis.insert(id.to_owned(), group == "glaucoma");
                masks.entry(id.to_owned()).or_default().0 = Some(m);
            } else if let Some(id) = s.strip_suffix("-1-Cup-T") {
                masks.entry(id.to_owned()).or_default().1 = Some(m);
            }
        }
    }
    let mut pairs = Vec::new();
    for img in list(&root.join(RIMONE_IMAGES).join(split))? {
        if !files::is_photo_name(&img) {
            continue;
        }
        let name = stem(&img);
        match masks.get(&name) {
            Some((Some(disc), Some(cup))) => pairs.push(Pair {
                glaucoma: diagnosis.get(&name).copied(),
                name,
                image: img,
                masks: MaskFiles::DiscCup { disc: disc.clone(), cup: cup.clone() },
            }),
            _ => skips.push(Skip {
                path: img,
                reason: "no Disc-T and Cup-T masks of the same id".into(),
            }),
        }
    }
    Ok((pairs, skips))
}

/// One cached sample: the network input before normalisation, its target, and the ground
/// truth at the photograph's size for scoring.
#[derive(Clone, Debug)]
pub struct Sample {
    /// `<data folder name>/<stem>`.
    pub name: String,
    /// The photograph it came from (for overlays).
    pub image_path: PathBuf,
    pub input: Resized,
    /// Labels at network size (nearest).
    pub target: LabelMap,
    /// Labels at the photograph's size.
    pub truth: LabelMap,
    pub geometry: Geometry,
    /// The eye's diagnosis, where the data set gives one ([`Pair::glaucoma`]).
    pub glaucoma: Option<bool>,
}

impl Sample {
    /// The data folder it came from: the first part of [`Sample::name`].
    pub fn folder(&self) -> &str {
        self.name.split('/').next().unwrap_or_default()
    }
}

/// What loading had to fix or leave out.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    pub skipped: Vec<Skip>,
    /// Images resized to their mask's size (the seed's rule).
    pub resized: Vec<PathBuf>,
    /// Images converted to 8-bit RGB from another colour mode.
    pub converted: Vec<(PathBuf, String)>,
    /// Mask pixels moved to the nearest of 0/128/255.
    pub snapped_pixels: u64,
    /// RIM-ONE cup pixels outside the disc mask, counted as disc.
    pub cup_outside_disc: u64,
    /// Photographs too tight for the second stage's crop, mirrored outwards.
    pub mirrored: Vec<PathBuf>,
}

impl LoadReport {
    /// A short human summary, one line per kind of event.
    pub fn summary(&self) -> String {
        let mut s = format!("{} samples loaded", self.loaded);
        if !self.skipped.is_empty() {
            s += &format!(", {} skipped", self.skipped.len());
        }
        if !self.resized.is_empty() {
            s += &format!(", {} images resized to their mask", self.resized.len());
        }
        if !self.converted.is_empty() {
            s += &format!(", {} images converted to RGB", self.converted.len());
        }
        if self.snapped_pixels > 0 {
            s += &format!(", {} mask pixels snapped to 0/128/255", self.snapped_pixels);
        }
        if self.cup_outside_disc > 0 {
            s += &format!(", {} cup pixels outside the disc taken as disc", self.cup_outside_disc);
        }
        if !self.mirrored.is_empty() {
            s += &format!(
                ", {} crops tighter than the segmenter's context mirrored outwards",
                self.mirrored.len()
            );
        }
        for skip in &self.skipped {
            s += &format!("\n  skipped {}: {}", skip.path.display(), skip.reason);
        }
        s
    }

    fn merge(&mut self, other: LoadReport) {
        self.loaded += other.loaded;
        self.skipped.extend(other.skipped);
        self.resized.extend(other.resized);
        self.converted.extend(other.converted);
        self.snapped_pixels += other.snapped_pixels;
        self.cup_outside_disc += other.cup_outside_disc;
        self.mirrored.extend(other.mirrored);
    }
}

/// Decodes a data set's photograph (the shared decoder, by content, as stored), as 8-bit RGB;
/// reports a colour conversion.
pub fn read_image(path: &Path) -> Result<(RgbImage, Option<String>), String> {
    read_with(path, &host_options(DecodeOptions::data_set()))
}

/// [`read_image`] with the EXIF orientation applied, as the camera's decoder does: a
/// photograph to segment, with no mask drawn on its stored pixels.
pub fn read_photo_oriented(path: &Path) -> Result<(RgbImage, Option<String>), String> {
    read_with(path, &host_options(DecodeOptions::photograph()))
}

/// The host's limit: no side over [`MAX_SIDE`] (as pixels).
fn host_options(o: DecodeOptions) -> DecodeOptions {
    DecodeOptions { max_pixels: u64::from(MAX_SIDE) * u64::from(MAX_SIDE), ..o }
}

fn read_with(path: &Path, opts: &DecodeOptions) -> Result<(RgbImage, Option<String>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let photo = papilla_shared::photo::decode(&bytes, path, opts).map_err(|e| e.to_string())?;
    Ok((photo.image, photo.converted))
}

fn read_grey_mask(path: &Path, role: MaskRole) -> Result<papilla_shared::DecodedMask, String> {
    crate::masks::read_mask(path, role).map_err(|e| e.to_string())
}

fn read_binary(path: &Path) -> Result<(u32, u32, Vec<bool>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let img = image::load_from_memory(&bytes).map_err(|e| format!("cannot decode: {e}"))?;
    let g = img.to_luma8();
    Ok((g.width(), g.height(), g.pixels().map(|p| p.0[0] >= 128).collect()))
}

/// Loads one pair into a sample at the config's network size.
pub fn load_pair(
    pair: &Pair,
    prefix: &str,
    config: &PreprocessConfig,
) -> Result<(Sample, LoadReport), Skip> {
    load_pair_with(pair, prefix, config, &|_, _| ()).map(|(s, (), r)| (s, r))
}

/// [`load_pair`], also handing the pair and its photograph (at its ground truth's size) to
/// `with_photo` while it is decoded, so a caller that needs it whole never decodes it a second
/// time (and one that needs only some photographs can pass the others by).
pub fn load_pair_with<T>(
    pair: &Pair,
    prefix: &str,
    config: &PreprocessConfig,
    with_photo: &dyn Fn(&Pair, &RgbImage) -> T,
) -> Result<(Sample, T, LoadReport), Skip> {
    let skip = |path: &Path, reason: String| Skip { path: path.to_owned(), reason };
    let mut report = LoadReport::default();
    let truth = match &pair.masks {
        MaskFiles::Combined(m) => {
            let d = read_grey_mask(m, MaskRole::Truth).map_err(|r| skip(m, r))?;
            report.snapped_pixels += d.snapped;
            d.labels
        }
        MaskFiles::DiscCup { disc, cup } => {
            let (w, h, d) = read_binary(disc).map_err(|r| skip(disc, r))?;
            let (cw, ch, c) = read_binary(cup).map_err(|r| skip(cup, r))?;
            if (cw, ch) != (w, h) {
                return Err(skip(
                    cup,
                    format!("cup mask is {cw}x{ch} but the disc mask is {w}x{h}"),
                ));
            }
            if !d.iter().any(|&v| v) {
                return Err(skip(disc, "the disc mask is empty".into()));
            }
            report.cup_outside_disc += d.iter().zip(&c).filter(|(d, c)| **c && !**d).count() as u64;
            LabelMap::from_disc_cup(w, h, &d, &c).expect("sizes checked")
        }
    };
    let (mut image, converted) = read_image(&pair.image).map_err(|r| skip(&pair.image, r))?;
    if let Some(mode) = converted {
        report.converted.push((pair.image.clone(), mode));
    }
    if image.dimensions() != truth.dimensions() {
        image = image::imageops::resize(
            &image,
            truth.width(),
            truth.height(),
            image::imageops::FilterType::Triangle,
        );
        report.resized.push(pair.image.clone());
    }
    // A second (coarse-to-fine) stage learns on the crop its locator will hand it, centred
    // here on the true disc; augmentation shifts and scales it like a locator's error. A
    // disc-centred crop (RIM-ONE's, Zeiss's) is too tight for that crop: it is mirrored
    // outwards, as the run-time disc-centred framing does, so the disc enters the network at
    // the same scale as in a whole photograph.
    let no_disc = || skip(&pair.image, "the mask has no disc to crop around".into());
    let (input, geometry, target, truth, canvas) = match &config.roi {
        Some(policy) => {
            let (x0, y0, side) = policy.square_for(&truth).ok_or_else(no_disc)?;
            let (w, h) = image.dimensions();
            if side <= w && side <= h {
                // The square shifted inside the photograph: `crop_for`'s rectangle, without
                // scanning the mask for the disc a second time.
                let place = |start: i64, limit: u32| start.clamp(0, (limit - side) as i64) as u32;
                let roi = Rect { x: place(x0, w), y: place(y0, h), width: side, height: side };
                let (input, geometry) = resize(&image, config, Some(roi))
                    .map_err(|e| skip(&pair.image, e.to_string()))?;
                let target = geometry.to_network(&truth);
                (input, geometry, target, truth, None)
            } else {
                report.mirrored.push(pair.image.clone());
                let (canvas, labels, scored) = mirrored_square(&image, &truth, x0, y0, side);
                let (input, geometry) =
                    resize(&canvas, config, None).map_err(|e| skip(&pair.image, e.to_string()))?;
                let target = geometry.to_network(&labels);
                (input, geometry, target, scored, Some(canvas))
            }
        }
        None => {
            let (input, geometry) =
                resize(&image, config, None).map_err(|e| skip(&pair.image, e.to_string()))?;
            let target = geometry.to_network(&truth);
            (input, geometry, target, truth, None)
        }
    };
    // The photograph as the truth frames it: a mirrored sample's overlay is of its square.
    let extra = with_photo(pair, canvas.as_ref().unwrap_or(&image));
    report.loaded = 1;
    let name = format!("{prefix}/{}", pair.name);
    let sample = Sample {
        name,
        image_path: pair.image.clone(),
        input,
        target,
        truth,
        geometry,
        glaucoma: pair.glaucoma,
    };
    Ok((sample, extra, report))
}

/// The `side`-pixel square at `(x0, y0)` of a photograph and its labels, mirrored past the
/// photograph's edges: the photograph, the labels as the network learns them (mirrored too, so
/// a mirrored rim is not taught as background) and the labels it is scored against (only the
/// photograph's own pixels: background outside, so the measured vCDR is the eye's).
fn mirrored_square(
    image: &RgbImage,
    truth: &LabelMap,
    x0: i64,
    y0: i64,
    side: u32,
) -> (RgbImage, LabelMap, LabelMap) {
    let (w, h) = image.dimensions();
    let source = |x: u32, y: u32| (mirror_index(x0 + x as i64, w), mirror_index(y0 + y as i64, h));
    let canvas = RgbImage::from_fn(side, side, |x, y| {
        let (sx, sy) = source(x, y);
        *image.get_pixel(sx, sy)
    });
    let mut labels = LabelMap::filled(side, side, Class::Background);
    let mut scored = LabelMap::filled(side, side, Class::Background);
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = source(x, y);
            let class = truth.get(sx, sy);
            labels.set(x, y, class);
            let (px, py) = (x0 + x as i64, y0 + y as i64);
            if (0..w as i64).contains(&px) && (0..h as i64).contains(&py) {
                scored.set(x, y, class);
            }
        }
    }
    (canvas, labels, scored)
}

/// Loads every pair on `threads` threads, handing each photograph to `with_photo` on its
/// loading thread; failures become reported skips.
pub fn load_all_with<T: Send>(
    pairs: &[Pair],
    prefix: &str,
    config: &PreprocessConfig,
    threads: usize,
    with_photo: &(dyn Fn(&Pair, &RgbImage) -> T + Sync),
    progress: &dyn Progress,
) -> (Vec<(Sample, T)>, LoadReport) {
    let threads = threads.clamp(1, 64);
    let chunk = pairs.len().div_ceil(threads).max(1);
    type Loaded<T> = Result<(Sample, T, LoadReport), Skip>;
    let results: Vec<Vec<Loaded<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(chunk)
            .map(|part| {
                let h = s.spawn(move || {
                    part.iter()
                        .map(|p| {
                            let loaded = load_pair_with(p, prefix, config, with_photo);
                            progress.advance(Bar::Main, 1);
                            loaded
                        })
                        .collect::<Vec<_>>()
                });
                (part, h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(part, h)| {
                // A decoder panic must not drop its share of the data unreported.
                h.join().unwrap_or_else(|_| {
                    let reason = "the loader thread panicked".to_owned();
                    part.iter()
                        .map(|p| Err(Skip { path: p.image.clone(), reason: reason.clone() }))
                        .collect()
                })
            })
            .collect()
    });
    let mut samples = Vec::with_capacity(pairs.len());
    let mut report = LoadReport::default();
    for r in results.into_iter().flatten() {
        match r {
            Ok((s, extra, rep)) => {
                samples.push((s, extra));
                report.merge(rep);
            }
            Err(skip) => report.skipped.push(skip),
        }
    }
    (samples, report)
}

/// The first part of the names of a data folder's samples ([`Sample::name`]).
pub fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The pairs of a data folder whose sample names ([`Sample::name`]) are in `names`.
pub fn named_pairs(
    dir: &Path,
    rimone_split: &str,
    names: &std::collections::HashSet<String>,
) -> Result<Vec<Pair>, DataError> {
    let folder = folder_name(dir);
    let (pairs, _) = scan(dir, rimone_split)?;
    Ok(pairs.into_iter().filter(|p| names.contains(&format!("{folder}/{}", p.name))).collect())
}

/// Loads only the samples of a data folder named in `names` (the others are not decoded).
pub fn load_named(
    dir: &Path,
    rimone_split: &str,
    names: &std::collections::HashSet<String>,
    config: &PreprocessConfig,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Vec<Sample>, DataError> {
    let pairs = named_pairs(dir, rimone_split, names)?;
    progress.begin(Bar::Main, &dir.display().to_string(), pairs.len() as u64);
    let (samples, report) =
        load_all_with(&pairs, &folder_name(dir), config, threads, &|_, _| (), progress);
    progress.end(Bar::Main, Some(&format!("{}: {}", dir.display(), report.summary())));
    Ok(samples.into_iter().map(|(s, ())| s).collect())
}

/// Scans and loads one data folder; an empty result is an error naming the folder.
pub fn load_dir(
    dir: &Path,
    rimone_split: &str,
    config: &PreprocessConfig,
    threads: usize,
) -> Result<(Vec<Sample>, LoadReport), DataError> {
    let (loaded, report) = load_dir_with(dir, rimone_split, config, threads, &|_, _| (), &Silent)?;
    Ok((loaded.into_iter().map(|(s, ())| s).collect(), report))
}

/// [`load_dir`] with [`load_pair_with`]'s `with_photo`.
pub fn load_dir_with<T: Send>(
    dir: &Path,
    rimone_split: &str,
    config: &PreprocessConfig,
    threads: usize,
    with_photo: &(dyn Fn(&Pair, &RgbImage) -> T + Sync),
    progress: &dyn Progress,
) -> Result<(Vec<(Sample, T)>, LoadReport), DataError> {
    let (pairs, skips) = scan(dir, rimone_split)?;
    let prefix = folder_name(dir);
    progress.begin(Bar::Main, &dir.display().to_string(), pairs.len() as u64);
    let (samples, mut report) =
        load_all_with(&pairs, &prefix, config, threads, with_photo, progress);
    report.skipped.splice(0..0, skips);
    progress.end(Bar::Main, Some(&format!("{}: {}", dir.display(), report.summary())));
    if samples.is_empty() {
        return Err(DataError::Empty { dir: dir.to_owned(), skipped: report.skipped.len() });
    }
    Ok((samples, report))
}

/// Splits off a seeded validation set of `fraction` of the samples (at least one when the
/// fraction is positive and there are two or more samples).
pub fn split_validation(
    mut samples: Vec<Sample>,
    fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    let mut rng = SplitMix64::new(seed ^ 0x7a11_da7a);
    shuffle(&mut samples, &mut rng);
    let n_val = if fraction > 0.0 && samples.len() > 1 {
        ((samples.len() as f64 * fraction).round() as usize).clamp(1, samples.len() - 1)
    } else {
        0
    };
    let val = samples.split_off(samples.len() - n_val);
    (samples, val)
}

/// Fisher-Yates shuffle with the shared generator.
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
