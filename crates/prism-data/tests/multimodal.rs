//! The multimodal dataset layer: `.npy` images in both channel orders (numpy-written files as
//! the reference), YOLO labels, the seeded split, the synthetic scenes, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use prism_data::multimodal::{
    image::image_from_bytes, parse_labels, read_image, read_labels, synth_mm, write_image,
    ChannelOrder, MmDataError, MmFolder, MmImage, SynthMmOptions, MM_SYNTH_CLASSES,
};
use proptest::prelude::*;

fn small(images: usize, seed: u64) -> SynthMmOptions {
    SynthMmOptions {
        images,
        seed,
        size: [96, 64],
    }
}

fn folder_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn synthetic_scenes_are_deterministic_and_in_the_dataset_layout() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let report = synth_mm(a.path(), &small(10, 3)).unwrap();
    synth_mm(b.path(), &small(10, 3)).unwrap();
    synth_mm(c.path(), &small(10, 4)).unwrap();
    assert_eq!(folder_bytes(a.path()), folder_bytes(b.path()));
    assert_ne!(folder_bytes(a.path()), folder_bytes(c.path()));
    let names: Vec<&str> = report.splits.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["images", "daytest", "nighttest"]);
    assert_eq!(report.splits[0].1, 10);
    assert_eq!(report.splits[1].1, 2);
    let folder = MmFolder::open(a.path()).unwrap();
    assert_eq!(folder.classes, MM_SYNTH_CLASSES.map(String::from).to_vec());
    assert_eq!(folder.pool.samples.len(), 10);
    assert_eq!(folder.pool.unlabelled, 0);
    let tests: Vec<&str> = folder.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tests, ["daytest", "nighttest"]);
    let objects: usize = folder
        .pool
        .samples
        .iter()
        .map(|s| folder.load(s).unwrap().1.len())
        .sum();
    assert_eq!(objects, report.splits[0].2);
}

fn mean(values: impl Iterator<Item = u8>) -> f64 {
    let (sum, n) = values.fold((0u64, 0u64), |(s, n), v| (s + u64::from(v), n + 1));
    sum as f64 / n.max(1) as f64
}

#[test]
fn objects_are_warm_and_fire_events_and_night_darkens_only_rgb() {
    let dir = tempfile::tempdir().unwrap();
    synth_mm(dir.path(), &small(20, 1)).unwrap();
    let folder = MmFolder::open(dir.path()).unwrap();
    let (mut day_rgb, mut night_rgb, mut day_t, mut night_t) = (vec![], vec![], vec![], vec![]);
    for split in &folder.tests {
        for s in &split.samples {
            let (image, boxes) = folder.load(s).unwrap();
            let (w, h) = (image.width, image.height);
            let mut inside = vec![false; w * h];
            for b in &boxes {
                let [x1, y1, x2, y2] = b.to_pixels(w, h);
                for y in y1.round() as usize..y2.round() as usize {
                    for x in x1.round() as usize..x2.round() as usize {
                        inside[y * w + x] = true;
                    }
                }
            }
            let thermal = image.plane(3);
            let hot = mean((0..w * h).filter(|&i| inside[i]).map(|i| thermal[i]));
            let cool = mean((0..w * h).filter(|&i| !inside[i]).map(|i| thermal[i]));
            assert!(
                hot > cool + 60.0,
                "{}: objects {hot:.0} vs background {cool:.0}",
                s.stem
            );
            let events = image.plane(4);
            let on_objects = (0..w * h).filter(|&i| inside[i] && events[i] > 0).count();
            assert!(on_objects > 0, "{}: no events on the objects", s.stem);
            let rgb = mean((0..3).flat_map(|c| image.plane(c).to_vec()));
            let t = mean(thermal.iter().copied());
            if split.name == "nighttest" {
                night_rgb.push(rgb);
                night_t.push(t);
            } else {
                day_rgb.push(rgb);
                day_t.push(t);
            }
        }
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        avg(&night_rgb) < 0.35 * avg(&day_rgb),
        "{night_rgb:?} vs {day_rgb:?}"
    );
    assert!((avg(&night_t) - avg(&day_t)).abs() < 25.0);
}

#[test]
fn the_split_is_seeded_eighty_twenty_and_disjoint() {
    let dir = tempfile::tempdir().unwrap();
    synth_mm(dir.path(), &small(25, 0)).unwrap();
    let folder = MmFolder::open(dir.path()).unwrap();
    let (train, val) = folder.split(42, 0.2);
    assert_eq!((train.len(), val.len()), (20, 5));
    let (train2, val2) = folder.split(42, 0.2);
    assert_eq!((&train, &val), (&train2, &val2));
    let (_, val3) = folder.split(7, 0.2);
    assert_ne!(val, val3);
    let mut all: Vec<String> = train.iter().chain(&val).map(|s| s.stem.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 25);
}

fn image_with_pattern(h: usize, w: usize) -> MmImage {
    let mut image = MmImage::zeros(h, w);
    for (i, v) in image.chw.iter_mut().enumerate() {
        *v = (i * 37 % 251) as u8;
    }
    image
}

