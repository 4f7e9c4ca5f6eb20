//! Synthetic event scenes with ground-truth boxes, for training detectors and for tests.
//!
//! A scene is a textured background (static, or panning with
//! [`SceneConfig::camera_pan_px_s`]) with moving objects of a few classes (see
//! [`ObjectClass`]). It is rendered as log-intensity frames at [`SceneConfig::render_fps`] and
//! turned into events by an ESIM / v2e style pixel model ([`sensor`]). Boxes of the visible
//! objects come out at [`SceneConfig::label_hz`] as [`BoxLabel`]s.
//!
//! Everything streams ([`SceneGenerator::step`] yields one frame interval at a time), so memory
//! does not grow with duration, and everything is a pure function of [`SceneConfig::seed`].
//! [`write_scene`] produces `<stem>_td.{dat,raw}` + `<stem>_bbox.npy`, the layout of Prophesee's
//! Gen1 / 1Mpx datasets, so real and synthetic data go through the same loaders.

mod background;
mod objects;
pub mod rng;
pub mod sensor;
mod texture;

use std::path::{Path, PathBuf};

use crate::chunk::EventChunk;
use crate::error::{EventError, Result};
use crate::labels::{write_bbox_npy, BoxLabel};
use crate::reader::SensorSize;
use crate::write::{self, WriteFormat};

use background::Background;
pub use objects::ObjectClass;
use objects::{SceneObject, SpawnLimits};
use rng::SplitMix64;
use sensor::{PixelArray, PixelParams};

/// Everything that defines a synthetic scene. Plain data; [`Default`] gives a Gen1-like 160x128
/// scene of 10 s with cars and pedestrians.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneConfig {
    pub width: u16,
    pub height: u16,
    pub duration_us: i64,
    /// Highest render rate of intensity frames (events are interpolated between frames).
    pub render_fps: f64,
    /// Lowest render rate, used when little moves.
    pub min_render_fps: f64,
    /// Frames are spaced so that nothing moves more than this many pixels between two.
    pub max_motion_px: f32,
    /// Objects on screen at any time; one that leaves is replaced by a new track.
    pub num_objects: usize,
    /// Classes to draw objects from, uniformly.
    pub classes: Vec<ObjectClass>,
    /// Range of the pedestrian height as a fraction of the sensor height; other classes scale
    /// from it (a car is 0.6 times as tall and twice as wide as it is tall).
    pub object_size: (f32, f32),
    /// Speed range, pixels per second.
    pub speed_px_s: (f32, f32),
    /// Largest acceleration, pixels per second squared.
    pub max_accel_px_s2: f32,
    /// Share of objects that bounce off the borders (the rest cross and leave).
    pub bounce_fraction: f32,
    pub seed: u64,
    /// Mean ON / OFF contrast thresholds in log intensity.
    pub threshold_pos: f32,
    pub threshold_neg: f32,
    /// Per-pixel threshold mismatch (standard deviation).
    pub threshold_sigma: f32,
    pub refractory_us: i64,
    /// Leak rate per pixel (Hz): the reference drifts by one ON threshold per `1/leak_hz` s.
    pub leak_hz: f32,
    /// Background-activity (shot-noise) rate per pixel, Hz.
    pub shot_noise_hz: f32,
    pub hot_pixel_fraction: f32,
    pub hot_pixel_hz: f32,
    /// Contrast of the background texture (0 = flat grey, 0.4 = strong).
    pub background_contrast: f32,
    /// Background drift in pixels per second, as seen by a panning camera (0 = static camera).
    /// Objects keep their own motion in sensor coordinates.
    pub camera_pan_px_s: (f32, f32),
    /// Offset inside the log: `ln(I + log_eps)` with `I` in `[0, 1]`.
    pub log_eps: f32,
    /// Ground-truth rate; labels at `k / label_hz` for `k >= 1`.
    pub label_hz: f64,
    /// Boxes smaller than this on a side after clipping to the sensor are dropped.
    pub min_box_side: f32,
    /// Boxes with less than this share of their area on the sensor are dropped.
    pub min_visible_fraction: f32,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            width: 160,
            height: 128,
            duration_us: 10_000_000,
            render_fps: 1000.0,
            min_render_fps: 50.0,
            max_motion_px: 0.5,
            num_objects: 4,
            classes: vec![ObjectClass::Car, ObjectClass::Pedestrian],
            object_size: (0.25, 0.5),
            speed_px_s: (15.0, 60.0),
            max_accel_px_s2: 10.0,
            bounce_fraction: 0.5,
            seed: 0,
            threshold_pos: 0.2,
            threshold_neg: 0.2,
            threshold_sigma: 0.03,
            refractory_us: 100,
            leak_hz: 0.1,
            shot_noise_hz: 0.2,
            hot_pixel_fraction: 0.0005,
            hot_pixel_hz: 20.0,
            background_contrast: 0.3,
            camera_pan_px_s: (0.0, 0.0),
            log_eps: 0.02,
            label_hz: 20.0,
            min_box_side: 3.0,
            min_visible_fraction: 0.3,
        }
    }
}

