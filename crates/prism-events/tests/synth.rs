//! Synthetic scenes: deterministic, physically plausible, and labelled where the events are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};

use prism_events::reader::read_all;
use prism_events::synth::{generate, write_scene, ObjectClass, Scene, SceneConfig};
use prism_events::write::WriteFormat;
use prism_events::{open, read_bbox_npy, BoxLabel};

fn short_config(seed: u64) -> SceneConfig {
    SceneConfig {
        duration_us: 2_000_000,
        seed,
        ..SceneConfig::default()
    }
}

fn scene(seed: u64) -> Scene {
    generate(&short_config(seed)).unwrap()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = short_config(7);
    config.duration_us = 1_000_000;
    let a = write_scene(&config, dir.path().join("a"), WriteFormat::Evt3).unwrap();
    let b = write_scene(&config, dir.path().join("b"), WriteFormat::Evt3).unwrap();
    config.seed = 8;
    let c = write_scene(&config, dir.path().join("c"), WriteFormat::Evt3).unwrap();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    assert_eq!(read(&a.events_path), read(&b.events_path));
    assert_eq!(read(&a.labels_path), read(&b.labels_path));
    assert_ne!(read(&a.events_path), read(&c.events_path));
    assert_ne!(read(&a.labels_path), read(&c.labels_path));
    assert!(a.events_path.ends_with("a_td.raw") && a.labels_path.ends_with("a_bbox.npy"));
}

#[test]
fn events_are_sorted_inside_the_sensor_with_both_polarities() {
    let s = scene(1);
    let sensor = s.sensor.unwrap();
    let events = &s.events;
    assert!(events.len() > 50_000, "only {} events in 2 s", events.len());
    assert!(events.t.windows(2).all(|w| w[0] <= w[1]), "time order");
    assert!(
        events.x.iter().all(|&x| x < sensor.width) && events.y.iter().all(|&y| y < sensor.height)
    );
    assert!(*events.t.first().unwrap() >= 0 && *events.t.last().unwrap() <= 2_000_000);
    let on = events.p.iter().filter(|&&p| p == 1).count() as f64;
    let share = on / events.len() as f64;
    assert!((0.3..0.7).contains(&share), "ON share {share}");
    // Events spread over the whole duration, not one burst.
    let per_100ms: Vec<usize> = (0..20)
        .map(|k| events.t.iter().filter(|&&t| t / 100_000 == k).count())
        .collect();
    assert!(per_100ms.iter().all(|&n| n > 500), "{per_100ms:?}");
}

#[test]
fn labels_come_at_the_label_rate_and_stay_on_the_sensor() {
    let s = scene(2);
    let config = short_config(2);
    let period = (1e6 / config.label_hz) as i64;
    let times: BTreeSet<i64> = s.labels.iter().map(|b| b.t).collect();
    assert!(s
        .labels
        .iter()
        .all(|b| b.t % period == 0 && b.t > 0 && b.t <= config.duration_us));
    assert!(
        times.len() as i64 >= config.duration_us / period * 9 / 10,
        "{} label times",
        times.len()
    );
    let mut class_of = HashMap::new();
    for b in &s.labels {
        assert!(
            b.x >= 0.0 && b.y >= 0.0 && b.x + b.w <= 160.0 + 1e-3 && b.y + b.h <= 128.0 + 1e-3,
            "{b:?}"
        );
        assert!(b.w >= config.min_box_side && b.h >= config.min_box_side);
        assert!(b.class_id <= 1 && b.confidence == 1.0);
        assert_eq!(
            *class_of.entry(b.track_id).or_insert(b.class_id),
            b.class_id,
            "a track keeps its class"
        );
    }
    // Each class shows up and has its own shape: cars wide, pedestrians tall (unclipped boxes).
    let aspect = |class: u32| {
        let v: Vec<f32> = s
            .labels
            .iter()
            .filter(|b| b.class_id == class)
            .map(|b| b.w / b.h)
            .collect();
        assert!(!v.is_empty(), "class {class} never labelled");
        v.iter().sum::<f32>() / v.len() as f32
    };
    assert!(
        aspect(0) > 1.2 && aspect(1) < 0.8,
        "car {} pedestrian {}",
        aspect(0),
        aspect(1)
    );
}

