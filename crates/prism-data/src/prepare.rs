//! Recording (or synthetic scene) in, [`PreparedSequence`] out.
//!
//! Labels (small) are read whole, cleaned by the [`LabelFilter`] and the class list and grouped
//! by timestamp into frames; RVT's rule ([`crate::align`]) then keeps some frames and fixes where
//! every window ends. Events stream through in chunks: a [`WindowSlicer`] cuts those windows
//! (`[end - window_us, end]`, both ends inclusive), a [`StackedHistogram`] turns each into
//! `u8 [2 * bins, H, W]`, and only the finished histograms are kept. Coordinates are halved with
//! the histogram when it is downsampled. A recording without any label frame RVT keeps gets
//! back-to-back windows across its events and no labels.

use std::path::Path;

use prism_events::repr::HistogramConfig;
use prism_events::synth::{ObjectClass, SceneConfig};
use prism_events::window::{WindowConfig, WindowSlicer};
use prism_events::StackedHistogram;
use prism_events::{read_bbox_npy, BoxLabel, EventChunk, EventSlice, ReaderOptions, SensorSize};

use crate::align::{rvt_timeline, LabelClock, Timeline};
use crate::codec::EncodedHistograms;
use crate::error::{DataError, Result};
use crate::filter::LabelFilter;
use crate::prepared::{LabeledBox, PreparedSequence, SequenceMeta, SequenceStats, WindowLabels};

/// How recordings become training data.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    /// Stacked histogram: sensor size, bins, cutoff, halving, padding.
    pub histogram: HistogramConfig,
    /// Window length and the step before the first label frame (RVT: 50 ms).
    pub window_us: i64,
    pub filter: LabelFilter,
    /// Class names by id; boxes with `class_id >= classes.len()` are dropped (RVT keeps ids 0..=2
    /// of 1Mpx).
    pub classes: Vec<String>,
    /// Which label frames RVT's rule keeps and where windows end ([`crate::align`]).
    pub label_clock: LabelClock,
}

impl PrepareOptions {
    /// RVT Gen1: 304x240 padded to 320x256, Gen1 filter, car and pedestrian, Gen1 label clock.
    pub fn gen1() -> Self {
        Self {
            histogram: HistogramConfig::gen1(),
            window_us: 50_000,
            filter: LabelFilter::gen1(),
            classes: vec!["car".into(), "pedestrian".into()],
            label_clock: LabelClock::Gen1,
        }
    }

    /// RVT 1Mpx: 1280x720 halved and padded to 640x384, conservative filter, three classes, the
    /// 1Mpx label clock.
    pub fn gen4() -> Self {
        Self {
            histogram: HistogramConfig::gen4(),
            window_us: 50_000,
            filter: LabelFilter::gen4(),
            classes: vec!["pedestrian".into(), "two-wheeler".into(), "car".into()],
            label_clock: LabelClock::Gen4,
        }
    }