impl SceneConfig {
    pub fn sensor_size(&self) -> SensorSize {
        SensorSize {
            width: self.width,
            height: self.height,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(EventError::InvalidArgument(format!("scene config: {what}")));
        if self.width == 0 || self.height == 0 || self.width > 0x7FFF || self.height > 0x7FFF {
            return bad("width and height must be 1..=32767");
        }
        if usize::from(self.width) * usize::from(self.height) > MAX_SCENE_PIXELS {
            return bad(&format!(
                "{}x{} is more than {MAX_SCENE_PIXELS} pixels (4096x4096), the largest scene generated",
                self.width, self.height
            ));
        }
        if self.num_objects > MAX_SCENE_OBJECTS {
            return bad(&format!(
                "at most {MAX_SCENE_OBJECTS} objects, got {}",
                self.num_objects
            ));
        }
        if self.duration_us <= 0 {
            return bad("duration_us must be positive");
        }
        if !(self.render_fps.is_finite() && (1.0..=1e6).contains(&self.render_fps)) {
            return bad("render_fps must be in 1..=1e6");
        }
        if !(self.min_render_fps.is_finite()
            && (1.0..=self.render_fps).contains(&self.min_render_fps))
        {
            return bad("min_render_fps must be in 1..=render_fps");
        }
        if self.max_motion_px.is_nan() || self.max_motion_px <= 0.0 {
            return bad("max_motion_px must be positive");
        }
        if !(self.label_hz.is_finite() && self.label_hz > 0.0) {
            return bad("label_hz must be positive");
        }
        if self.num_objects > 0 && self.classes.is_empty() {
            return bad("classes is empty but objects are requested");
        }
        let (s0, s1) = self.object_size;
        if !(s0 > 0.0 && s1 >= s0 && s1.is_finite()) {
            return bad("object_size must be 0 < min <= max");
        }
        let (v0, v1) = self.speed_px_s;
        if !(v0 >= 0.0 && v1 >= v0 && v1.is_finite()) {
            return bad("speed_px_s must be 0 <= min <= max");
        }
        if !(self.camera_pan_px_s.0.is_finite() && self.camera_pan_px_s.1.is_finite()) {
            return bad("camera_pan_px_s must be finite");
        }
        if !(self.max_accel_px_s2.is_finite() && self.max_accel_px_s2 >= 0.0) {
            return bad("max_accel_px_s2 must be finite and not negative");
        }
        if self.threshold_pos.is_nan()
            || self.threshold_neg.is_nan()
            || self.threshold_pos <= 0.0
            || self.threshold_neg <= 0.0
        {
            return bad("thresholds must be positive");
        }
        if self.log_eps.is_nan() || self.log_eps <= 0.0 {
            return bad("log_eps must be positive");
        }
        Ok(())
    }
}

/// Largest scene, in pixels: the generator holds several `f32` images of this size.
pub const MAX_SCENE_PIXELS: usize = 4096 * 4096;

/// Most objects in a scene.
pub const MAX_SCENE_OBJECTS: usize = 10_000;

/// A whole scene in memory (see [`generate`]); for long scenes prefer [`write_scene`].
#[derive(Debug, Clone, Default)]
pub struct Scene {
    pub sensor: Option<SensorSize>,
    pub events: EventChunk,
    pub labels: Vec<BoxLabel>,
}

/// Streams a scene one render interval at a time.
#[derive(Debug)]
pub struct SceneGenerator {
    config: SceneConfig,
    width: usize,
    height: usize,
    /// Render frames done so far, after the initial image.
    frames: u64,
    last_frame_t: i64,
    background: Background,
    /// The background as currently seen (redrawn each frame only when the camera pans).
    background_linear: Vec<f32>,
    background_log: Vec<f32>,
    linear: Vec<f32>,
    log: Vec<f32>,
    objects: Vec<SceneObject>,
    limits: SpawnLimits,
    rng: SplitMix64,
    next_track_id: u32,
    /// Index `k` of the next label time `k / label_hz`.
    next_label: u64,
    pixels: PixelArray,
    keys: Vec<u64>,
}

impl SceneGenerator {
    pub fn new(config: SceneConfig) -> Result<Self> {
        config.validate()?;
        let (width, height) = (usize::from(config.width), usize::from(config.height));
        let background = Background::new(config.seed, width, height, config.background_contrast);
        let mut background_linear = vec![0.0; width * height];
        let mut background_log = vec![0.0; width * height];
        background.render(
            0.0,
            0.0,
            width,
            config.log_eps,
            &mut background_linear,
            &mut background_log,
        );
        let limits = SpawnLimits {
            width: width as f32,
            height: height as f32,
            height_px: (
                config.object_size.0 * height as f32,
                config.object_size.1 * height as f32,
            ),
            speed: config.speed_px_s,
            max_accel: config.max_accel_px_s2,
            bounce_fraction: config.bounce_fraction,
        };
        let mut rng = SplitMix64::stream(config.seed, 0x0B_1EC7, 0);
        let mut objects = Vec::with_capacity(config.num_objects);
        for id in 0..config.num_objects {
            let class = pick_class(&config.classes, &mut rng);
            objects.push(SceneObject::spawn(
                id as u32, class, &limits, true, &mut rng,
            ));
        }
        let params = PixelParams {
            threshold_pos: config.threshold_pos,
            threshold_neg: config.threshold_neg,
            threshold_sigma: config.threshold_sigma,
            refractory_us: config.refractory_us,
            leak_hz: config.leak_hz,
            shot_noise_hz: config.shot_noise_hz,
            hot_pixel_fraction: config.hot_pixel_fraction,
            hot_pixel_hz: config.hot_pixel_hz,
        };
        let mut generator = Self {
            width,
            height,
            frames: 0,
            last_frame_t: 0,
            linear: background_linear.clone(),
            log: background_log.clone(),
            background,
            background_linear,
            background_log,
            objects,
            limits,
            rng,
            next_track_id: config.num_objects as u32,
            next_label: 1,
            // Placeholder until the first frame is drawn, just below.
            pixels: PixelArray::new(width, &[], &params, config.seed, 0),
            keys: Vec::new(),
            config,
        };
        generator.render(0);
        generator.pixels =
            PixelArray::new(width, &generator.log, &params, generator.config.seed, 0);
        Ok(generator)
    }