/// Events per pixel inside the ground-truth boxes versus outside, over the 20 ms before each label.
fn density_ratio(s: &Scene) -> f64 {
    let (w, h) = (160usize, 128usize);
    let mut by_time: HashMap<i64, Vec<&BoxLabel>> = HashMap::new();
    for b in &s.labels {
        by_time.entry(b.t).or_default().push(b);
    }
    let (mut inside_events, mut inside_px, mut outside_events, mut outside_px) =
        (0u64, 0u64, 0u64, 0u64);
    for (&t, boxes) in &by_time {
        let mut mask = vec![false; w * h];
        for b in boxes {
            let (x0, y0) = ((b.x - 1.0).max(0.0) as usize, (b.y - 1.0).max(0.0) as usize);
            let (x1, y1) = (
                ((b.x + b.w + 1.0) as usize).min(w),
                ((b.y + b.h + 1.0) as usize).min(h),
            );
            for y in y0..y1 {
                mask[y * w + x0..y * w + x1].fill(true);
            }
        }
        let n_in = mask.iter().filter(|&&m| m).count() as u64;
        inside_px += n_in;
        outside_px += (w * h) as u64 - n_in;
        let start = s.events.t.partition_point(|&e| e < t - 20_000);
        let end = s.events.t.partition_point(|&e| e <= t);
        for i in start..end {
            if mask[usize::from(s.events.y[i]) * w + usize::from(s.events.x[i])] {
                inside_events += 1;
            } else {
                outside_events += 1;
            }
        }
    }
    (inside_events as f64 / inside_px as f64) / (outside_events.max(1) as f64 / outside_px as f64)
}

#[test]
fn events_concentrate_inside_the_ground_truth_boxes() {
    let s = scene(3);
    let ratio = density_ratio(&s);
    eprintln!("event density inside boxes / outside: {ratio:.1}");
    assert!(
        ratio > 10.0,
        "event density inside boxes only {ratio:.1}x outside"
    );
}

#[test]
fn written_scenes_read_back_through_the_common_loaders() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = short_config(4);
    config.duration_us = 1_000_000;
    config.classes = ObjectClass::ALL.to_vec();
    let expected = generate(&config).unwrap();
    for format in [WriteFormat::Dat, WriteFormat::Evt2, WriteFormat::Evt3] {
        let files = write_scene(&config, dir.path().join(format!("{format:?}")), format).unwrap();
        let mut reader = open(&files.events_path).unwrap();
        assert_eq!(reader.sensor_size(), Some(config.sensor_size()));
        let events = read_all(reader.as_mut()).unwrap();
        assert_eq!(files.events, events.len() as u64);
        assert_eq!(events, expected.events, "{format:?}");
        assert_eq!(
            read_bbox_npy(&files.labels_path).unwrap(),
            expected.labels,
            "{format:?}"
        );
    }
}

#[test]
fn other_sizes_classes_and_noise_settings_work() {
    let config = SceneConfig {
        width: 304,
        height: 240,
        duration_us: 300_000,
        num_objects: 6,
        classes: vec![ObjectClass::TwoWheeler, ObjectClass::Car],
        shot_noise_hz: 5.0,
        seed: 9,
        ..SceneConfig::default()
    };
    let s = generate(&config).unwrap();
    assert!(s.events.x.iter().all(|&x| x < 304) && s.events.y.iter().all(|&y| y < 240));
    assert!(s.labels.iter().all(|b| b.class_id == 0 || b.class_id == 2));
    // A scene with no objects and no noise is silent; noise alone is spread uniformly.
    let quiet = SceneConfig {
        num_objects: 0,
        shot_noise_hz: 0.0,
        leak_hz: 0.0,
        hot_pixel_fraction: 0.0,
        duration_us: 200_000,
        ..SceneConfig::default()
    };
    let s = generate(&quiet).unwrap();
    assert!(s.events.is_empty() && s.labels.is_empty());
    let noisy = SceneConfig {
        shot_noise_hz: 10.0,
        ..quiet
    };
    let s = generate(&noisy).unwrap();
    let expected = 10.0 * 160.0 * 128.0 * 0.2;
    let n = s.events.len() as f64;
    assert!(
        (n - expected).abs() < 0.05 * expected,
        "{n} noise events, expected about {expected}"
    );
}

