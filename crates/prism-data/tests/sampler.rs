//! Clip sampling: composition, determinism, resume, streaming continuity, batch tensors.

mod common;

use std::collections::HashMap;

use common::{fake_sequence, TestResult};
use prism_data::{
    assemble, try_assemble, AugmentConfig, Batch, ClipKind, ClipSampler, DataError, PreparedSplit,
    SamplerConfig, SamplerState,
};

fn split() -> Result<PreparedSplit, DataError> {
    // Lengths 23, 5, 12, 40, 1, 9 windows; labels here and there (none in "e").
    let seqs = vec![
        fake_sequence("a", 23, &[2, 10, 22])?,
        fake_sequence("b", 5, &[4])?,
        fake_sequence("c", 12, &[0, 11])?,
        fake_sequence("d", 40, &[5, 6, 7, 30, 39])?,
        fake_sequence("e", 1, &[])?,
        fake_sequence("f", 9, &[8])?,
    ];
    PreparedSplit::new(seqs)
}

fn config(batch_size: usize, seq_len: usize, seed: u64) -> SamplerConfig {
    SamplerConfig {
        batch_size,
        seq_len,
        random_weight: 1.0,
        stream_weight: 1.0,
        seed,
        augment: AugmentConfig::default(),
    }
}

#[test]
fn random_slot_count_follows_rvt() -> TestResult {
    let split = split()?;
    for b in 1..=12usize {
        for (wr, ws) in [
            (1.0f32, 1.0f32),
            (1.0, 3.0),
            (3.0, 1.0),
            (0.0, 1.0),
            (1.0, 0.0),
            (2.0, 5.0),
        ] {
            let cfg = SamplerConfig {
                random_weight: wr,
                stream_weight: ws,
                ..config(b, 4, 0)
            };
            let want = if ws == 0.0 {
                b
            } else {
                ((b as f64 * f64::from(wr) / f64::from(wr + ws)).round() as usize).min(b - 1)
            };
            assert_eq!(cfg.random_slots(), want, "B={b} w=({wr},{ws})");
            let mut sampler = ClipSampler::new(cfg, &split)?;
            let batch = sampler.next_batch(&split);
            assert_eq!(batch.slots.len(), b);
            for (i, s) in batch.slots.iter().enumerate() {
                assert_eq!(s.slot, i);
                assert_eq!(s.kind == ClipKind::Random, i < want);
            }
        }
    }
    Ok(())
}

#[test]
fn same_seed_same_batches() -> TestResult {
    let split = split()?;
    let mut a = ClipSampler::new(config(6, 4, 42), &split)?;
    let mut b = ClipSampler::new(config(6, 4, 42), &split)?;
    let mut c = ClipSampler::new(config(6, 4, 43), &split)?;
    let (mut same, mut differs) = (true, false);
    for _ in 0..50 {
        let (ba, bb, bc) = (
            a.next_batch(&split),
            b.next_batch(&split),
            c.next_batch(&split),
        );
        same &= ba == bb;
        differs |= ba != bc;
    }
    assert!(same);
    assert!(differs);
    Ok(())
}

#[test]
fn state_round_trip_continues_exactly() -> TestResult {
    let split = split()?;
    let cfg = config(7, 3, 5);
    let mut original = ClipSampler::new(cfg, &split)?;
    for _ in 0..11 {
        original.next_batch(&split);
    }
    let json = serde_json::to_string(&original.state())?;
    let state: SamplerState = serde_json::from_str(&json)?;
    let mut resumed = ClipSampler::restore(cfg, &split, state.clone())?;
    for i in 0..60 {
        assert_eq!(
            original.next_batch(&split),
            resumed.next_batch(&split),
            "batch {i} after resume"
        );
    }
    assert_eq!(original.state(), resumed.state());

    // A state only fits its own configuration and split.
    let other_seed = ClipSampler::restore(config(7, 3, 6), &split, state.clone());
    assert!(matches!(other_seed, Err(DataError::StateMismatch(_))));
    let mut smaller = split.clone();
    smaller.sequences.pop();
    assert!(matches!(
        ClipSampler::restore(cfg, &smaller, state.clone()),
        Err(DataError::StateMismatch(_))
    ));
    let mut broken = state;
    broken.streams[0].next_start = 10_000;
    assert!(matches!(
        ClipSampler::restore(cfg, &split, broken),
        Err(DataError::StateMismatch(_))
    ));
    Ok(())
}

