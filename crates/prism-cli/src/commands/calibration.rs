//! Calibration windows for `prism quantize` and `prism export onnx --precision fp16`: a
//! prepared dataset (the first windows of each sequence), an event recording (its first
//! windows), each window the model's input with sequence starts marked for the state; or, for
//! frame models, a multimodal dataset folder (images of its training split, letterboxed as
//! `prism eval` feeds them); for next-vector models, a vector corpus (contexts from its training
//! documents).

use std::path::Path;

use anyhow::{bail, Context, Result};
use prism_core::ModelSpec;
use prism_deploy::preprocess::HistogramInput;
use prism_events::{EventChunk, ReaderOptions, WindowConfig, WindowSlicer};
use prism_export::quantize::{
    CalibrationData, CalibrationWindow, DurationFeed, Feeds, SourceError, StateLink,
};

/// The data input, the recurrent state and the duration input, from the model's metadata.
/// Calibration runs every window at the model's window length (what a stream of fixed
/// windows feeds a model that takes durations).
pub fn feeds(spec: &ModelSpec) -> Feeds {
    Feeds {
        duration: spec.duration_input.as_ref().map(|input| DurationFeed {
            input: input.clone(),
            seconds: spec
                .representation
                .as_ref()
                .map_or(0.05, |r| r.window_us as f32 / 1e6),
        }),
        input: spec.input.name.clone(),
        input_shape: spec.input.shape.iter().map(|d| d.unwrap_or(1)).collect(),
        state: spec
            .state
            .iter()
            .map(|s| StateLink {
                input: s.input.clone(),
                output: s.output.clone(),
                shape: s
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if i == 0 { 1 } else { d })
                    .collect(),
            })
            .collect(),
    }
}

/// Calibration windows from `path`: a prepared dataset folder (its `split`) or an event
/// recording; at most `limit` windows.
pub fn source(
    path: &Path,
    split: &str,
    spec: &ModelSpec,
    feeds: &Feeds,
    limit: usize,
) -> Result<Box<dyn CalibrationData>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if let Some(seq) = &spec.sequence {
        Ok(Box::new(ContextWindows::new(path, seq, limit)?))
    } else if meta.is_dir() && path.join("classes.txt").is_file() {
        Ok(Box::new(ImageWindows::new(
            path,
            &feeds.input_shape,
            limit,
        )?))
    } else if meta.is_dir() {
        Ok(Box::new(PreparedWindows::new(
            path,
            split,
            &feeds.input_shape,
            limit,
        )?))
    } else {
        Ok(Box::new(RecordingWindows::read(
            path,
            spec,
            &feeds.input_shape,
            limit,
        )?))
    }
}

/// The first windows of every sequence of a prepared split, as many from each as spreads
/// `limit` over them.
struct PreparedWindows {
    split: prism_data::PreparedSplit,
    per_sequence: usize,
    limit: usize,
}

impl PreparedWindows {
    fn new(dir: &Path, split: &str, input_shape: &[usize], limit: usize) -> Result<Self> {
        let split = prism_data::load_split(dir, split)
            .with_context(|| format!("loading {}/{split}", dir.display()))?;
        let Some(first) = split.sequences.first() else {
            bail!(
                "{}: the split holds no sequence, so no calibration window",
                dir.display()
            );
        };
        let want = [
            first.meta.channels,
            first.meta.input_hw[0],
            first.meta.input_hw[1],
        ];
        if input_shape.len() != 4 || input_shape[1..] != want {
            bail!(
                "{}: windows are {want:?}, the model takes {:?}",
                dir.display(),
                input_shape
            );
        }
        let per_sequence = limit.div_ceil(split.sequences.len()).max(1);
        Ok(Self {
            split,
            per_sequence,
            limit,
        })
    }
}

impl CalibrationData for PreparedWindows {
    fn len(&self) -> usize {
        let n: usize = self
            .split
            .sequences
            .iter()
            .map(|s| s.num_windows().min(self.per_sequence))
            .sum();
        n.min(self.limit)
    }

    fn windows(&mut self) -> Box<dyn Iterator<Item = Result<CalibrationWindow, SourceError>> + '_> {
        let per = self.per_sequence;
        Box::new(
            self.split
                .sequences
                .iter()
                .flat_map(move |seq| {
                    (0..seq.num_windows().min(per)).map(move |i| {
                        let window = seq.get_window(i).ok_or_else(|| -> SourceError {
                            format!("{}: window {i} is unreadable", seq.meta.name).into()
                        })?;
                        Ok(CalibrationWindow {
                            input: window.iter().map(|&v| f32::from(v)).collect(),
                            new_sequence: i == 0,
                        })
                    })
                })
                .take(self.limit),
        )
    }
}

/// Images of a multimodal dataset's training split (the seeded 80 / 20 split, seed 42), spread
/// over the split, letterboxed into the model's input.
struct ImageWindows {
    samples: Vec<prism_data::multimodal::MmSample>,
    input_hw: [usize; 2],
}

impl ImageWindows {
    fn new(dir: &Path, input_shape: &[usize], limit: usize) -> Result<Self> {
        let folder = prism_data::multimodal::MmFolder::open(dir)
            .with_context(|| format!("opening {}", dir.display()))?;
        if input_shape.len() != 4 || input_shape[1] != prism_data::multimodal::MM_CHANNELS {
            bail!(
                "{} holds 5-channel images; the model takes {input_shape:?}",
                dir.display()
            );
        }
        let (train, _) = folder.split(42, 0.2);
        let step = train.len().div_ceil(limit.max(1)).max(1);
        let samples: Vec<_> = train.into_iter().step_by(step).take(limit).collect();
        if samples.is_empty() {
            bail!("{}: no training image to calibrate on", dir.display());
        }
        Ok(Self {
            samples,
            input_hw: [input_shape[2], input_shape[3]],
        })
    }
}