#[test]
fn invalid_configs_are_rejected() {
    for bad in [
        SceneConfig {
            width: 0,
            ..SceneConfig::default()
        },
        SceneConfig {
            duration_us: 0,
            ..SceneConfig::default()
        },
        SceneConfig {
            classes: vec![],
            ..SceneConfig::default()
        },
        SceneConfig {
            label_hz: 0.0,
            ..SceneConfig::default()
        },
        SceneConfig {
            threshold_pos: 0.0,
            ..SceneConfig::default()
        },
    ] {
        assert!(generate(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_panning_camera_makes_the_background_fire_everywhere() {
    let config = SceneConfig {
        duration_us: 500_000,
        num_objects: 1,
        camera_pan_px_s: (40.0, -10.0),
        seed: 5,
        ..SceneConfig::default()
    };
    let s = generate(&config).unwrap();
    let mut hit = vec![false; 160 * 128];
    for i in 0..s.events.len() {
        hit[usize::from(s.events.y[i]) * 160 + usize::from(s.events.x[i])] = true;
    }
    let share = hit.iter().filter(|&&h| h).count() as f64 / hit.len() as f64;
    assert!(
        share > 0.5,
        "only {share:.2} of the pixels fired while panning"
    );
    assert!(s.events.t.windows(2).all(|w| w[0] <= w[1]));
    let again = generate(&config).unwrap();
    assert_eq!(again.events, s.events);
}

mod pixel_model {
    use prism_events::synth::sensor::{unkey, PixelArray, PixelParams};

    fn ideal(refractory_us: i64) -> PixelParams {
        PixelParams {
            threshold_pos: 0.2,
            threshold_neg: 0.2,
            threshold_sigma: 0.0,
            refractory_us,
            leak_hz: 0.0,
            shot_noise_hz: 0.0,
            hot_pixel_fraction: 0.0,
            hot_pixel_hz: 0.0,
        }
    }

    /// Steps one pixel from `t0` to `t1` and returns its events as (t, polarity).
    fn step(pixels: &mut PixelArray, t0: i64, t1: i64, level: f32) -> Vec<(i64, u8)> {
        let mut keys = Vec::new();
        pixels.step(t0, t1, &[level], &mut keys);
        keys.sort_unstable();
        keys.into_iter()
            .map(unkey)
            .map(|(dt, _, _, p)| (t0 + dt, p))
            .collect()
    }

    #[test]
    fn crossings_are_stamped_at_interpolated_times() {
        let mut pixels = PixelArray::new(1, &[0.0], &ideal(0), 1, 0);
        // 0 -> 0.5 over 1000 µs crosses 0.2 and 0.4 at 40% and 80%.
        assert_eq!(step(&mut pixels, 0, 1000, 0.5), vec![(400, 1), (800, 1)]);
        // Reference is now 0.4; 0.5 -> -0.1 crosses 0.2 and 0.0 at 50% and 83%.
        assert_eq!(
            step(&mut pixels, 1000, 2000, -0.1),
            vec![(1500, 0), (1833, 0)]
        );
        // No crossing, no event.
        assert_eq!(step(&mut pixels, 2000, 3000, -0.05), vec![]);
    }

    #[test]
    fn the_refractory_period_drops_events_but_moves_the_reference() {
        let mut pixels = PixelArray::new(1, &[0.0], &ideal(500), 1, 0);
        // Crossings at 200, 400, 600, 800, 1000 µs; only those 500 µs apart survive.
        assert_eq!(step(&mut pixels, 0, 1000, 1.0), vec![(200, 1), (800, 1)]);
        // The reference reached 1.0 all the same: the next event is at 1.2, not 0.6.
        assert_eq!(step(&mut pixels, 1000, 2000, 1.25), vec![(1800, 1)]);
    }

    #[test]
    fn leak_alone_makes_sporadic_on_events() {
        let params = PixelParams {
            leak_hz: 1.0,
            ..ideal(0)
        };
        let mut pixels = PixelArray::new(1, &[0.0], &params, 3, 0);
        let mut events = Vec::new();
        for k in 0..100 {
            events.extend(step(&mut pixels, k * 50_000, (k + 1) * 50_000, 0.0));
        }
        // About one ON event per second per pixel at 1 Hz leak (rate jittered by 10%).
        assert!((3..=7).contains(&events.len()), "{events:?}");
        assert!(events.iter().all(|&(_, p)| p == 1));
    }
}
