//! `prism infer`: run an exported model on a recording and write its detections as JSON lines,
//! optionally drawing every window with its boxes as PNG.
//!
//! Event-detection models (RVT) read any recording prism-events decodes; frame-detection models
//! read a raw little-endian `f32` file holding one input tensor of the spec's shape;
//! next-vector models read a `.npy` of contexts and write the predicted vectors.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use prism_core::spec::Task;
use prism_deploy::stream::{Gap, StreamOptions, StreamSink};
use prism_deploy::{Detection, FrameDetector, StreamDetector, WindowDetections};
use prism_events::viz::{histogram_to_rgb, RgbImage};
use prism_events::{EventChunk, ReaderOptions, SensorSize};
use serde::Serialize;

use super::engine_args::EngineArgs;
use super::progress::Meter;

#[derive(Debug, Args)]
pub struct InferArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The recording (.dat, EVT2/EVT3 .raw, .h5); for frame models a 5-channel `.npy` image, a
    /// folder of them, or a raw f32 tensor file of the input's shape.
    #[arg(long)]
    pub input: PathBuf,
    /// Write detections here as JSON lines (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw every window (frame models: every image, RGB and thermal side by side) with its
    /// boxes as PNG into this directory.
    #[arg(long)]
    pub render: Option<PathBuf>,
    /// Sensor size of a recording that does not declare it (e.g. `304x240`); it must be the
    /// model's. Without it such a recording is read as the model's sensor, with a note.
    #[arg(long, value_parser = super::data::parse_sensor_size)]
    pub sensor: Option<SensorSize>,
    /// The file's format (`dat`, `evt2`, `evt3`, `hdf5`, `aedat4`) when its content cannot tell it:
    /// a DAT file without a `%` header is read only with `--format dat` and `--sensor`.
    #[arg(long)]
    pub format: Option<prism_events::Format>,
    /// A pause in the events longer than this (milliseconds) ends the sequence: the state is
    /// reset, as at the start of a new recording, and the empty windows in between are not run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub max_gap_ms: u64,
    /// Window length in milliseconds for event models (default: the model's, from its
    /// metadata). A model with SSM memory is told the length and keeps its learned dynamics
    /// (`model.memory = "ssm"`); others see histograms of another length than they trained on.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub window_ms: Option<u32>,
}

/// One line of `infer`'s output: a detection of one window, in sensor pixels.
#[derive(Debug, Serialize)]
struct Line<'a> {
    /// End of the window (µs) for event models; 0 for frames.
    t_us: i64,
    window: u64,
    x1: f32,
    y1: f32,
    x2: f32,
    y2: f32,
    score: f32,
    class_id: usize,
    /// The class name from the model's spec (the id when the spec has none for it).
    class: &'a str,
}

