//! A long run through the service loop: no memory or file-descriptor growth, an index that
//! grows by one entry an exam.

use papilla_device::photo::DecodeOptions;

use crate::common::*;

#[test]
fn three_hundred_exams_leak_neither_memory_nor_files() {
    let tmp = tempfile::tempdir().unwrap();
    let photo = tmp.path().join("eye.jpg");
    std::fs::write(&photo, synthetic_jpeg(77, 320, 320)).unwrap();
    let engine = papilla_device::segment::load(&test_model(), 1).unwrap();
    // Under emulation an exam takes ~20 s: a handful of exams still shows a leaked descriptor
    // or a broken index, not a slow memory growth (that stays for the native run).
    let (n, every) = if slowdown() > 1 { (4, 1) } else { (300, 50) };
    let samples = papilla_device::soak::run(
        &engine,
        &photo,
        n,
        every,
        DecodeOptions::default(),
        &tmp.path().join("store"),
        |_| {},
    )
    .unwrap();
    let (first, last) = (&samples[0], samples.last().unwrap());
    assert_eq!((first.exams, last.exams, last.completed), (1, n, n), "{samples:#?}");
    // The index grows by the same number of bytes an exam (one framed entry each).
    let per_exam = last.index_bytes.saturating_sub(first.index_bytes) as f64 / (n - 1) as f64;
    assert!((20.0..400.0).contains(&per_exam), "{per_exam} bytes an exam: {samples:#?}");
    if let (Some(a), Some(b)) = (first.open_fds, last.open_fds) {
        assert!(b <= a + 1, "open files grew from {a} to {b}: {samples:#?}");
    }
    if slowdown() == 1 {
        // After the first hundred exams (allocator pools warmed up), memory stays put.
        let warm = samples.iter().find(|s| s.exams >= 100).unwrap();
        if let (Some(a), Some(b)) = (warm.rss_mib, last.rss_mib) {
            assert!(b - a < 16.0, "RSS grew from {a:.1} to {b:.1} MiB: {samples:#?}");
        }
    }
}