/// Follows every streaming slot over many batches: chunks are consecutive, the state is reset
/// exactly at a sequence's first chunk, the augmentation is fixed per sequence, and each epoch
/// streams every sequence once.
#[test]
fn streaming_slots_walk_their_sequences() -> TestResult {
    let split = split()?;
    let lens: Vec<usize> = split.sequences.iter().map(|s| s.num_windows()).collect();
    let cfg = config(8, 4, 9);
    let mut sampler = ClipSampler::new(cfg, &split)?;
    let n_rand = sampler.random_slots();
    let mut previous: Option<Batch> = None;
    // (epoch, slot) -> sequences entered
    let mut entered: HashMap<u64, Vec<usize>> = HashMap::new();
    for step in 0..400 {
        let before = sampler.state();
        let batch = sampler.next_batch(&split);
        for (s, slot) in batch.slots[n_rand..].iter().enumerate() {
            assert_eq!(slot.kind, ClipKind::Stream);
            assert_eq!(slot.slot, n_rand + s);
            let n = lens[slot.sequence];
            assert!(slot.len >= 1 && slot.len <= cfg.seq_len && slot.start + slot.len <= n);
            // Only the last chunk of a sequence may be shorter.
            assert!(
                slot.len == cfg.seq_len || slot.start + slot.len == n,
                "step {step}: {slot:?}"
            );
            assert_eq!(slot.reset_state, slot.start == 0);
            if slot.start == 0 {
                entered
                    .entry(before.streams[s].epoch)
                    .or_default()
                    .push(slot.sequence);
            }
            if let Some(prev) = &previous {
                let p = prev.slots[n_rand + s];
                if p.start + p.len < lens[p.sequence] {
                    assert_eq!(
                        slot.sequence, p.sequence,
                        "step {step}: the stream continues"
                    );
                    assert_eq!(slot.start, p.start + p.len);
                    assert_eq!(
                        slot.augment, p.augment,
                        "augmentation kept for the sequence"
                    );
                } else {
                    assert_eq!(slot.start, 0, "step {step}: a finished sequence is left");
                }
            }
        }
        previous = Some(batch);
    }
    // Epochs that every slot has finished: each sequence streamed exactly once.
    let last_epoch = sampler
        .state()
        .streams
        .iter()
        .map(|s| s.epoch)
        .min()
        .unwrap_or(0);
    assert!(last_epoch >= 3, "{last_epoch} epochs");
    for epoch in 0..last_epoch {
        let mut seqs = entered.get(&epoch).cloned().unwrap_or_default();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..split.sequences.len()).collect::<Vec<_>>(),
            "epoch {epoch}"
        );
    }
    // Epochs are shuffled differently.
    assert_ne!(entered.get(&0), entered.get(&1));
    Ok(())
}

#[test]
fn random_clips_end_on_a_label() -> TestResult {
    let split = split()?;
    let cfg = SamplerConfig {
        stream_weight: 0.0,
        ..config(5, 8, 3)
    };
    let mut sampler = ClipSampler::new(cfg, &split)?;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        for slot in sampler.next_batch(&split).slots {
            assert_eq!(slot.kind, ClipKind::Random);
            assert!(slot.reset_state);
            let seq = &split.sequences[slot.sequence];
            assert_eq!(slot.len, cfg.seq_len.min(seq.num_windows()));
            assert!(
                seq.labels_at(slot.start + slot.len - 1).is_some(),
                "{slot:?}"
            );
            seen.insert((slot.sequence, slot.start + slot.len - 1));
        }
    }
    // Every labelled window that can end a clip of 8 (or a whole shorter sequence) is drawn:
    // a 10, a 22, b 4, c 11, d 7, d 30, d 39, f 8.
    let mut all: Vec<_> = seen.into_iter().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        vec![
            (0, 10),
            (0, 22),
            (1, 4),
            (2, 11),
            (3, 7),
            (3, 30),
            (3, 39),
            (5, 8)
        ]
    );
    Ok(())
}

#[test]
fn more_stream_slots_than_sequences() -> TestResult {
    let split = PreparedSplit {
        sequences: vec![fake_sequence("x", 6, &[5])?, fake_sequence("y", 3, &[])?],
    };
    let cfg = SamplerConfig {
        random_weight: 0.0,
        ..config(5, 4, 1)
    };
    let mut sampler = ClipSampler::new(cfg, &split)?;
    assert_eq!(sampler.stream_slots(), 5);
    for _ in 0..20 {
        let batch = sampler.next_batch(&split);
        assert!(batch.slots.iter().all(|s| s.len >= 1));
    }
    Ok(())
}

