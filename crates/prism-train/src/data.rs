//! The train / validation splits a config asks for: synthetic scenes generated once into the
//! data folder (later runs reuse them), or sequences prepared by `prism data prepare`.

use std::path::Path;

use prism_data::{load_split, PrepareOptions, PreparedSplit};
use prism_events::repr::HistogramConfig;
use prism_events::synth::{ObjectClass, SceneConfig};
use prism_models::zoo::ModelCard;

use crate::config::{DatasetSection, TrainConfig};
use crate::TrainError;

/// How a card's recordings become network input: histogram, padding, label filter.
pub fn prepare_options(
    card: &ModelCard,
    filter: prism_data::LabelFilter,
    label_clock: prism_data::LabelClock,
) -> PrepareOptions {
    let [sw, sh] = card.data.sensor;
    // RVT pads height and width with zeros up to a multiple of 32 (the card's input size).
    let histogram = HistogramConfig::rvt(sw, sh)
        .with_bins(card.data.bins)
        .with_cutoff(card.data.count_cutoff)
        .with_downsample(card.data.downsample == 2)
        .with_padding(32);
    PrepareOptions {
        histogram,
        window_us: i64::from(card.data.window_ms) * 1000,
        filter,
        classes: card.data.classes.clone(),
        label_clock,
    }
}

/// The synthetic scene of sequence `index` for a card (sensor, classes) and dataset settings.
pub fn synthetic_scene(
    card: &ModelCard,
    duration_s: f64,
    objects: usize,
    seed: u64,
) -> SceneConfig {
    let classes = card
        .data
        .classes
        .iter()
        .filter_map(|name| ObjectClass::ALL.into_iter().find(|c| c.name() == name))
        .collect();
    SceneConfig {
        width: card.data.sensor[0] as u16,
        height: card.data.sensor[1] as u16,
        duration_us: (duration_s * 1e6) as i64,
        num_objects: objects,
        classes,
        seed,
        ..SceneConfig::default()
    }
}

/// Loads (making them first if needed) the train and validation splits of `config` under
/// `data_dir`.
pub fn load_splits(
    config: &TrainConfig,
    data_dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<(PreparedSplit, PreparedSplit), TrainError> {
    match &config.dataset {
        DatasetSection::Synthetic {
            train_sequences,
            val_sequences,
            duration_s,
            objects,
            seed,
        } => {
            // Synthetic scenes label every 50 ms: RVT's rule with every frame kept.
            let opts = prepare_options(
                &config.card,
                prism_data::LabelFilter::none(),
                prism_data::LabelClock::EveryFrame,
            );
            let base = synthetic_scene(&config.card, *duration_s, *objects, *seed);
            progress(&format!(
                "synthetic data: {train_sequences} train + {val_sequences} val scenes of {duration_s} s in {}",
                data_dir.display()
            ));
            prism_data::prepare_synthetic_tree(
                data_dir,
                &base,
                *train_sequences,
                *val_sequences,
                &opts,
            )?;
        }
        DatasetSection::Prepared { .. } => {}
    }
    let train = load_split(data_dir, "train")?;
    let val = load_split(data_dir, "val")?;
    if train.sequences.is_empty() || val.sequences.is_empty() {
        return Err(TrainError::Splits(format!(
            "{}: needs train/ and val/ sequences (prepare them with `prism data prepare`)",
            data_dir.display()
        )));
    }
    Ok((train, val))
}
