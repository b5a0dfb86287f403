//! Model slots: install, roll back, fall back; tampered, truncated, unsigned and untrusted
//! bundles refused.

use papilla_device::slots::{InstallPolicy, Slot, SlotError, Slots};
use papilla_shared::bundle::Verification;
use papilla_shared::error::chain;

use crate::common::*;

fn trusting(seed: u8) -> Verification {
    Verification::signed_by(vec![key(seed).verifying_key()])
}

#[test]
fn install_keeps_the_previous_model_and_rollback_returns_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (v1, v2) = (tmp.path().join("v1.papilla"), tmp.path().join("v2.papilla"));
    std::fs::write(&v1, signed(&key(1))).unwrap();
    std::fs::write(&v2, signed_version("9.9.9", &key(1))).unwrap();
    let slots = Slots::new(tmp.path());
    assert_eq!(slots.current(), None);
    assert_eq!(slots.install(&v1, &trusting(1), 1).unwrap(), Slot::A);
    assert_eq!(slots.install(&v2, &trusting(1), 1).unwrap(), Slot::B);
    let active = slots.open(&trusting(1), 1).unwrap();
    assert_eq!((active.slot, active.engine.manifest().version.as_str()), (Slot::B, "9.9.9"));
    assert!(active.selftest_agreement >= 0.99);
    assert_eq!(
        active.signer.as_deref(),
        Some(papilla_shared::bundle::hex(key(1).verifying_key().as_bytes()).as_str())
    );
    assert_eq!(slots.rollback(&trusting(1), 1).unwrap(), Slot::A);
    let active = slots.open(&trusting(1), 1).unwrap();
    assert_ne!(active.engine.manifest().version, "9.9.9");
    // The next install goes into the slot not in use (B), keeping A.
    assert_eq!(slots.install(&v2, &trusting(1), 1).unwrap(), Slot::B);
}

#[test]
fn bad_bundles_are_refused_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let slots = Slots::new(tmp.path());
    let good = tmp.path().join("good.papilla");
    std::fs::write(&good, signed(&key(1))).unwrap();
    slots.install(&good, &trusting(1), 1).unwrap();
    let before = std::fs::read(slots.path(Slot::A)).unwrap();

    let bytes = signed(&key(1));
    let mut tampered = bytes.clone();
    // A byte of the last graph (the trailer is a tag, a key and a signature: 97 bytes).
    let at = tampered.len() - 97 - 10;
    tampered[at] ^= 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("tampered", tampered, "sha-256"),
        ("truncated", bytes[..bytes.len() - 50].to_vec(), ""),
        ("empty", Vec::new(), ""),
        ("unsigned", unsigned_bytes(), "not signed"),
        ("untrusted", signed(&key(2)), "trust"),
    ];
    for (name, b, why) in cases {
        let p = tmp.path().join(format!("{name}.papilla"));
        std::fs::write(&p, b).unwrap();
        let e = slots.install(&p, &trusting(1), 1).unwrap_err();
        let msg = chain(&e);
        assert!(msg.contains(&format!("{name}.papilla")), "{name}: {msg}");
        assert!(msg.to_lowercase().contains(why), "{name}: {msg}");
        assert_eq!(slots.current(), Some(Slot::A), "{name}");
        assert_eq!(std::fs::read(slots.path(Slot::A)).unwrap(), before, "{name}");
        assert!(!slots.path(Slot::B).exists(), "{name}");
    }
    // Unsigned is fine when the config allows it (the file above is the unsigned copy).
    let unsigned = tmp.path().join("unsigned.papilla");
    let allow = Verification { trusted: vec![key(1).verifying_key()], allow_unsigned: true };
    assert_eq!(slots.install(&unsigned, &allow, 1).unwrap(), Slot::B);
}

#[test]
fn a_corrupted_current_slot_falls_back_to_the_other_and_no_model_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let slots = Slots::new(tmp.path());
    let e = slots.open(&trusting(1), 1).unwrap_err();
    assert!(matches!(e, SlotError::NoModel { .. }), "{e}");
    let good = tmp.path().join("good.papilla");
    std::fs::write(&good, signed(&key(1))).unwrap();
    slots.install(&good, &trusting(1), 1).unwrap();
    slots.install(&good, &trusting(1), 1).unwrap();
    assert_eq!(slots.current(), Some(Slot::B));
    // The SD card flips a byte in slot B.
    let mut b = std::fs::read(slots.path(Slot::B)).unwrap();
    let at = b.len() / 3;
    b[at] ^= 0x10;
    std::fs::write(slots.path(Slot::B), b).unwrap();
    let active = slots.open(&trusting(1), 1).unwrap();
    assert_eq!(active.slot, Slot::A);
    assert_eq!(slots.current(), Some(Slot::A), "the pointer follows the fallback");
    // Both bad: a clear error that names both.
    std::fs::write(slots.path(Slot::A), b"junk").unwrap();
    let e = chain(&slots.open(&trusting(1), 1).unwrap_err());
    assert!(e.contains("slot a") && e.contains("slot b"), "{e}");
}