impl CalibrationData for ImageWindows {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn windows(&mut self) -> Box<dyn Iterator<Item = Result<CalibrationWindow, SourceError>> + '_> {
        Box::new(self.samples.iter().map(|sample| {
            let image = prism_data::multimodal::read_image(&sample.image)
                .map_err(|e| -> SourceError { e.to_string().into() })?;
            let (input, _) = prism_train::frame_eval::frame_input(&image, self.input_hw);
            Ok(CalibrationWindow {
                input,
                new_sequence: true,
            })
        }))
    }
}

/// Contexts of a vector corpus's training documents (the cards' split: 10 % of the documents
/// validate, seed 0), spread over them, one per calibration window.
struct ContextWindows {
    contexts: Vec<Vec<f32>>,
}

impl ContextWindows {
    fn new(dir: &Path, seq: &prism_core::spec::SequenceSpec, limit: usize) -> Result<Self> {
        let corpus = prism_data::sequence::VectorCorpus::load(dir).with_context(|| {
            format!(
                "{}: a next-vector model calibrates on a vector corpus",
                dir.display()
            )
        })?;
        if corpus.dim != seq.dim {
            bail!(
                "{} holds {}-wide vectors; the model reads {}",
                dir.display(),
                corpus.dim,
                seq.dim
            );
        }
        let split = corpus.split(0.1, 0)?;
        let targets = corpus.targets(&split.train, seq.context);
        let step = targets.len().div_ceil(limit.max(1)).max(1);
        let contexts: Vec<Vec<f32>> = targets
            .iter()
            .step_by(step)
            .take(limit)
            .map(|&t| corpus.batch(&[t], seq.context).contexts)
            .collect();
        if contexts.is_empty() {
            bail!("{}: no training context to calibrate on", dir.display());
        }
        Ok(Self { contexts })
    }
}

impl CalibrationData for ContextWindows {
    fn len(&self) -> usize {
        self.contexts.len()
    }

    fn windows(&mut self) -> Box<dyn Iterator<Item = Result<CalibrationWindow, SourceError>> + '_> {
        Box::new(self.contexts.iter().map(|c| {
            Ok(CalibrationWindow {
                input: c.clone(),
                new_sequence: true,
            })
        }))
    }
}

/// The first windows of a recording, kept as 8-bit histograms and padded on the way out.
struct RecordingWindows {
    histograms: Vec<Vec<u8>>,
    content: [usize; 3],
    input_shape: Vec<usize>,
}

impl RecordingWindows {
    fn read(path: &Path, spec: &ModelSpec, input_shape: &[usize], limit: usize) -> Result<Self> {
        let rep = spec
            .representation
            .as_ref()
            .context("the model has no event representation in its metadata")?;
        let mut input = HistogramInput::new(rep)?;
        let sensor = prism_events::SensorSize {
            width: u16::try_from(rep.sensor_width).context("sensor width")?,
            height: u16::try_from(rep.sensor_height).context("sensor height")?,
        };
        let options = ReaderOptions {
            sensor_size: Some(sensor),
            ..ReaderOptions::default()
        };
        let mut reader = prism_events::open_with(path, options)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut slicer = WindowSlicer::new(WindowConfig::new(rep.window_us))?;
        let mut chunk = EventChunk::default();
        let mut histograms = Vec::new();
        let mut content = [0; 3];
        let mut take = |slicer: &mut WindowSlicer, histograms: &mut Vec<Vec<u8>>| -> Result<()> {
            while histograms.len() < limit {
                let Some(window) = slicer.next_window() else {
                    break;
                };
                input.build(window.events)?;
                let (hist, shape) = input.histogram();
                content = shape;
                histograms.push(hist.to_vec());
            }
            Ok(())
        };
        while histograms.len() < limit
            && reader
                .read_chunk(&mut chunk)
                .with_context(|| format!("reading {}", path.display()))?
        {
            slicer.push(chunk.as_slice())?;
            take(&mut slicer, &mut histograms)?;
        }
        slicer.finish();
        take(&mut slicer, &mut histograms)?;
        if histograms.is_empty() {
            bail!(
                "{} holds no event, so no calibration window",
                path.display()
            );
        }
        Ok(Self {
            histograms,
            content,
            input_shape: input_shape.to_vec(),
        })
    }
}

impl CalibrationData for RecordingWindows {
    fn len(&self) -> usize {
        self.histograms.len()
    }

    fn windows(&mut self) -> Box<dyn Iterator<Item = Result<CalibrationWindow, SourceError>> + '_> {
        let [c, h, w] = self.content;
        let (ph, pw) = (self.input_shape[2], self.input_shape[3]);
        Box::new(self.histograms.iter().enumerate().map(move |(i, hist)| {
            let mut input = vec![0f32; c * ph * pw];
            for ch in 0..c {
                for y in 0..h {
                    let src = &hist[(ch * h + y) * w..][..w];
                    let dst = &mut input[(ch * ph + y) * pw..][..w];
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = f32::from(s);
                    }
                }
            }
            Ok(CalibrationWindow {
                input,
                new_sequence: i == 0,
            })
        }))
    }
}
