//! The fuzz targets (`papilla_device::fuzzing`) on stable: every committed corpus and
//! regression input of `fuzz/`, then seeded mutations of the corpus (bit flips, interesting
//! bytes, truncations, splices, length fields), so CI runs the same code the libFuzzer targets
//! run. A panic fails the test and names the target and the input written for `cargo fuzz run`.
//! The corpus is written by `write_the_fuzz_seed_corpus` (ignored; run it after a format change).

use std::path::{Path, PathBuf};

use papilla_device::fuzzing::{Outcome, TARGETS, Target, corpus_signer};
use papilla_shared::bundle::{Bundle, Verification};

/// Mutations per corpus file in CI (libFuzzer runs millions: `scripts/fuzz.sh`).
const MUTATIONS: usize = 400;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// xorshift64*: the same mutations on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE][rng.below(6)];
            }
            2 => b.truncate(rng.below(b.len() + 1)),
            3 if !b.is_empty() => {
                // A length or size field set huge: the bombs a parser must refuse unallocated.
                let i = rng.below(b.len());
                for (k, byte) in [0xFF, 0xFF, 0xFF, 0x7F].into_iter().enumerate() {
                    if let Some(x) = b.get_mut(i + k) {
                        *x = byte;
                    }
                }
            }
            4 if !other.is_empty() => {
                // Splice: this input's head, another's tail.
                let (i, j) = (rng.below(b.len() + 1), rng.below(other.len()));
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            5 if !b.is_empty() => {
                let (i, n) = (rng.below(b.len()), 1 + rng.below(16));
                let chunk = b[i..(i + n).min(b.len())].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            _ if !b.is_empty() => {
                let i = rng.below(b.len());
                b.remove(i);
            }
            _ => b.push(rng.next() as u8),
        }
    }
    b
}

/// Runs `target` on `input`; a panic becomes a failure naming a file that reproduces it.
fn run(name: &str, target: Target, input: &[u8], what: &str) -> Outcome {
    match std::panic::catch_unwind(|| target(input)) {
        Ok(outcome) => outcome,
        Err(_) => {
            let out = std::env::temp_dir().join(format!("papilla-fuzz-{name}-crash"));
            std::fs::write(&out, input).unwrap();
            panic!(
                "fuzz target {name} panicked on {what}; input saved as {} \
                 (cargo +nightly fuzz run {name} {})",
                out.display(),
                out.display()
            );
        }
    }
}