#[test]
fn the_shipped_model_is_signed_by_the_release_key_the_example_config_trusts() {
    let cfg = papilla_device::config::DeviceConfig::parse(
        &std::fs::read_to_string(repo().join("scripts/device.toml")).unwrap(),
        std::path::Path::new("device.toml"),
    )
    .unwrap();
    let public = |f: &str| std::fs::read_to_string(repo().join("models").join(f)).unwrap();
    let release = public("papilla-release.pub");
    // Rotated keys: the config trusts the release key first, then the earlier ones (0.5.0's,
    // then 0.4.0's and before), so a device can roll back to a model they signed.
    let earlier = [public("papilla-release-2026-12-01.pub"), public("papilla-release-2026-11.pub")];
    let expected: Vec<String> =
        std::iter::once(&release).chain(&earlier).map(|k| k.trim().to_owned()).collect();
    assert_eq!(cfg.trust.keys, expected);
    assert!(!cfg.trust.allow_unsigned);
    let v = cfg.verification().unwrap();
    let loaded = papilla_shared::bundle::Bundle::from_bytes(&shipped_bytes(), &v).unwrap();
    assert_eq!(loaded.signer, Some(v.trusted[0]));
    // And a bundle signed by anyone else is refused by that config.
    assert!(papilla_shared::bundle::Bundle::from_bytes(&signed(&key(9)), &v).is_err());
}

#[test]
fn an_older_model_is_refused_unless_allowed_and_rollback_still_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let slots = Slots::new(tmp.path());
    let file = |v: &str| {
        let p = tmp.path().join(format!("{v}.papilla"));
        std::fs::write(&p, signed_version(v, &key(1))).unwrap();
        p
    };
    let (v0_9, v0_10, rc, v1) = (file("0.9.1"), file("0.10.0"), file("1.0.0-rc.1"), file("1.0.0"));
    assert_eq!(slots.install(&v0_9, &trusting(1), 1).unwrap(), Slot::A);
    // Semver, not string order: 0.10.0 is newer than 0.9.1.
    assert_eq!(slots.install(&v0_10, &trusting(1), 1).unwrap(), Slot::B);
    let before = std::fs::read(slots.path(Slot::A)).unwrap();
    let e = chain(&slots.install(&v0_9, &trusting(1), 1).unwrap_err());
    assert!(e.contains("0.9.1.papilla") && e.contains("older than the installed 0.10.0"), "{e}");
    assert!(e.contains("--allow-downgrade"), "{e}");
    assert_eq!(slots.current(), Some(Slot::B), "nothing changes");
    assert_eq!(std::fs::read(slots.path(Slot::A)).unwrap(), before);
    // The same version again is not a downgrade (a re-signed copy, a repair).
    assert_eq!(slots.install(&v0_10, &trusting(1), 1).unwrap(), Slot::A);
    assert_eq!(slots.install(&v1, &trusting(1), 1).unwrap(), Slot::B);
    // A release candidate precedes its release.
    assert!(chain(&slots.install(&rc, &trusting(1), 1).unwrap_err()).contains("older"));
    let allow = InstallPolicy { allow_downgrade: true, newer_only: false };
    assert_eq!(slots.install_with(&v0_9, &trusting(1), 1, allow).unwrap().0, Slot::A);
    assert_eq!(slots.current_version().as_deref(), Some("0.9.1"));
    // Rollback is not an install: it returns to 1.0.0 without a flag.
    assert_eq!(slots.rollback(&trusting(1), 1).unwrap(), Slot::B);
    assert_eq!(slots.current_version().as_deref(), Some("1.0.0"));
    // A version that is not semver cannot be ordered: refused, with the way out named.
    let odd = tmp.path().join("odd.papilla");
    std::fs::write(&odd, signed_version("spring-2027", &key(1))).unwrap();
    let e = chain(&slots.install(&odd, &trusting(1), 1).unwrap_err());
    assert!(e.contains("cannot tell") && e.contains("--allow-downgrade"), "{e}");
}

#[test]
fn the_engine_feeds_and_reads_the_graph_ports_its_manifest_names() {
    use papilla_shared::bundle::{Bundle, Stage};
    use papilla_shared::runtime::Engine;
    let bundle = test_bundle();
    let graphs: Vec<Vec<u8>> = bundle.stages().map(|(_, g)| g.to_vec()).collect();
    let renamed = |f: &dyn Fn(&mut Stage)| {
        let mut manifest = bundle.manifest().clone();
        manifest.stages.iter_mut().for_each(f);
        Bundle::new(manifest, graphs.clone()).unwrap()
    };
    let err = Engine::new(&renamed(&|s| s.output_name = "scores".into()), 1).unwrap_err();
    assert!(chain(&err).contains(r#"the graph has no output named "scores""#), "{}", chain(&err));
    let err = Engine::new(&renamed(&|s| s.input_name = "image".into()), 1).unwrap_err();
    assert!(chain(&err).contains(r#"the graph has no input named "image""#), "{}", chain(&err));
    // An intermediate tensor named as the output is what the engine reads: its channels are
    // not the classes, which post-processing refuses.
    let engine = Engine::new(&renamed(&|s| s.output_name = "d0_1".into()), 1).unwrap();
    let photo = image::RgbImage::new(64, 64);
    let err = engine.segment(&photo).unwrap_err();
    assert!(chain(&err).contains("output has shape [1, 8, 64, 64]"), "{}", chain(&err));
    assert!(Engine::new(&bundle, 1).unwrap().segment(&photo).is_ok());
}