    /// A synthetic scene's sensor padded to a multiple of 32, no size filter, the synthetic
    /// classes by id (car, pedestrian, two-wheeler), every label frame kept.
    pub fn synthetic(scene: &SceneConfig) -> Self {
        let mut classes = ObjectClass::ALL.to_vec();
        classes.sort_by_key(|c| c.class_id());
        Self {
            histogram: HistogramConfig::rvt(usize::from(scene.width), usize::from(scene.height))
                .with_padding(32),
            window_us: 50_000,
            filter: LabelFilter::none(),
            classes: classes.iter().map(|c| c.name().to_string()).collect(),
            label_clock: LabelClock::EveryFrame,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.window_us <= 0 {
            return Err(DataError::Invalid(format!(
                "window_us must be positive, got {}",
                self.window_us
            )));
        }
        Ok(())
    }
}

/// Prepares one recording (`.dat`, `.raw`, `.h5`; see [`prism_events::open`]) with its optional
/// Prophesee `*_bbox.npy` labels.
pub fn prepare_recording(
    events: &Path,
    labels: Option<&Path>,
    name: &str,
    opts: &PrepareOptions,
) -> Result<PreparedSequence> {
    let mut dense = Vec::new();
    let (meta, labels) = prepare_recording_into(events, labels, name, opts, &mut dense)?;
    PreparedSequence::new(meta, labels, dense)
}

/// Generates `scene` in memory (no files) and prepares it exactly as [`prepare_recording`] would
/// prepare the files [`prism_events::synth::write_scene`] writes for it. The scene's events are
/// held in memory while it is prepared.
pub fn prepare_synthetic(
    scene: &SceneConfig,
    name: &str,
    opts: &PrepareOptions,
) -> Result<PreparedSequence> {
    let mut dense = Vec::new();
    let (meta, labels) = prepare_synthetic_into(scene, name, opts, &mut dense)?;
    PreparedSequence::new(meta, labels, dense)
}

/// Where finished window histograms go: a dense buffer or straight into the compressed form.
pub(crate) trait WindowSink {
    fn push_window(&mut self, window: &[u8]) -> Result<()>;
}

impl WindowSink for Vec<u8> {
    fn push_window(&mut self, window: &[u8]) -> Result<()> {
        self.extend_from_slice(window);
        Ok(())
    }
}

impl WindowSink for EncodedHistograms {
    fn push_window(&mut self, window: &[u8]) -> Result<()> {
        EncodedHistograms::push_window(self, window)
    }
}

/// Events per push into the window slicer (bounds memory, amortises its bookkeeping).
const CHUNK_EVENTS: usize = 1 << 16;

pub(crate) fn prepare_recording_into(
    events: &Path,
    labels: Option<&Path>,
    name: &str,
    opts: &PrepareOptions,
    sink: &mut impl WindowSink,
) -> Result<(SequenceMeta, Vec<WindowLabels>)> {
    opts.validate()?;
    let raw = match labels {
        Some(path) => read_bbox_npy(path)?,
        None => Vec::new(),
    };
    let plan = LabelPlan::new(&raw, opts).map_err(|e| match (e, labels) {
        (DataError::Invalid(m), Some(path)) => {
            DataError::Invalid(format!("{}: {m}", path.display()))
        }
        (e, _) => e,
    })?;
    let sensor = sensor_size(&opts.histogram)?;
    let reader_opts = ReaderOptions {
        chunk_events: CHUNK_EVENTS,
        sensor_size: Some(sensor),
        ..ReaderOptions::default()
    };
    let mut reader = prism_events::open_with(events, reader_opts)?;
    if let Some(s) = reader.sensor_size() {
        if s != sensor {
            return Err(DataError::Invalid(format!(
                "{}: the recording is {}x{}, the histogram is set up for {}x{}",
                events.display(),
                s.width,
                s.height,
                sensor.width,
                sensor.height
            )));
        }
    }
    let mut windower = Windower::new(&opts.histogram, opts.window_us, &plan.timeline)?;
    let mut chunk = EventChunk::with_capacity(CHUNK_EVENTS);
    while reader.read_chunk(&mut chunk)? {
        windower.push(chunk.as_slice(), sink)?;
    }
    let windows = windower.finish(sink)?;
    Ok(plan.assemble_meta(name, opts, windows))
}

pub(crate) fn prepare_synthetic_into(
    scene: &SceneConfig,
    name: &str,
    opts: &PrepareOptions,
    sink: &mut impl WindowSink,
) -> Result<(SequenceMeta, Vec<WindowLabels>)> {
    opts.validate()?;
    let sensor = sensor_size(&opts.histogram)?;
    if scene.sensor_size() != sensor {
        return Err(DataError::Invalid(format!(
            "the scene is {}x{}, the histogram is set up for {}x{}",
            scene.width, scene.height, sensor.width, sensor.height
        )));
    }
    // RVT's window ends need every label time, so the scene is generated whole first.
    let generated = prism_events::synth::generate(scene)?;
    let plan = LabelPlan::new(&generated.labels, opts)?;
    let mut windower = Windower::new(&opts.histogram, opts.window_us, &plan.timeline)?;
    let all = generated.events.as_slice();
    let mut from = 0;
    while from < all.len() {
        let to = (from + CHUNK_EVENTS).min(all.len());
        windower.push(all.slice(from..to), sink)?;
        from = to;
    }
    let windows = windower.finish(sink)?;
    Ok(plan.assemble_meta(name, opts, windows))
}

fn sensor_size(hcfg: &HistogramConfig) -> Result<SensorSize> {
    let to_u16 = |v: usize| u16::try_from(v).ok();
    match (to_u16(hcfg.width), to_u16(hcfg.height)) {
        (Some(width), Some(height)) => Ok(SensorSize { width, height }),
        _ => Err(DataError::Invalid(format!(
            "sensor {}x{} is too large",
            hcfg.width, hcfg.height
        ))),
    }
}

/// Filter, then class selection.
pub(crate) fn clean_labels(raw: &[BoxLabel], opts: &PrepareOptions) -> Vec<BoxLabel> {
    let (w, h) = (opts.histogram.width as f32, opts.histogram.height as f32);
    let mut kept = opts.filter.apply(raw, w, h);
    kept.retain(|b| (b.class_id as usize) < opts.classes.len());
    kept
}

/// Boxes grouped by timestamp (a "label frame"), in time order; boxes keep their file order.
struct Frames {
    times: Vec<i64>,
    boxes: Vec<Vec<BoxLabel>>,
}

impl Frames {
    fn group(kept: &[BoxLabel]) -> Self {
        let mut sorted = kept.to_vec();
        sorted.sort_by_key(|b| b.t); // stable
        let mut frames = Frames {
            times: Vec::new(),
            boxes: Vec::new(),
        };
        for b in sorted {
            match (frames.times.last(), frames.boxes.last_mut()) {
                (Some(&t), Some(last)) if t == b.t => last.push(b),
                _ => {
                    frames.times.push(b.t);
                    frames.boxes.push(vec![b]);
                }
            }
        }
        frames
    }
}

/// The cleaned labels of one sequence, their frames and RVT's timeline over them.
struct LabelPlan {
    boxes_read: usize,
    boxes_kept: usize,
    frames: Frames,
    timeline: Timeline,
}

impl LabelPlan {
    fn new(raw: &[BoxLabel], opts: &PrepareOptions) -> Result<Self> {
        let kept = clean_labels(raw, opts);
        let frames = Frames::group(&kept);
        let timeline = rvt_timeline(&frames.times, opts.label_clock, opts.window_us)?;
        Ok(Self {
            boxes_read: raw.len(),
            boxes_kept: kept.len(),
            frames,
            timeline,
        })
    }