    pub fn sensor_size(&self) -> SensorSize {
        self.config.sensor_size()
    }

    pub fn config(&self) -> &SceneConfig {
        &self.config
    }

    /// Render frames produced so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// End of the next render interval starting at `t0`: short enough that no object moves more
    /// than [`SceneConfig::max_motion_px`], and landing exactly on label times and the end.
    fn next_frame_time(&self, t0: i64) -> i64 {
        let (pan_x, pan_y) = self.config.camera_pan_px_s;
        let fastest = self
            .objects
            .iter()
            .map(SceneObject::fastest_pixel_speed)
            .fold(pan_x.hypot(pan_y), f32::max);
        let shortest = 1e6 / self.config.render_fps;
        let longest = 1e6 / self.config.min_render_fps;
        let dt = if fastest > 0.0 {
            (f64::from(self.config.max_motion_px / fastest) * 1e6).clamp(shortest, longest)
        } else {
            longest
        };
        let mut t1 = t0 + (dt.round() as i64).max(1);
        if let Some(t_label) = self.label_time(self.next_label) {
            if t_label > t0 {
                t1 = t1.min(t_label);
            }
        }
        t1.min(self.config.duration_us)
    }

    /// Advances one render interval: appends its events (sorted by time, then row, polarity,
    /// column) to `events` and the labels that fall due to `labels`. Returns `false`, adding
    /// nothing, once the scene is over.
    pub fn step(&mut self, events: &mut EventChunk, labels: &mut Vec<BoxLabel>) -> bool {
        if self.last_frame_t >= self.config.duration_us {
            return false;
        }
        let t0 = self.last_frame_t;
        let t1 = self.next_frame_time(t0);
        let dt_s = (t1 - t0) as f32 * 1e-6;
        self.move_objects(dt_s);
        self.render(t1);
        self.keys.clear();
        self.pixels.step(t0, t1, &self.log, &mut self.keys);
        self.keys.sort_unstable();
        for &k in &self.keys {
            let (dt, x, y, p) = sensor::unkey(k);
            events.push(t0 + dt, x, y, p);
        }
        self.frames += 1;
        self.last_frame_t = t1;
        while let Some(t_label) = self.label_time(self.next_label).filter(|&t| t <= t1) {
            self.push_labels(t_label, labels);
            self.next_label += 1;
        }
        true
    }