#[test]
fn impossible_configurations_are_errors() -> TestResult {
    let split = split()?;
    assert!(ClipSampler::new(config(0, 4, 0), &split).is_err());
    assert!(ClipSampler::new(config(4, 0, 0), &split).is_err());
    let unlabeled = PreparedSplit {
        sequences: vec![fake_sequence("e", 5, &[])?],
    };
    assert!(ClipSampler::new(config(4, 2, 0), &unlabeled).is_err());
    let stream_only = SamplerConfig {
        random_weight: 0.0,
        ..config(4, 2, 0)
    };
    assert!(ClipSampler::new(stream_only, &unlabeled).is_ok());
    let bad_aug = SamplerConfig {
        augment: AugmentConfig {
            hflip_p: 2.0,
            ..AugmentConfig::default()
        },
        ..config(4, 2, 0)
    };
    assert!(ClipSampler::new(bad_aug, &split).is_err());
    Ok(())
}

#[test]
fn assembled_batch_holds_the_clips() -> TestResult {
    let split = split()?;
    let cfg = SamplerConfig {
        augment: AugmentConfig::none(),
        ..config(6, 5, 2)
    };
    let mut sampler = ClipSampler::new(cfg, &split)?;
    let [c, h, w] = split.shape().ok_or("empty split")?;
    let plane = c * h * w;
    for _ in 0..30 {
        let batch = sampler.next_batch(&split);
        let clip = assemble(&batch, &split);
        assert_eq!(clip, try_assemble(&batch, &split)?);
        assert_eq!(
            (clip.seq_len, clip.batch, clip.channels, clip.input_hw),
            (5, 6, c, [h, w])
        );
        assert_eq!(clip.windows.len(), 5);
        assert_eq!(
            clip.reset,
            batch
                .slots
                .iter()
                .map(|s| s.reset_state)
                .collect::<Vec<_>>()
        );
        for t in 0..5 {
            assert_eq!(clip.windows[t].len(), 6 * plane);
            for (b, slot) in batch.slots.iter().enumerate() {
                let got = &clip.windows[t][b * plane..(b + 1) * plane];
                let seq = &split.sequences[slot.sequence];
                assert_eq!(clip.valid[t][b], t < slot.len);
                if t < slot.len {
                    let want: Vec<f32> = seq
                        .window(slot.start + t)
                        .iter()
                        .map(|&v| f32::from(v))
                        .collect();
                    assert_eq!(got, want.as_slice());
                    let labels = seq.labels_at(slot.start + t).map(|l| l.boxes.clone());
                    assert_eq!(clip.labels[t][b], labels);
                } else {
                    assert!(got.iter().all(|&v| v == 0.0));
                    assert!(clip.labels[t][b].is_none());
                }
            }
        }
    }
    // A batch from another split is reported, or left invalid by `assemble`.
    let batch = sampler.next_batch(&split);
    let small = PreparedSplit {
        sequences: vec![fake_sequence("z", 1, &[0])?],
    };
    assert!(try_assemble(&batch, &small).is_err());
    Ok(())
}

#[test]
fn assembled_batch_is_augmented_like_its_slots() -> TestResult {
    let split = split()?;
    let mut sampler = ClipSampler::new(config(6, 4, 77), &split)?;
    let [c, h, w] = split.shape().ok_or("empty split")?;
    let plane = c * h * w;
    let mut augmented = 0;
    for _ in 0..20 {
        let batch = sampler.next_batch(&split);
        let clip = assemble(&batch, &split);
        for (b, slot) in batch.slots.iter().enumerate() {
            augmented += usize::from(!slot.augment.is_identity());
            let seq = &split.sequences[slot.sequence];
            for t in 0..slot.len {
                let mut want = vec![0.0; plane];
                slot.augment
                    .apply_histogram(&seq.window(slot.start + t), c, h, w, &mut want);
                assert_eq!(
                    &clip.windows[t][b * plane..(b + 1) * plane],
                    want.as_slice()
                );
                let boxes = seq
                    .labels_at(slot.start + t)
                    .map(|l| slot.augment.apply_boxes(&l.boxes, h, w));
                assert_eq!(clip.labels[t][b], boxes);
            }
        }
    }
    assert!(augmented > 20, "{augmented} augmented slots");
    Ok(())
}