    /// The sequence's metadata and the labels of the kept frames on their windows.
    fn assemble_meta(
        self,
        name: &str,
        opts: &PrepareOptions,
        (ends, events): (Vec<i64>, u64),
    ) -> (SequenceMeta, Vec<WindowLabels>) {
        let hcfg = &opts.histogram;
        let scale = if hcfg.downsample_by_2 { 0.5 } else { 1.0 };
        let frames = &self.frames;
        let labels: Vec<WindowLabels> = self
            .timeline
            .kept
            .iter()
            .map(|&(frame, window)| WindowLabels {
                window,
                t_us: frames.times[frame],
                boxes: frames.boxes[frame]
                    .iter()
                    .map(|b| LabeledBox::scaled(b, scale))
                    .collect(),
            })
            .collect();
        let [channels, h, w] = hcfg.shape();
        let (ch, cw) = hcfg.content_size();
        let stats = SequenceStats {
            events,
            boxes_read: self.boxes_read,
            boxes_kept: self.boxes_kept,
            label_frames: frames.times.len(),
            labeled_windows: labels.len(),
        };
        let meta = SequenceMeta {
            name: name.to_string(),
            sensor: [hcfg.width as u32, hcfg.height as u32],
            input_hw: [h, w],
            channels,
            window_us: opts.window_us,
            downsample: hcfg.downsample_by_2,
            classes: opts.classes.clone(),
            window_end_us: ends,
            content_hw: [ch, cw],
            bins: hcfg.bins,
            count_cutoff: hcfg.count_cutoff,
            filter: opts.filter,
            stats,
        };
        (meta, labels)
    }
}

/// Streams events into windows and windows into histograms: the timeline's windows, or
/// back-to-back windows across the events when the timeline has none (the first one starting
/// after the first event, as RVT drops the end in `(0, window]`).
struct Windower {
    hist: StackedHistogram,
    window_us: i64,
    /// Made at the first event when there is no timeline.
    slicer: Option<WindowSlicer>,
    ends: Vec<i64>,
    events: u64,
}

impl Windower {
    fn new(hcfg: &HistogramConfig, window_us: i64, timeline: &Timeline) -> Result<Self> {
        let slicer = if timeline.ends.is_empty() {
            None
        } else {
            Some(WindowSlicer::with_ends(window_us, timeline.ends.clone())?)
        };
        Ok(Self {
            hist: StackedHistogram::new(*hcfg)?,
            window_us,
            slicer,
            ends: Vec::with_capacity(timeline.ends.len()),
            events: 0,
        })
    }

    fn push(&mut self, events: EventSlice<'_>, sink: &mut impl WindowSink) -> Result<()> {
        let Some(&first) = events.t.first() else {
            return Ok(());
        };
        self.events += events.len() as u64;
        let slicer = match &mut self.slicer {
            Some(slicer) => slicer,
            None => {
                // The smallest multiple of the step at or after `first + step + 1`.
                let step = self.window_us;
                let first_end = (first + 2 * step).div_euclid(step) * step;
                self.slicer.insert(WindowSlicer::new(
                    WindowConfig::new(step).with_first_end(first_end),
                )?)
            }
        };
        slicer.push(events)?;
        self.drain(sink)
    }

    /// Ends the stream; returns the window ends and the number of events seen.
    fn finish(mut self, sink: &mut impl WindowSink) -> Result<(Vec<i64>, u64)> {
        if let Some(slicer) = &mut self.slicer {
            slicer.finish();
        }
        self.drain(sink)?;
        Ok((self.ends, self.events))
    }

    fn drain(&mut self, sink: &mut impl WindowSink) -> Result<()> {
        let Some(slicer) = &mut self.slicer else {
            return Ok(());
        };
        while let Some(w) = slicer.next_window() {
            sink.push_window(self.hist.build(w.events)?)?;
            self.ends.push(w.end_us);
        }
        Ok(())
    }
}