    /// Time of label `k`, none past the end of the scene.
    fn label_time(&self, k: u64) -> Option<i64> {
        let t = (k as f64 * 1e6 / self.config.label_hz).round() as i64;
        (t <= self.config.duration_us).then_some(t)
    }

    fn move_objects(&mut self, dt_s: f32) {
        let (w, h) = (self.width as f32, self.height as f32);
        for i in 0..self.objects.len() {
            self.objects[i].advance(dt_s, w, h);
            if self.objects[i].has_left(w, h) {
                let class = pick_class(&self.config.classes, &mut self.rng);
                let id = self.next_track_id;
                self.next_track_id += 1;
                self.objects[i] = SceneObject::spawn(id, class, &self.limits, false, &mut self.rng);
            }
        }
    }

    fn panning(&self) -> bool {
        self.config.camera_pan_px_s != (0.0, 0.0)
    }

    /// Draws the frame at `t` µs: background, then objects far to near, then refreshes the log
    /// image where they are.
    fn render(&mut self, t: i64) {
        if self.panning() && t > 0 {
            let seconds = t as f32 * 1e-6;
            let (vx, vy) = self.config.camera_pan_px_s;
            let (ox, oy) = (vx * seconds, vy * seconds);
            let (width, eps) = (self.width, self.config.log_eps);
            self.background.render(
                ox,
                oy,
                width,
                eps,
                &mut self.background_linear,
                &mut self.background_log,
            );
        }
        self.linear.copy_from_slice(&self.background_linear);
        self.log.copy_from_slice(&self.background_log);
        let mut order: Vec<usize> = (0..self.objects.len()).collect();
        order.sort_by(|&a, &b| self.objects[a].depth.total_cmp(&self.objects[b].depth));
        let mut dirty = Vec::with_capacity(order.len());
        for i in order {
            if let Some(rect) = self.objects[i].draw(&mut self.linear, self.width, self.height) {
                dirty.push(rect);
            }
        }
        let eps = self.config.log_eps;
        for (x0, y0, x1, y1) in dirty {
            for y in y0..y1 {
                let row = y * self.width;
                for i in row + x0..row + x1 {
                    self.log[i] = (self.linear[i].clamp(0.0, 1.0) + eps).ln();
                }
            }
        }
    }

