//! The data loaders on generated folders of every layout, including the bad cases.

use image::{GrayImage, Luma, Rgb, RgbImage};
use papilla_host::data::{DataError, load_dir, scan, split_validation};
use papilla_shared::Class;
use papilla_shared::preprocess::PreprocessConfig;

use crate::common::{gamma_folder, rimone_folder};

#[test]
fn gamma_folder_loads_and_bad_files_are_reported_not_fatal() {
    let root = tempfile::tempdir().unwrap();
    let dir = gamma_folder(root.path(), "set", 6, 0);
    let images = dir.join("fundus color images");
    let masks = dir.join("Disc_Cup_Masks");
    // image without mask, mask without image
    RgbImage::new(8, 8).save(images.join("lonely.jpg")).unwrap();
    GrayImage::from_pixel(8, 8, Luma([128])).save(masks.join("orphan.bmp")).unwrap();
    // corrupt JPEG with a mask
    std::fs::write(images.join("broken.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    GrayImage::from_pixel(8, 8, Luma([128])).save(masks.join("broken.bmp")).unwrap();
    // mask with a foreign colour
    RgbImage::from_pixel(8, 8, Rgb([255, 0, 0])).save(images.join("red.jpg")).unwrap();
    RgbImage::from_pixel(8, 8, Rgb([255, 0, 0])).save(masks.join("red.png")).unwrap();
    // greyscale photograph, and a photograph larger than its mask
    image::DynamicImage::ImageLuma8(GrayImage::from_pixel(16, 16, Luma([90])))
        .save(images.join("grey.png"))
        .unwrap();
    GrayImage::from_fn(16, 16, |x, _| Luma([if x < 8 { 128 } else { 255 }]))
        .save(masks.join("grey.bmp"))
        .unwrap();
    RgbImage::from_pixel(32, 24, Rgb([200, 80, 40])).save(images.join("big.jpg")).unwrap();
    GrayImage::from_fn(16, 12, |x, _| Luma([if x < 4 { 0 } else { 255 }]))
        .save(masks.join("big.bmp"))
        .unwrap();

    let (pairs, skips) = scan(&dir, "train").unwrap();
    assert_eq!(pairs.len(), 10);
    assert_eq!(skips.len(), 2, "{skips:?}");
    let (samples, report) = load_dir(&dir, "train", &PreprocessConfig::square(32), 2).unwrap();
    assert_eq!(samples.len(), 8, "{}", report.summary());
    assert_eq!(report.skipped.len(), 4, "{}", report.summary());
    let reasons: Vec<String> =
        report.skipped.iter().map(|s| format!("{}: {}", s.path.display(), s.reason)).collect();
    assert!(
        // The shared decoder refuses a JPEG without its end-of-image marker before decoding.
        reasons.iter().any(|r| r.contains("broken.jpg") && r.contains("truncated JPEG")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("red.png") && r.contains("not a grey level")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("lonely.jpg") && r.contains("no mask")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("orphan.bmp") && r.contains("no image")),
        "{reasons:?}"
    );
    assert_eq!(report.converted.len(), 1, "the greyscale photograph");
    assert_eq!(report.resized.len(), 1, "the photograph larger than its mask");
    let big = samples.iter().find(|s| s.name.ends_with("/big")).unwrap();
    assert_eq!(big.truth.dimensions(), (16, 12));
    assert_eq!((big.input.width, big.input.height), (32, 32));
    assert_eq!(big.target.dimensions(), (32, 32));
    assert_eq!(big.target.get(0, 0), Class::Cup);
    assert_eq!(big.target.get(31, 0), Class::Background);

    let (train, val) = split_validation(samples, 0.25, 7);
    assert_eq!((train.len(), val.len()), (6, 2));
}

#[test]
fn singular_mask_folder_name_is_accepted() {
    let root = tempfile::tempdir().unwrap();
    let dir = gamma_folder(root.path(), "set", 2, 0);
    std::fs::rename(dir.join("Disc_Cup_Masks"), dir.join("Disc_Cup_Mask")).unwrap();
    assert_eq!(scan(&dir, "train").unwrap().0.len(), 2);
}

#[test]
fn rimone_layout_uses_the_official_split_and_puts_stray_cup_pixels_in_the_disc() {
    let root = tempfile::tempdir().unwrap();
    let dir = rimone_folder(root.path(), 3);
    let (train, report) = load_dir(&dir, "train", &PreprocessConfig::square(32), 2).unwrap();
    let (test, _) = load_dir(&dir, "test", &PreprocessConfig::square(32), 2).unwrap();
    assert_eq!((train.len(), test.len()), (3, 3));
    assert!(test.iter().all(|s| s.name.contains("r1_Im1")));
    assert_eq!(report.cup_outside_disc, 3);
    assert_eq!(train[0].truth.get(0, 0), Class::Cup);
}

#[test]
fn empty_and_unknown_folders_are_errors_naming_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let err = scan(root.path(), "train").unwrap_err();
    assert!(matches!(err, DataError::UnknownLayout { .. }));
    assert!(err.to_string().contains(&root.path().display().to_string()));
    std::fs::create_dir_all(root.path().join("fundus color images")).unwrap();
    std::fs::create_dir_all(root.path().join("Disc_Cup_Masks")).unwrap();
    let err = load_dir(root.path(), "train", &PreprocessConfig::square(32), 1).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
}

#[test]
fn a_disc_centred_crop_is_mirrored_outwards_to_the_segmenters_context() {
    use papilla_shared::preprocess::RoiPolicy;
    // A 32x32 "crop" whose disc is 20 px wide (columns 6-25): a segmenter trained on crops 2.5
    // disc diameters wide needs a 50 px square, wider than the photograph; square x = photo
    // x - 9, mirrored at the edges.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("crops");
    std::fs::create_dir_all(dir.join("fundus color images")).unwrap();
    std::fs::create_dir_all(dir.join("Disc_Cup_Masks")).unwrap();
    let label = |x: u32, y: u32| {
        let d2 = (2 * x as i32 - 31).pow(2) + (2 * y as i32 - 31).pow(2);
        if d2 < 64 {
            0u8
        } else if d2 < 400 {
            128
        } else {
            255
        }
    };
    RgbImage::from_fn(32, 32, |x, y| Rgb([label(x, y), 60, (x * 6) as u8]))
        .save(dir.join("fundus color images/e1.png"))
        .unwrap();
    GrayImage::from_fn(32, 32, |x, y| Luma([label(x, y)]))
        .save(dir.join("Disc_Cup_Masks/e1.png"))
        .unwrap();
    let config = PreprocessConfig {
        roi: Some(RoiPolicy { context: 2.5, min_side_fraction: 0.0 }),
        ..PreprocessConfig::square(50)
    };
    let (samples, report) = load_dir(&dir, "train", &config, 1).unwrap();
    assert_eq!(report.mirrored.len(), 1, "{}", report.summary());
    assert!(report.summary().contains("1 crops tighter"), "{}", report.summary());
    let s = &samples[0];
    // The network sees the whole square one to one: the disc is 20 px of its 50, as a
    // 2.5-diameter crop of a whole photograph shows it (not the whole 32 px photograph
    // stretched to 50, where it would be 31 px).
    assert_eq!(s.target.dimensions(), (50, 50));
    let disc_cols = (5..45).filter(|&x| s.target.get(x, 25) != Class::Background).count();
    assert_eq!(disc_cols, 20);
    assert_eq!(s.target.get(25, 25), Class::Cup);
    // The border holds the mirrored photograph (x = 2 reads the photo's x = 7) and the
    // mirrored labels: the disc's reflection is taught as disc, as it looks...
    assert_eq!(s.input.rgb[(25 * 50 + 2) * 3 + 2], 42.0);
    assert_eq!(s.target.get(1, 25), Class::Rim);
    // ...but scoring counts only the photograph's own pixels.
    assert_eq!(s.truth.dimensions(), (50, 50));
    assert_eq!(s.truth.get(1, 25), Class::Background);
    let scored_disc = s.truth.classes().iter().filter(|c| **c != Class::Background).count();
    let true_disc = (0..32 * 32).filter(|i| label(i % 32, i / 32) != 255).count();
    assert_eq!(scored_disc, true_disc);

    // With room for the crop, a photograph is cropped as before, not mirrored.
    let narrow = PreprocessConfig {
        roi: Some(RoiPolicy { context: 1.5, min_side_fraction: 0.0 }),
        ..PreprocessConfig::square(30)
    };
    let (_, report) = load_dir(&dir, "train", &narrow, 1).unwrap();
    assert!(report.mirrored.is_empty());
}

/// An EXIF APP1 payload: a little-endian TIFF header and IFD0 with Orientation only.
fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut b = b"Exif\0\0II*\0".to_vec();
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0x0112u16.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&orientation.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

#[test]
fn a_photograph_to_segment_is_turned_as_its_exif_says_as_on_the_camera() {
    let img = RgbImage::from_fn(40, 20, |x, y| Rgb([(x * 6) as u8, (y * 12) as u8, 0]));
    let dir = tempfile::tempdir().unwrap();
    for (orientation, size, bright) in [
        (1, (40, 20), (39, 19)),
        (3, (40, 20), (0, 0)),
        (6, (20, 40), (0, 39)),
        (8, (20, 40), (19, 0)),
    ] {
        let mut bytes = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut bytes, 90);
        enc.add_app_segment(1, exif_orientation(orientation)).unwrap();
        enc.encode(img.as_raw(), 40, 20, jpeg_encoder::ColorType::Rgb).unwrap();
        let path = dir.path().join(format!("o{orientation}.jpg"));
        std::fs::write(&path, &bytes).unwrap();
        let photo = papilla_host::inference::read_photo(&path).unwrap();
        assert_eq!(photo.dimensions(), size, "orientation {orientation}");
        let p = photo.get_pixel(bright.0, bright.1).0;
        assert!(p[0] > 200 && p[1] > 180, "orientation {orientation}: {p:?} at {bright:?}");
        // Training data keeps the stored pixels: its mask was drawn on them.
        let (stored, _) = papilla_host::data::read_image(&path).unwrap();
        assert_eq!(stored.dimensions(), (40, 20), "orientation {orientation}");
    }
}
