//! Recording (or synthetic scene) in, [`PreparedSequence`] out.
//!
//! Events stream through in chunks: a [`WindowSlicer`] cuts RVT windows (`[end - window_us, end]`,
//! both ends inclusive) on the grid of [`crate::align`], a [`StackedHistogram`] turns each into
//! `u8 [2 * bins, H, W]`, and only the finished histograms are kept. Labels (small) are read
//! whole, cleaned by the [`LabelFilter`] and the class list, grouped by timestamp into frames and
//! attached to windows; coordinates are halved with the histogram when it is downsampled.

use std::path::Path;

use prism_events::repr::HistogramConfig;
use prism_events::synth::{ObjectClass, SceneConfig, SceneGenerator};
use prism_events::window::{WindowConfig, WindowSlicer};
use prism_events::StackedHistogram;
use prism_events::{read_bbox_npy, BoxLabel, EventChunk, EventSlice, ReaderOptions, SensorSize};

use crate::align::{attach, LabelAlign, WindowGrid, ANCHOR_AFTER_US};
use crate::codec::EncodedHistograms;
use crate::error::{DataError, Result};
use crate::filter::LabelFilter;
use crate::prepared::{LabeledBox, PreparedSequence, SequenceMeta, SequenceStats, WindowLabels};

/// How recordings become training data.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    /// Stacked histogram: sensor size, bins, cutoff, halving, padding.
    pub histogram: HistogramConfig,
    /// Window length and step (RVT: 50 ms).
    pub window_us: i64,
    pub filter: LabelFilter,
    /// Class names by id; boxes with `class_id >= classes.len()` are dropped (RVT keeps ids 0..=2
    /// of 1Mpx).
    pub classes: Vec<String>,
}

impl PrepareOptions {
    /// RVT Gen1: 304x240 padded to 320x256, Gen1 filter, car and pedestrian.
    pub fn gen1() -> Self {
        Self {
            histogram: HistogramConfig::gen1(),
            window_us: 50_000,
            filter: LabelFilter::gen1(),
            classes: vec!["car".into(), "pedestrian".into()],
        }
    }

    /// RVT 1Mpx: 1280x720 halved and padded to 640x384, conservative filter, three classes.
    pub fn gen4() -> Self {
        Self {
            histogram: HistogramConfig::gen4(),
            window_us: 50_000,
            filter: LabelFilter::gen4(),
            classes: vec!["pedestrian".into(), "two-wheeler".into(), "car".into()],
        }
    }