#[test]
fn every_fuzz_target_survives_its_corpus_regressions_and_mutations() {
    let dir = fuzz_dir();
    for (name, target) in TARGETS {
        let corpus = files(&dir.join("corpus").join(name));
        assert!(corpus.len() >= 2, "fuzz/corpus/{name} holds {} files", corpus.len());
        // The corpus is meaningful: its seeds are accepted (valid inputs reach the deep code).
        let accepted = corpus
            .iter()
            .filter(|(p, b)| run(name, target, b, &p.display().to_string()).is_ok())
            .count();
        assert!(accepted >= 1, "no seed of fuzz/corpus/{name} is accepted");
        for (p, b) in files(&dir.join("regressions").join(name)) {
            let _ = run(name, target, &b, &p.display().to_string());
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let (mut ok, mut refused) = (0usize, 0usize);
        for (i, (p, seed)) in corpus.iter().enumerate() {
            let other = &corpus[(i + 1) % corpus.len()].1;
            for m in 0..MUTATIONS {
                let input = mutate(seed, other, &mut rng);
                match run(name, target, &input, &format!("mutation {m} of {}", p.display())) {
                    Ok(()) => ok += 1,
                    Err(_) => refused += 1,
                }
            }
        }
        // Mutations reach the parsers' refusals: the harness is not feeding dead inputs.
        assert!(refused > 0, "{name}: no mutation was refused ({ok} accepted)");
    }
}

/// The seeds' expected outcomes, so a parser that starts refusing good files fails here.
#[test]
fn the_seed_corpus_is_parsed_as_it_should_be() {
    let dir = fuzz_dir().join("corpus");
    let expect = |target: &str, file: &str, ok: bool| {
        let (_, f) = TARGETS.iter().find(|(n, _)| *n == target).unwrap();
        let bytes = std::fs::read(dir.join(target).join(file)).unwrap();
        let outcome = f(&bytes);
        assert_eq!(outcome.is_ok(), ok, "{target}/{file}: {outcome:?}");
    };
    expect("bundle", "v1.2-signed", true);
    expect("bundle", "v1.0-signed", true);
    // The signed seed is signed by the corpus key, so the field reader's path reaches acceptance.
    let signed = std::fs::read(dir.join("bundle").join("v1.2-signed")).unwrap();
    let field = Verification::signed_by(vec![corpus_signer().verifying_key()]);
    let loaded = Bundle::from_bytes(&signed, &field).unwrap();
    assert_eq!(loaded.signer, Some(corpus_signer().verifying_key()));
    expect("index", "two-entries", true);
    expect("index", "torn-tail", true);
    expect("mask", "mask.bmp", true);
    expect("mask", "mask.png", true);
    expect("mask", "all-background.png", false);
    expect("config", "device.toml", true);
    expect("config", "two-functions-on-one-pin.toml", false);
    expect("photo", "photo.jpg", true);
    expect("photo", "photo.png", true);
    expect("photo", "grey.png", false);
}

#[test]
#[ignore = "writes fuzz/corpus; run after a format change"]
fn write_the_fuzz_seed_corpus() {
    use image::{ImageFormat, Rgb, RgbImage};
    use papilla_device::record::{IndexEntry, Outcome as Exam};
    use papilla_device::store::Store;
    use papilla_shared::bundle::from_hex;
    use papilla_shared::labels::{Class, LabelMap};

    let dir = fuzz_dir().join("corpus");
    let put = |target: &str, file: &str, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), bytes).unwrap();
    };
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    for (hex, file) in
        [("bundle_v1.2_signed.hex", "v1.2-signed"), ("bundle_v1_signed.hex", "v1.0-signed")]
    {
        let text = std::fs::read_to_string(shared.join(hex)).unwrap();
        let text = text.trim();
        let bytes: Vec<u8> = (0..text.len() / 2)
            .map(|i| from_hex::<1>(&text[2 * i..2 * i + 2]).unwrap()[0])
            .collect();
        put("bundle", file, &bytes);
    }

    let tmp = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(tmp.path(), 0).unwrap();
        for (id, outcome) in [(1, Exam::Completed), (2, Exam::Refused("too dark".into()))] {
            store
                .note(&IndexEntry {
                    id,
                    unix_ms: 1_764_000_000_000 + id as i64,
                    source: format!("IMG_{id:04}.jpg"),
                    outcome,
                    vcdr: 0.42,
                    disc_area_px: 12_000,
                    cup_area_px: 2_000,
                    refer: false,
                    model: "papilla-default 0.5.0".into(),
                })
                .unwrap();
        }
    }
    let index = std::fs::read(tmp.path().join("exams/index.bin")).unwrap();
    put("index", "two-entries", &index);
    put("index", "torn-tail", &index[..index.len() - 5]);

    let mut labels = LabelMap::filled(24, 20, Class::Background);
    for y in 4..16 {
        for x in 6..18 {
            labels.set(
                x,
                y,
                if (8..12).contains(&y) && (10..14).contains(&x) { Class::Cup } else { Class::Rim },
            );
        }
    }
    let encode = |img: &image::DynamicImage, f: ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, f).unwrap();
        out.into_inner()
    };
    let grey = image::DynamicImage::ImageLuma8(labels.to_grey());
    put("mask", "mask.bmp", &encode(&grey, ImageFormat::Bmp));
    put("mask", "mask.png", &encode(&grey, ImageFormat::Png));
    let empty = LabelMap::filled(8, 8, Class::Background).to_grey();
    put(
        "mask",
        "all-background.png",
        &encode(&image::DynamicImage::ImageLuma8(empty), ImageFormat::Png),
    );

    let toml = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/device.toml"))
        .unwrap();
    put("config", "device.toml", &toml);
    put("config", "two-functions-on-one-pin.toml", b"[gpio]\nready = 5\nbusy = 5\n");

    let photo = RgbImage::from_fn(48, 32, |x, y| Rgb([(x * 5) as u8, (y * 7) as u8, 90]));
    let photo = image::DynamicImage::ImageRgb8(photo);
    put("photo", "photo.jpg", &encode(&photo, ImageFormat::Jpeg));
    put("photo", "photo.png", &encode(&photo, ImageFormat::Png));
    put(
        "photo",
        "grey.png",
        &encode(&image::DynamicImage::ImageLuma8(photo.to_luma8()), ImageFormat::Png),
    );
}