#[test]
fn both_channel_orders_round_trip_and_match_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let image = image_with_pattern(7, 9);
    for order in [ChannelOrder::Hwc, ChannelOrder::Chw] {
        let path = dir.path().join(format!("{order:?}.npy"));
        write_image(&path, &image, order).unwrap();
        assert_eq!(read_image(&path).unwrap(), image, "{order:?}");
    }
    // numpy writes the same pixels as H x W x 5, 5 x H x W and in Fortran order.
    let Some(python) = prism_events::testdata::python() else {
        if std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
            panic!("the prism Python environment is missing (cargo xtask provision)");
        }
        return;
    };
    let script = "import sys, numpy as np\n\
        d = sys.argv[1]\n\
        chw = (np.arange(5 * 7 * 9) * 37 % 251).astype(np.uint8).reshape(5, 7, 9)\n\
        np.save(d + '/np_chw.npy', chw)\n\
        np.save(d + '/np_hwc.npy', np.ascontiguousarray(chw.transpose(1, 2, 0)))\n\
        np.save(d + '/np_hwc_f.npy', np.asfortranarray(chw.transpose(1, 2, 0)))\n\
        np.save(d + '/np_chw_f.npy', np.asfortranarray(chw))\n";
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["np_chw", "np_hwc", "np_hwc_f", "np_chw_f"] {
        let got = read_image(&dir.path().join(format!("{name}.npy"))).unwrap();
        assert_eq!(got, image, "{name}");
    }
}

#[test]
fn bad_images_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.npy");
    write_image(&good, &image_with_pattern(6, 8), ChannelOrder::Hwc).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.npy");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    assert!(matches!(
        read_image(&truncated),
        Err(MmDataError::Npy { .. })
    ));
    let junk = dir.path().join("junk.npy");
    std::fs::write(&junk, b"definitely not numpy").unwrap();
    let err = read_image(&junk).unwrap_err();
    assert!(err.to_string().contains("junk.npy"), "{err}");
    // Four channels: a shape error that names the file.
    let path = dir.path().join("four.npy");
    write_npy::<u8>(&path, &[6, 8, 4], vec![0; 6 * 8 * 4]);
    let err = read_image(&path).unwrap_err();
    assert!(
        matches!(err, MmDataError::Channels { .. }) && err.to_string().contains("four.npy"),
        "{err}"
    );
    // float32 pixels: a dtype error.
    let path = dir.path().join("float.npy");
    write_npy::<f32>(&path, &[6, 8, 5], vec![0.0; 6 * 8 * 5]);
    assert!(matches!(read_image(&path), Err(MmDataError::DType { .. })));
}

fn write_npy<T: npyz::AutoSerialize + npyz::Serialize>(path: &Path, shape: &[u64], data: Vec<T>) {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    w.extend(data).unwrap();
    w.finish().unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_labels_name_the_file_and_line() {
    let path = Path::new("labels/x.txt");
    let ok = parse_labels("0 0.5 0.5 0.2 0.4\n\n1 0.1 0.2 0.1 0.1\n", path, 2).unwrap();
    assert_eq!(ok.len(), 2);
    for (text, line, says) in [
        ("0 0.5 0.5 0.2\n", 1, "fields"),
        ("0 0.5 0.5 0.2 0.4\n2 0.5 0.5 0.2 0.4\n", 2, "not one of"),
        ("a 0.5 0.5 0.2 0.4\n", 1, "class index"),
        ("0 1.5 0.5 0.2 0.4\n", 1, "outside [0, 1]"),
        ("0 0.5 nan 0.2 0.4\n", 1, "outside [0, 1]"),
        ("\n\n0 0.5 0.5 0 0.4\n", 3, "positive"),
    ] {
        let err = parse_labels(text, path, 2).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("labels/x.txt:{line}:")) && message.contains(says),
            "{text:?}: {message}"
        );
    }
    // A missing label file is an image without objects.
    assert_eq!(
        read_labels(Path::new("/nonexistent/x.txt"), 2).unwrap(),
        None
    );
}

#[test]
fn images_without_labels_are_counted_as_background() {
    let dir = tempfile::tempdir().unwrap();
    synth_mm(dir.path(), &small(5, 0)).unwrap();
    let first = MmFolder::open(dir.path()).unwrap().pool.samples[0].clone();
    std::fs::remove_file(&first.labels).unwrap();
    let folder = MmFolder::open(dir.path()).unwrap();
    assert_eq!(folder.pool.unlabelled, 1);
    assert!(folder.load(&first).unwrap().1.is_empty());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_image_reader(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = image_from_bytes(&bytes, Path::new("fuzz.npy"));
    }

    #[test]
    fn arbitrary_text_never_panics_the_label_parser(text in ".{0,200}") {
        let _ = parse_labels(&text, Path::new("fuzz.txt"), 3);
    }

    #[test]
    fn a_mangled_header_is_an_error_not_a_panic(cut in 0usize..200, byte in any::<u8>(), at in 0usize..200) {
        let image = image_with_pattern(4, 6);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_image(&path, &image, ChannelOrder::Chw).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(bytes.len().saturating_sub(cut % 40));
        let _ = image_from_bytes(&bytes, &path);
    }
}