    /// A synthetic scene's sensor padded to a multiple of 32, no size filter, the synthetic
    /// classes by id (car, pedestrian, two-wheeler).
    pub fn synthetic(scene: &SceneConfig) -> Self {
        let mut classes = ObjectClass::ALL.to_vec();
        classes.sort_by_key(|c| c.class_id());
        Self {
            histogram: HistogramConfig::rvt(usize::from(scene.width), usize::from(scene.height))
                .with_padding(32),
            window_us: 50_000,
            filter: LabelFilter::none(),
            classes: classes.iter().map(|c| c.name().to_string()).collect(),
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
/// Prophesee `*_bbox.npy` labels, with the default [`LabelAlign`].
pub fn prepare_recording(
    events: &Path,
    labels: Option<&Path>,
    name: &str,
    opts: &PrepareOptions,
) -> Result<PreparedSequence> {
    prepare_recording_with(events, labels, name, opts, LabelAlign::default())
}

/// [`prepare_recording`] with a chosen label alignment.
pub fn prepare_recording_with(
    events: &Path,
    labels: Option<&Path>,
    name: &str,
    opts: &PrepareOptions,
    align: LabelAlign,
) -> Result<PreparedSequence> {
    let mut dense = Vec::new();
    let (meta, labels) = prepare_recording_into(events, labels, name, opts, align, &mut dense)?;
    PreparedSequence::new(meta, labels, dense)
}

/// Generates `scene` in memory (no files) and prepares it exactly as [`prepare_recording`] would
/// prepare the files [`prism_events::synth::write_scene`] writes for it.
pub fn prepare_synthetic(
    scene: &SceneConfig,
    name: &str,
    opts: &PrepareOptions,
) -> Result<PreparedSequence> {
    let mut dense = Vec::new();
    let (meta, labels) =
        prepare_synthetic_into(scene, name, opts, LabelAlign::default(), &mut dense)?;
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
    align: LabelAlign,
    sink: &mut impl WindowSink,
) -> Result<(SequenceMeta, Vec<WindowLabels>)> {
    opts.validate()?;
    let hcfg = &opts.histogram;
    let raw = match labels {
        Some(path) => read_bbox_npy(path)?,
        None => Vec::new(),
    };
    let kept = clean_labels(&raw, opts);
    let frames = Frames::group(&kept);

    let sensor = sensor_size(hcfg)?;
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
    let mut windower = Windower::new(hcfg, opts.window_us)?;
    windower.set_grid(WindowGrid::from_labels(&frames.times, opts.window_us), sink)?;
    let mut chunk = EventChunk::with_capacity(CHUNK_EVENTS);
    while reader.read_chunk(&mut chunk)? {
        windower.push(chunk.as_slice(), sink)?;
    }
    let windows = windower.finish(WindowGrid::from_labels(&frames.times, opts.window_us), sink)?;
    Ok(assemble_meta(
        name,
        opts,
        align,
        windows,
        raw.len(),
        &kept,
        &frames,
    ))
}

pub(crate) fn prepare_synthetic_into(
    scene: &SceneConfig,
    name: &str,
    opts: &PrepareOptions,
    align: LabelAlign,
    sink: &mut impl WindowSink,
) -> Result<(SequenceMeta, Vec<WindowLabels>)> {
    opts.validate()?;
    let hcfg = &opts.histogram;
    let sensor = sensor_size(hcfg)?;
    if scene.sensor_size() != sensor {
        return Err(DataError::Invalid(format!(
            "the scene is {}x{}, the histogram is set up for {}x{}",
            scene.width, scene.height, sensor.width, sensor.height
        )));
    }
    let mut generator = SceneGenerator::new(scene.clone())?;
    let mut windower = Windower::new(hcfg, opts.window_us)?;
    let (mut chunk, mut new_labels) = (EventChunk::with_capacity(2 * CHUNK_EVENTS), Vec::new());
    let (mut raw_count, mut kept) = (0usize, Vec::new());
    let mut anchored = false;
    loop {
        let more = generator.step(&mut chunk, &mut new_labels);
        raw_count += new_labels.len();
        kept.extend(clean_labels(&new_labels, opts));
        new_labels.clear();
        // Label frames come in time order: the first kept one at or after the anchor time fixes
        // the grid, as `WindowGrid::from_labels` would over all of them. Until then events wait.
        if !anchored {
            if let Some(b) = kept.iter().find(|b| b.t >= ANCHOR_AFTER_US) {
                let grid = WindowGrid {
                    anchor_us: b.t,
                    step_us: opts.window_us,
                };
                windower.set_grid(grid, sink)?;
                anchored = true;
            }
        }
        if chunk.len() >= CHUNK_EVENTS || !more {
            windower.push(chunk.as_slice(), sink)?;
            chunk.clear();
        }
        if !more {
            break;
        }
    }
    let frames = Frames::group(&kept);
    let windows = windower.finish(WindowGrid::from_labels(&frames.times, opts.window_us), sink)?;
    Ok(assemble_meta(
        name, opts, align, windows, raw_count, &kept, &frames,
    ))
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

fn assemble_meta(
    name: &str,
    opts: &PrepareOptions,
    align: LabelAlign,
    (ends, events): (Vec<i64>, u64),
    boxes_read: usize,
    kept: &[BoxLabel],
    frames: &Frames,
) -> (SequenceMeta, Vec<WindowLabels>) {
    let hcfg = &opts.histogram;
    let scale = if hcfg.downsample_by_2 { 0.5 } else { 1.0 };
    let labels: Vec<WindowLabels> = attach(&frames.times, &ends, align, opts.window_us)
        .into_iter()
        .map(|(window, t_us, frame)| WindowLabels {
            window,
            t_us,
            boxes: frames
                .boxes
                .get(frame)
                .map(|f| {
                    f.iter()
                        .map(|b| LabeledBox {
                            class_id: b.class_id,
                            x: b.x * scale,
                            y: b.y * scale,
                            w: b.w * scale,
                            h: b.h * scale,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let [channels, h, w] = hcfg.shape();
    let (ch, cw) = hcfg.content_size();
    let stats = SequenceStats {
        events,
        boxes_read,
        boxes_kept: kept.len(),
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

/// Streams events into windows on a grid and windows into histograms.
///
/// The grid may be unknown when the first events arrive (a synthetic scene's anchor label comes
/// later); events wait in `pending` until [`Self::set_grid`].
struct Windower {
    window_us: i64,
    hist: StackedHistogram,
    grid: Option<WindowGrid>,
    slicer: Option<WindowSlicer>,
    pending: EventChunk,
    ends: Vec<i64>,
    events: u64,
}

impl Windower {
    fn new(hcfg: &HistogramConfig, window_us: i64) -> Result<Self> {
        Ok(Self {
            window_us,
            hist: StackedHistogram::new(*hcfg)?,
            grid: None,
            slicer: None,
            pending: EventChunk::default(),
            ends: Vec::new(),
            events: 0,
        })
    }

    fn set_grid(&mut self, grid: WindowGrid, sink: &mut impl WindowSink) -> Result<()> {
        if self.grid.is_some() {
            return Ok(());
        }
        self.grid = Some(grid);
        let pending = std::mem::take(&mut self.pending);
        self.feed(pending.as_slice(), sink)
    }

    fn push(&mut self, events: EventSlice<'_>, sink: &mut impl WindowSink) -> Result<()> {
        self.events += events.len() as u64;
        if self.grid.is_none() {
            self.pending.t.extend_from_slice(events.t);
            self.pending.x.extend_from_slice(events.x);
            self.pending.y.extend_from_slice(events.y);
            self.pending.p.extend_from_slice(events.p);
            return Ok(());
        }
        self.feed(events, sink)
    }

    /// Pushes into the slicer (made at the first event) and builds every finished window.
    fn feed(&mut self, events: EventSlice<'_>, sink: &mut impl WindowSink) -> Result<()> {
        let (Some(grid), Some(&first)) = (self.grid, events.t.first()) else {
            return Ok(());
        };
        let slicer = match &mut self.slicer {
            Some(s) => s,
            None => self.slicer.insert(WindowSlicer::new(
                WindowConfig::new(self.window_us).with_first_end(grid.first_end(first)),
            )?),
        };
        slicer.push(events)?;
        drain(slicer, &mut self.hist, &mut self.ends, sink)
    }

    /// Ends the stream; `fallback` is the grid when none was set. Returns the window ends and the
    /// number of events seen.
    fn finish(
        mut self,
        fallback: WindowGrid,
        sink: &mut impl WindowSink,
    ) -> Result<(Vec<i64>, u64)> {
        self.set_grid(fallback, sink)?;
        if let Some(slicer) = &mut self.slicer {
            slicer.finish();
            drain(slicer, &mut self.hist, &mut self.ends, sink)?;
        }
        Ok((self.ends, self.events))
    }
}

fn drain(
    slicer: &mut WindowSlicer,
    hist: &mut StackedHistogram,
    ends: &mut Vec<i64>,
    sink: &mut impl WindowSink,
) -> Result<()> {
    while let Some(w) = slicer.next_window() {
        sink.push_window(hist.build(w.events)?)?;
        ends.push(w.end_us);
    }
    Ok(())
}