pub fn run(args: InferArgs) -> Result<()> {
    let engine = args.engine.load()?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    if let Some(dir) = &args.render {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let classes = engine.spec().classes.clone();
    let started = Instant::now();
    match engine.spec().task {
        Task::NextVector => {
            let count = super::infer_sequence::run(&engine, &args.input, &mut *out)?;
            eprintln!(
                "{count} contexts in {:.2} s on {}",
                started.elapsed().as_secs_f64(),
                engine.backend()
            );
        }
        Task::EventDetection => {
            let rep = engine
                .spec()
                .representation
                .clone()
                .context("the model has no event representation")?;
            let model_sensor = SensorSize {
                width: u16::try_from(rep.sensor_width).context("the model's sensor width")?,
                height: u16::try_from(rep.sensor_height).context("the model's sensor height")?,
            };
            if let Some(s) = args.sensor.filter(|&s| s != model_sensor) {
                bail!(
                    "--sensor {}x{}: the model was trained for a {}x{} sensor",
                    s.width,
                    s.height,
                    model_sensor.width,
                    model_sensor.height
                );
            }
            let opening = || format!("opening {}", args.input.display());
            let named = ReaderOptions {
                format: args.format,
                sensor_size: args.sensor,
                ..ReaderOptions::default()
            };
            let mut reader = prism_events::open_with(&args.input, named).with_context(opening)?;
            match reader.sensor_size() {
                Some(s) if s != model_sensor => bail!(
                    "{} is a {}x{} recording; the model was trained for a {}x{} sensor",
                    args.input.display(),
                    s.width,
                    s.height,
                    model_sensor.width,
                    model_sensor.height
                ),
                Some(_) => {}
                None => {
                    if args.sensor.is_none() {
                        eprintln!(
                            "note: {} declares no sensor size; reading it as the model's {}x{} (--sensor to state it)",
                            args.input.display(),
                            model_sensor.width,
                            model_sensor.height
                        );
                    }
                    // Read again with the sensor, so that events outside it are decoding errors.
                    let options = ReaderOptions {
                        sensor_size: Some(model_sensor),
                        format: args.format,
                        ..ReaderOptions::default()
                    };
                    reader = prism_events::open_with(&args.input, options).with_context(opening)?;
                }
            }
            let stream = StreamOptions {
                max_gap_us: args.max_gap_ms as i64 * 1000,
                window_us: args.window_ms.map(|ms| i64::from(ms) * 1000),
            };
            let mut detector = StreamDetector::with_options(engine.clone(), stream)?;
            let (_, total) = reader.progress();
            let mut sink = InferSink {
                out: &mut *out,
                render: args.render.as_deref(),
                downsample: rep.downsample,
                classes: &classes,
                meter: Meter::new("infer", total),
                windows: 0,
                detections: 0,
                gaps: 0,
                max_gap_ms: args.max_gap_ms,
                pipe_closed: false,
            };
            let mut chunk = EventChunk::default();
            let mut events = 0u64;
            let mut stopped = false;
            while reader
                .read_chunk(&mut chunk)
                .with_context(|| format!("reading {}", args.input.display()))?
            {
                events += chunk.len() as u64;
                stopped = detector.push_chunk(&chunk, &mut sink)?.stopped;
                let (done, _) = reader.progress();
                let (windows, detections) = (sink.windows, sink.detections);
                sink.meter.set(done, || {
                    format!("{windows} windows, {detections} detections")
                });
                if stopped {
                    break;
                }
            }
            if !stopped {
                detector.finish(&mut sink)?;
            }
            sink.meter.finish();
            let (windows, detections, gaps) = (sink.windows, sink.detections, sink.gaps);
            let secs = started.elapsed().as_secs_f64();
            let gap_note = match gaps {
                0 => String::new(),
                1 => format!("; 1 gap longer than {} ms reset the state", args.max_gap_ms),
                n => format!(
                    "; {n} gaps longer than {} ms reset the state",
                    args.max_gap_ms
                ),
            };
            eprintln!(
                "{events} events, {windows} windows, {detections} detections in {secs:.2} s ({:.1} windows/s) on {}{gap_note}",
                windows as f64 / secs.max(1e-9),
                engine.backend()
            );
        }
        Task::FrameDetection
            if args.input.is_dir() || args.input.extension().is_some_and(|e| e == "npy") =>
        {
            let (images, detections) = super::infer_frames::run(
                engine.clone(),
                &args.input,
                args.render.as_deref(),
                |index, name, dets| {
                    super::infer_frames::write_lines(&mut *out, index, name, dets, &classes)
                },
            )?;
            eprintln!(
                "{images} images, {detections} detections in {:.2} s on {}",
                started.elapsed().as_secs_f64(),
                engine.backend()
            );
        }
        Task::FrameDetection => {
            let bytes = std::fs::read(&args.input)
                .with_context(|| format!("reading {}", args.input.display()))?;
            let shape: Vec<usize> = engine
                .spec()
                .input
                .shape
                .iter()
                .map(|d| d.unwrap_or(1))
                .collect();
            let want: usize = shape.iter().product();
            if bytes.len() != want * 4 {
                bail!(
                    "{} holds {} bytes; the model takes one f32 tensor {shape:?} ({} bytes)",
                    args.input.display(),
                    bytes.len(),
                    want * 4
                );
            }
            let image: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let mut detector = FrameDetector::new(engine.clone())?;
            let dets = detector.detect(&image, &shape)?;
            write_detections(&mut *out, 0, 0, dets, &classes).context("writing detections")?;
            eprintln!(
                "{} detections in {:.3} s on {}",
                dets.len(),
                started.elapsed().as_secs_f64(),
                engine.backend()
            );
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing detections"),
    }
}

/// Writes one JSON line per detection.
fn write_detections(
    out: &mut dyn Write,
    t_us: i64,
    window: u64,
    dets: &[Detection],
    classes: &[String],
) -> std::io::Result<()> {
    for d in dets {
        let class = prism_core::detection::class_name(classes, d.class_id);
        let line = Line {
            t_us,
            window,
            x1: d.bbox.x1,
            y1: d.bbox.y1,
            x2: d.bbox.x2,
            y2: d.bbox.y2,
            score: d.score,
            class_id: d.class_id,
            class: &class,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Where `infer`'s windows go: JSON lines, optional frames, progress and gap notes.
struct InferSink<'a> {
    out: &'a mut dyn Write,
    render: Option<&'a std::path::Path>,
    downsample: usize,
    classes: &'a [String],
    meter: Meter,
    windows: u64,
    detections: usize,
    gaps: usize,
    max_gap_ms: u64,
    /// The reader of the output went away (`prism infer | head`): stop quietly.
    pipe_closed: bool,
}

impl StreamSink for InferSink<'_> {
    type Error = anyhow::Error;

    fn window(&mut self, w: &WindowDetections<'_>) -> Result<bool> {
        self.windows += 1;
        self.detections += w.detections.len();
        match write_detections(
            &mut *self.out,
            w.end_us,
            w.index,
            w.detections,
            self.classes,
        ) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.pipe_closed = true;
                return Ok(false);
            }
            other => other.context("writing detections")?,
        }
        if let Some(dir) = self.render {
            render(dir, w, self.downsample)?;
        }
        Ok(true)
    }

    fn gap(&mut self, gap: &Gap) -> Result<bool> {
        self.gaps += 1;
        self.meter.println(&format!(
            "gap of {:.3} s after {:.3} s (longer than --max-gap-ms {}): the sequence ended there and the state was reset",
            gap.duration_us() as f64 * 1e-6,
            gap.last_us as f64 * 1e-6,
            self.max_gap_ms
        ));
        Ok(true)
    }
}

/// Colours of classes 0, 1, … (cycled).
const CLASS_COLOURS: [[u8; 3]; 6] = [
    [255, 255, 0],
    [0, 255, 120],
    [255, 0, 255],
    [0, 255, 255],
    [255, 140, 0],
    [255, 255, 255],
];

/// Smallest width a rendered frame is scaled up to (a 160x128 sensor is too small to look at).
const MIN_FRAME_WIDTH: usize = 640;

/// Draws the window's histogram, scaled up to sensor pixels when the model halves its input and
/// further for small sensors (at least [`MIN_FRAME_WIDTH`] wide), with its boxes, to
/// `dir/window_NNNNNN.png`.
fn render(dir: &std::path::Path, w: &WindowDetections<'_>, downsample: usize) -> Result<()> {
    let [channels, h, width] = w.histogram_shape;
    let small: RgbImage = histogram_to_rgb(w.histogram, channels / 2, h, width, 4)?;
    // Histogram pixels per image pixel, and image pixels per sensor pixel (boxes are in sensor
    // pixels).
    let s = downsample
        .max(1)
        .max(MIN_FRAME_WIDTH.div_ceil(width.max(1)));
    let per_sensor_pixel = s as f32 / downsample.max(1) as f32;
    let mut image = RgbImage::new(width * s, h * s, [0, 0, 0]);
    for (i, pixel) in image.pixels.iter_mut().enumerate() {
        let (x, y) = (i % (width * s) / s, i / (width * s) / s);
        *pixel = small.pixels[y * width + x];
    }
    for d in w.detections {
        let b = d.bbox;
        let colour = CLASS_COLOURS[d.class_id % CLASS_COLOURS.len()];
        let k = per_sensor_pixel;
        image.draw_rect(
            b.x1 * k,
            b.y1 * k,
            (b.x2 - b.x1) * k,
            (b.y2 - b.y1) * k,
            colour,
            s.min(3) as i64,
        );
    }
    let path = dir.join(format!("window_{:06}.png", w.index));
    image
        .write_png(&path)
        .with_context(|| format!("writing {}", path.display()))
}