    /// Appends the boxes of the objects visible enough at `t`.
    fn push_labels(&self, t: i64, labels: &mut Vec<BoxLabel>) {
        let (w, h) = (self.width as f32, self.height as f32);
        let mut boxes: Vec<BoxLabel> = Vec::new();
        for object in &self.objects {
            let (x0, y0, x1, y1) = object.bounds();
            let (cx0, cy0, cx1, cy1) = (x0.max(0.0), y0.max(0.0), x1.min(w), y1.min(h));
            let (bw, bh) = (cx1 - cx0, cy1 - cy0);
            if bw < self.config.min_box_side || bh < self.config.min_box_side {
                continue;
            }
            if bw * bh < self.config.min_visible_fraction * object.w * object.h {
                continue;
            }
            boxes.push(BoxLabel {
                t,
                x: cx0,
                y: cy0,
                w: bw,
                h: bh,
                class_id: object.class.class_id(),
                track_id: object.track_id,
                confidence: 1.0,
            });
        }
        boxes.sort_by_key(|b| b.track_id);
        labels.extend(boxes);
    }
}

fn pick_class(classes: &[ObjectClass], rng: &mut SplitMix64) -> ObjectClass {
    let i = (rng.uniform() * classes.len() as f64) as usize;
    classes
        .get(i.min(classes.len().saturating_sub(1)))
        .copied()
        .unwrap_or(ObjectClass::Car)
}

/// Generates a whole scene in memory.
pub fn generate(config: &SceneConfig) -> Result<Scene> {
    let mut generator = SceneGenerator::new(config.clone())?;
    let mut scene = Scene {
        sensor: Some(generator.sensor_size()),
        ..Scene::default()
    };
    while generator.step(&mut scene.events, &mut scene.labels) {}
    Ok(scene)
}

/// Paths and counts of a scene written by [`write_scene`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneFiles {
    /// `<stem>_td.dat` or `<stem>_td.raw`.
    pub events_path: PathBuf,
    /// `<stem>_bbox.npy`.
    pub labels_path: PathBuf,
    pub events: u64,
    pub labels: usize,
}

/// Events go to the writer in chunks of about this many.
const WRITE_CHUNK_EVENTS: usize = 1 << 16;

/// Generates a scene straight into `<stem>_td.<ext>` (`format`) and `<stem>_bbox.npy`, in
/// bounded memory. `stem` is a path prefix such as `out/scene_0001`.
pub fn write_scene(
    config: &SceneConfig,
    stem: impl AsRef<Path>,
    format: WriteFormat,
) -> Result<SceneFiles> {
    let stem = stem.as_ref();
    let with_suffix = |suffix: &str| {
        let mut name = stem.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let events_path = with_suffix(&format!("_td.{}", format.extension()));
    let labels_path = with_suffix("_bbox.npy");
    let mut generator = SceneGenerator::new(config.clone())?;
    let mut writer = write::create(&events_path, format, generator.sensor_size())?;
    let mut chunk = EventChunk::with_capacity(WRITE_CHUNK_EVENTS * 2);
    let mut labels = Vec::new();
    loop {
        let more = generator.step(&mut chunk, &mut labels);
        if chunk.len() >= WRITE_CHUNK_EVENTS || (!more && !chunk.is_empty()) {
            writer.write_chunk(&chunk)?;
            chunk.clear();
        }
        if !more {
            break;
        }
    }
    writer.finish()?;
    write_bbox_npy(&labels_path, &labels)?;
    Ok(SceneFiles {
        events_path,
        labels_path,
        events: writer.events_written(),
        labels: labels.len(),
    })
}
