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
        clutter: true,
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

/// Without clutter the scenes keep their objects, labels and noise: the labels are the same
/// bytes and the images differ only where clutter was painted.
#[test]
fn scenes_without_clutter_are_the_same_scenes_less_the_clutter() {
    let with = tempfile::tempdir().unwrap();
    let without = tempfile::tempdir().unwrap();
    synth_mm(with.path(), &small(12, 9)).unwrap();
    let mut options = small(12, 9);
    options.clutter = false;
    synth_mm(without.path(), &options).unwrap();
    let (a, b) = (
        MmFolder::open(with.path()).unwrap(),
        MmFolder::open(without.path()).unwrap(),
    );
    let mut changed = 0;
    for (sa, sb) in a.pool.samples.iter().zip(&b.pool.samples) {
        let (ia, la) = a.load(sa).unwrap();
        let (ib, lb) = b.load(sb).unwrap();
        assert_eq!(la, lb, "{}", sa.stem);
        let differ = ia.chw.iter().zip(&ib.chw).filter(|(x, y)| x != y).count();
        // Clutter covers a small part of an image.
        assert!(
            differ * 4 < ia.chw.len(),
            "{}: {differ} bytes differ",
            sa.stem
        );
        changed += usize::from(differ > 0);
    }
    assert!(changed > 0, "no image had clutter to leave out");
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

mod letterboxing {
    use super::*;
    use prism_data::multimodal::{flip_horizontal, letterbox, Letterbox, MmAugment, YoloBox};
    use prism_events::synth::rng::SplitMix64;

    /// A cold image with one hot rectangle in thermal, and its label.
    fn hot_box(w: usize, h: usize, r: [usize; 4]) -> (MmImage, YoloBox) {
        let mut image = MmImage::zeros(h, w);
        let plane = image.plane_mut(3);
        for y in r[1]..r[3] {
            for x in r[0]..r[2] {
                plane[y * w + x] = 255;
            }
        }
        let label = YoloBox {
            class: 1,
            x_center: (r[0] + r[2]) as f32 / 2.0 / w as f32,
            y_center: (r[1] + r[3]) as f32 / 2.0 / h as f32,
            width: (r[2] - r[0]) as f32 / w as f32,
            height: (r[3] - r[1]) as f32 / h as f32,
        };
        (image, label)
    }

    /// Mean thermal value inside a box shrunk by 1.5 pixels, and outside it grown by 1.5.
    fn inside_outside(image: &MmImage, b: [f32; 4]) -> (f64, f64) {
        let (w, h) = (image.width, image.height);
        let (mut i, mut ni, mut o, mut no) = (0.0, 0.0, 0.0, 0.0);
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let v = f64::from(image.plane(3)[y * w + x]);
                if px > b[0] + 1.5 && px < b[2] - 1.5 && py > b[1] + 1.5 && py < b[3] - 1.5 {
                    i += v;
                    ni += 1.0;
                } else if px < b[0] - 1.5 || px > b[2] + 1.5 || py < b[1] - 1.5 || py > b[3] + 1.5 {
                    o += v;
                    no += 1.0;
                }
            }
        }
        (i / ni, o / no)
    }

    #[test]
    fn fitting_scales_once_and_centres() {
        let l = Letterbox::fit(160, 128, [320, 256], 1.0, [0.0, 0.0]);
        assert_eq!((l.scale, l.offset), (2.0, [0.0, 0.0]));
        let l = Letterbox::fit(160, 128, [640, 640], 1.0, [0.0, 0.0]);
        assert_eq!((l.scale, l.offset), (4.0, [0.0, 64.0]));
        let l = Letterbox::fit(160, 128, [640, 640], 1.0, [-1.0, 1.0]);
        assert_eq!(l.offset, [0.0, 128.0]);
    }

    #[test]
    fn boxes_follow_the_pixels_through_letterbox_zoom_and_flip() {
        let (image, label) = hot_box(160, 128, [40, 30, 70, 90]);
        let mut rng = SplitMix64::new(5);
        for round in 0..12 {
            let (out, boxes) = if round < 4 {
                let zoom = [1.0, 0.7, 1.3, 0.5][round];
                let placement = Letterbox::fit(160, 128, [224, 224], zoom, [0.3, -0.6]);
                letterbox(&image, &[label], &placement)
            } else {
                MmAugment::default().apply(&image, &[label], [224, 192], &mut rng)
            };
            assert_eq!(boxes.len(), 1, "round {round}");
            assert_eq!(boxes[0].class, 1);
            let (inside, outside) = inside_outside(&out, boxes[0].corners);
            assert!(
                inside > 250.0 && outside < 2.0,
                "round {round}: {inside} / {outside}"
            );
        }
    }

    #[test]
    fn boxes_cropped_away_by_a_zoom_are_dropped() {
        let (image, label) = hot_box(160, 128, [0, 0, 20, 20]);
        // Zoomed in 3x and shifted so the top-left corner is out of the frame.
        let placement = Letterbox::fit(160, 128, [160, 128], 3.0, [1.0, 1.0]);
        let (_, boxes) = letterbox(&image, &[label], &placement);
        assert!(boxes.is_empty(), "{boxes:?}");
    }

    #[test]
    fn flipping_twice_is_the_identity() {
        let (image, label) = hot_box(64, 48, [5, 6, 20, 30]);
        let placement = Letterbox::fit(64, 48, [64, 48], 1.0, [0.0, 0.0]);
        let (mut out, mut boxes) = letterbox(&image, &[label], &placement);
        let (before, before_boxes) = (out.clone(), boxes.clone());
        flip_horizontal(&mut out, &mut boxes);
        assert_ne!(out, before);
        assert_eq!(boxes[0].corners, [44.0, 6.0, 59.0, 30.0]);
        flip_horizontal(&mut out, &mut boxes);
        assert_eq!((out, boxes), (before, before_boxes));
    }

    proptest! {
        #[test]
        fn boxes_map_to_the_model_and_back(
            w in 32usize..2000, h in 32usize..2000, mw in 32usize..1000, mh in 32usize..1000,
            zoom in 0.5f32..2.0, sx in -1.0f32..1.0, sy in -1.0f32..1.0,
            x1 in 0.0f32..1.0, y1 in 0.0f32..1.0, bw in 0.0f32..1.0, bh in 0.0f32..1.0,
        ) {
            let l = Letterbox::fit(w, h, [mw, mh], zoom, [sx, sy]);
            let b = [x1 * w as f32, y1 * h as f32, (x1 + bw) * w as f32, (y1 + bh) * h as f32];
            let back = l.to_image(l.to_model(b));
            for k in 0..4 {
                prop_assert!((back[k] - b[k]).abs() <= 1e-3 * (w.max(h) as f32), "{b:?} -> {back:?}");
            }
        }
    }
}
