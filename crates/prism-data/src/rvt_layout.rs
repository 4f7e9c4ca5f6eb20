//! RVT's preprocessed datasets, read as they are: the folders RVT's own
//! `scripts/genx/preprocess_dataset.py` writes and its users download, so `prism train` and
//! `prism eval` run on the same files RVT's paper trained on, without preparing them again.
//!
//! ```text
//! <sequence>/labels_v2/labels.npz             labels (boxes, sensor pixels) and
//!                                             objframe_idx_2_label_idx (first box of each frame)
//! <sequence>/labels_v2/timestamps_us.npy      each label frame's time
//! <sequence>/event_representations_v2/<repr>/
//!     event_representations[_ds2_nearest].h5  `data`: u8 [T, 2 * bins, H, W], one HDF5 chunk
//!                                             per window, Blosc (filter 32001) + Zstd, shuffled
//!     timestamps_us.npy                       each window's end
//!     objframe_idx_2_repr_idx.npy             the window each label frame belongs to
//! ```
//!
//! `<repr>` is RVT's representation name, `stacked_histogram_dt=50_nbins=10`: window length and
//! bins come from it. `_ds2_nearest` marks 1Mpx data halved by RVT; its boxes are halved here as
//! RVT's loader halves them. The geometry names the dataset: 240x304 is Gen1 (car, pedestrian),
//! 1Mpx halved to 360x640 is Gen4 (pedestrian, two-wheeler, car); other sensors (datasets
//! released in this layout) get classes `class0..` up to the largest id. Windows are padded at
//! the bottom and right to a multiple of 32, as prism's own preparation pads them.
//!
//! The HDF5 file is read with the pure-Rust `rust-hdf5` crate, whose Blosc filter (frame,
//! byte shuffle, Zstd) needs no system library; the `.npz` archive with the `zip` crate; the
//! `.npy` arrays with prism-events' hardened readers. Every count, index and time is checked
//! against the others: a damaged or inconsistent folder is an error naming the file, never a
//! panic or a silently wrong sequence.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use prism_events::hdf5::catch_hdf5_panic;
use prism_events::labels::{parse_bbox_npy, parse_int_npy};
use prism_events::repr::HistogramConfig;
use prism_events::BoxLabel;
use rust_hdf5::{DatatypeMessage, H5File};

use crate::codec::EncodedHistograms;
use crate::error::{DataError, Result};
use crate::filter::LabelFilter;
use crate::prepare::PrepareOptions;
use crate::prepared::{LabeledBox, PreparedSequence, SequenceMeta, SequenceStats, WindowLabels};

pub const LABELS_DIR: &str = "labels_v2";
pub const REPRESENTATIONS_DIR: &str = "event_representations_v2";
/// The representation RVT's configs use; chosen when a sequence has several.
pub const DEFAULT_REPRESENTATION: &str = "stacked_histogram_dt=50_nbins=10";

/// Most uncompressed histogram bytes one byte of a histogram file may stand for. Real files
/// stay far below it: RVT's Gen1 windows compress about 170:1, and even an all-zero window
/// costs Blosc a few bytes per 64 KiB block plus HDF5's chunk index, about 3000:1.
const MAX_COMPRESSION_RATIO: u64 = 1 << 13;

/// Largest HDF5 chunk read, in cells (RVT writes one window per chunk: 18.4 M cells for a
/// full-resolution 1Mpx window).
const MAX_CHUNK_CELLS: u64 = 1 << 28;

/// Largest `.npy` / `.npz` member read into memory (labels of a long 1Mpx sequence are a few MB).
const MAX_ARRAY_BYTES: u64 = 1 << 30;

/// Whether `dir` is a sequence folder in RVT's preprocessed layout.
pub fn is_rvt_sequence(dir: &Path) -> bool {
    dir.join(LABELS_DIR).is_dir() && dir.join(REPRESENTATIONS_DIR).is_dir()
}

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::RvtLayout {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads one sequence folder. `representation` picks `<repr>`; without it, the only one there,
/// or [`DEFAULT_REPRESENTATION`] when there are several. `split` (`train`, `val`, `test`)
/// records which of RVT's label filters the boxes went through.
pub fn load_rvt_sequence(
    dir: &Path,
    representation: Option<&str>,
    split: &str,
) -> Result<PreparedSequence> {
    let repr_dir = representation_dir(dir, representation)?;
    let repr_name = repr_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (window_us, bins) = parse_representation_name(&repr_name)
        .ok_or_else(|| bad(&repr_dir, format!("representation '{repr_name}' is not a stacked histogram with a fixed window (stacked_histogram_dt=<ms>_nbins=<n>)")))?;

    let (h5_path, downsampled) = histogram_file(&repr_dir)?;
    let histograms = HistogramFile::open(&h5_path)?;
    if histograms.channels != 2 * bins {
        return Err(bad(
            &h5_path,
            format!(
                "{} channels, the representation name says {bins} bins (2 x {bins} channels)",
                histograms.channels
            ),
        ));
    }
    let dataset = Dataset::from_geometry(histograms.height, histograms.width, downsampled);

    let ends_path = repr_dir.join("timestamps_us.npy");
    let window_end_us = read_int_npy(&ends_path)?;
    if window_end_us.len() != histograms.windows {
        return Err(bad(
            &ends_path,
            format!(
                "{} window ends for {} windows in {}",
                window_end_us.len(),
                histograms.windows,
                h5_path.display()
            ),
        ));
    }
    if window_end_us.windows(2).any(|w| w[1] <= w[0]) {
        return Err(bad(&ends_path, "window ends are not increasing"));
    }

    let frames = read_label_frames(dir, &repr_dir, &window_end_us)?;
    let classes = dataset.classes(&frames);
    let scale = if downsampled { 0.5 } else { 1.0 };
    let mut boxes_read = 0;
    let labels: Vec<WindowLabels> = frames
        .into_iter()
        .map(|frame| {
            boxes_read += frame.boxes.len();
            WindowLabels {
                window: frame.window,
                t_us: frame.t_us,
                boxes: frame
                    .boxes
                    .iter()
                    .map(|b| LabeledBox::scaled(b, scale))
                    .collect(),
            }
        })
        .collect();

    let hcfg = HistogramConfig::rvt(dataset.sensor[0], dataset.sensor[1])
        .with_bins(bins)
        .with_downsample(downsampled)
        .with_padding(32);
    let [channels, padded_h, padded_w] = hcfg.shape();
    let encoded = histograms.read_padded(padded_h, padded_w)?;

    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stats = SequenceStats {
        events: 0,
        boxes_read,
        boxes_kept: boxes_read,
        label_frames: labels.len(),
        labeled_windows: labels.len(),
    };
    let meta = SequenceMeta {
        name,
        sensor: [dataset.sensor[0] as u32, dataset.sensor[1] as u32],
        input_hw: [padded_h, padded_w],
        channels,
        window_us,
        downsample: downsampled,
        classes,
        window_end_us,
        content_hw: [histograms.height, histograms.width],
        bins,
        // RVT's configs clip at 10; the files do not record it.
        count_cutoff: hcfg.count_cutoff,
        filter: dataset.filter.for_split(split),
        stats,
    };
    PreparedSequence::from_encoded(meta, labels, encoded).map_err(|e| match e {
        DataError::Invalid(reason) => bad(dir, reason),
        other => other,
    })
}

/// `<dir>/event_representations_v2/<repr>`.
fn representation_dir(dir: &Path, wanted: Option<&str>) -> Result<PathBuf> {
    let root = dir.join(REPRESENTATIONS_DIR);
    if let Some(name) = wanted {
        let path = root.join(name);
        return if path.is_dir() {
            Ok(path)
        } else {
            Err(bad(&root, format!("no representation '{name}'")))
        };
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(&root).map_err(|e| DataError::io(&root, e))? {
        let entry = entry.map_err(|e| DataError::io(&root, e))?;
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    match names.as_slice() {
        [one] => Ok(root.join(one)),
        [] => Err(bad(&root, "no representation folder")),
        _ if names.iter().any(|n| n == DEFAULT_REPRESENTATION) => {
            Ok(root.join(DEFAULT_REPRESENTATION))
        }
        _ => Err(bad(
            &root,
            format!("several representations ({}); name one", names.join(", ")),
        )),
    }
}

/// `stacked_histogram_dt=<ms>_nbins=<n>` -> (window in µs, bins).
pub fn parse_representation_name(name: &str) -> Option<(i64, usize)> {
    let rest = name.strip_prefix("stacked_histogram_dt=")?;
    let (ms, bins) = rest.split_once("_nbins=")?;
    let ms: i64 = ms.parse().ok().filter(|&v| v > 0)?;
    let bins: usize = bins.parse().ok().filter(|&v| v > 0 && v <= 128)?;
    Some((ms.checked_mul(1000)?, bins))
}

/// The histogram file and whether it holds halved (`_ds2_nearest`) windows.
fn histogram_file(repr_dir: &Path) -> Result<(PathBuf, bool)> {
    let full = repr_dir.join("event_representations.h5");
    let halved = repr_dir.join("event_representations_ds2_nearest.h5");
    match (full.is_file(), halved.is_file()) {
        (true, false) => Ok((full, false)),
        (false, true) => Ok((halved, true)),
        (true, true) => Err(bad(
            repr_dir,
            "both event_representations.h5 and event_representations_ds2_nearest.h5; remove one",
        )),
        (false, false) => Err(bad(
            repr_dir,
            "no event_representations.h5 or event_representations_ds2_nearest.h5 (an unfinished file is named *_in_progress.h5)",
        )),
    }
}

/// What the geometry of the windows says about the dataset.
struct Dataset {
    /// Sensor width and height.
    sensor: [usize; 2],
    known_classes: Option<Vec<String>>,
    filter: LabelFilter,
}

impl Dataset {
    fn from_geometry(height: usize, width: usize, downsampled: bool) -> Self {
        let factor = if downsampled { 2 } else { 1 };
        let sensor = [width * factor, height * factor];
        let (known_classes, filter) = match (sensor, downsampled) {
            ([304, 240], false) => (Some(PrepareOptions::gen1().classes), LabelFilter::gen1()),
            ([1280, 720], true) => (Some(PrepareOptions::gen4().classes), LabelFilter::gen4()),
            _ => (None, LabelFilter::none()),
        };
        Self {
            sensor,
            known_classes,
            filter,
        }
    }

    /// Class names by id: the dataset's, or `class0..=max id` for a sensor prism does not know.
    fn classes(&self, frames: &[Frame]) -> Vec<String> {
        if let Some(known) = &self.known_classes {
            return known.clone();
        }
        let max = frames
            .iter()
            .flat_map(|f| f.boxes.iter().map(|b| b.class_id))
            .max()
            .unwrap_or(0);
        (0..=max).map(|i| format!("class{i}")).collect()
    }
}

/// One label frame: its time, its window and its boxes in sensor pixels.
struct Frame {
    t_us: i64,
    window: usize,
    boxes: Vec<BoxLabel>,
}

/// Reads and cross-checks the label files against the window ends.
fn read_label_frames(dir: &Path, repr_dir: &Path, window_end_us: &[i64]) -> Result<Vec<Frame>> {
    let labels_dir = dir.join(LABELS_DIR);
    let npz_path = labels_dir.join("labels.npz");
    let (boxes, first_box) = read_labels_npz(&npz_path)?;
    let times_path = labels_dir.join("timestamps_us.npy");
    let times = read_int_npy(&times_path)?;
    let repr_path = repr_dir.join("objframe_idx_2_repr_idx.npy");
    let repr_idx = read_int_npy(&repr_path)?;
    if first_box.len() != times.len() || repr_idx.len() != times.len() {
        return Err(bad(
            &labels_dir,
            format!(
                "{} label frames in labels.npz, {} in timestamps_us.npy, {} in {}",
                first_box.len(),
                times.len(),
                repr_idx.len(),
                repr_path.display()
            ),
        ));
    }
    let mut frames = Vec::with_capacity(times.len());
    for (i, (&t_us, &window)) in times.iter().zip(&repr_idx).enumerate() {
        let start = first_box[i];
        let end = first_box.get(i + 1).copied().unwrap_or(boxes.len() as i64);
        let range = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .filter(|(s, e)| s < e && *e <= boxes.len())
            .ok_or_else(|| {
                bad(
                    &npz_path,
                    format!(
                        "frame {i}: boxes {start}..{end} of {} (each frame needs at least one box)",
                        boxes.len()
                    ),
                )
            })?;
        let frame_boxes = &boxes[range.0..range.1];
        if let Some(b) = frame_boxes.iter().find(|b| b.t != t_us) {
            return Err(bad(
                &npz_path,
                format!("frame {i} at {t_us} us holds a box at {} us", b.t),
            ));
        }
        let window = usize::try_from(window)
            .ok()
            .filter(|&w| window_end_us.get(w) == Some(&t_us))
            .ok_or_else(|| {
                bad(
                    &repr_path,
                    format!(
                        "frame {i} at {t_us} us points to window {window}, which does not end then"
                    ),
                )
            })?;
        if frames.last().is_some_and(|f: &Frame| f.window >= window) {
            return Err(bad(&repr_path, "label frames are not in window order"));
        }
        frames.push(Frame {
            t_us,
            window,
            boxes: frame_boxes.to_vec(),
        });
    }
    Ok(frames)
}

/// `labels.npz`: the `labels` records and `objframe_idx_2_label_idx`.
fn read_labels_npz(path: &Path) -> Result<(Vec<BoxLabel>, Vec<i64>)> {
    let file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(path, format!("not a .npz archive: {e}")))?;
    let mut member = |name: &str| -> Result<Vec<u8>> {
        let entry = archive
            .by_name(name)
            .map_err(|e| bad(path, format!("{name}: {e}")))?;
        if entry.size() > MAX_ARRAY_BYTES {
            return Err(bad(path, format!("{name} is {} bytes", entry.size())));
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_ARRAY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(path, format!("{name}: {e}")))?;
        Ok(bytes)
    };
    let labels = member("labels.npy")?;
    let first_box = member("objframe_idx_2_label_idx.npy")?;
    let boxes = parse_bbox_npy(&labels).map_err(|e| bad(path, format!("labels.npy: {e}")))?;
    let first_box = parse_int_npy(&first_box)
        .map_err(|e| bad(path, format!("objframe_idx_2_label_idx.npy: {e}")))?;
    Ok((boxes, first_box))
}

fn read_int_npy(path: &Path) -> Result<Vec<i64>> {
    let len = fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if len > MAX_ARRAY_BYTES {
        return Err(bad(
            path,
            format!("{len} bytes is too large for an index array"),
        ));
    }
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_int_npy(&bytes).map_err(|e| bad(path, e.to_string()))
}

/// The windows of one RVT histogram file (`event_representations*.h5`).
#[derive(Debug)]
pub struct RvtHistograms {
    /// `[T, C, H, W]` as stored.
    pub shape: [usize; 4],
    /// Every window zero-padded at the bottom and right to a multiple of `pad_multiple`.
    pub windows: EncodedHistograms,
}

/// Reads an RVT histogram file alone (what [`load_rvt_sequence`] reads for a sequence): the
/// `data` dataset's uint8 `[T, C, H, W]` windows, padded to a multiple of `pad_multiple`.
pub fn read_histogram_file(path: &Path, pad_multiple: usize) -> Result<RvtHistograms> {
    let file = HistogramFile::open(path)?;
    let round = |v: usize| v.div_ceil(pad_multiple.max(1)) * pad_multiple.max(1);
    let windows = file.read_padded(round(file.height), round(file.width))?;
    Ok(RvtHistograms {
        shape: [file.windows, file.channels, file.height, file.width],
        windows,
    })
}

/// The `data` dataset of an RVT histogram file.
struct HistogramFile {
    path: PathBuf,
    file: H5File,
    windows: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl HistogramFile {
    fn open(path: &Path) -> Result<Self> {
        catch_hdf5_panic(|| Self::open_unguarded(path))
            .unwrap_or_else(|reason| Err(bad(path, reason)))
    }

    fn open_unguarded(path: &Path) -> Result<Self> {
        let file = H5File::open(path).map_err(|e| bad(path, format!("open: {e}")))?;
        let ds = file
            .dataset("data")
            .map_err(|e| bad(path, format!("dataset 'data': {e}")))?;
        match ds.datatype().map_err(|e| bad(path, format!("data: {e}")))? {
            DatatypeMessage::FixedPoint {
                size: 1,
                signed: false,
                ..
            } => {}
            other => {
                return Err(bad(
                    path,
                    format!("data is {other:?}; stacked histograms are uint8"),
                ))
            }
        }
        let [windows, channels, height, width] = ds.shape()[..] else {
            return Err(bad(
                path,
                format!("data has shape {:?}, expected [T, C, H, W]", ds.shape()),
            ));
        };
        let shape = [windows, channels, height, width];
        if channels == 0
            || height == 0
            || width == 0
            || channels > 256
            || height > 4096
            || width > 4096
        {
            return Err(bad(path, format!("data has shape {shape:?}")));
        }
        // Compressed windows of zeros are tiny, so the shape alone could ask for terabytes: the
        // cells must fit a generous compression ratio of the file's size.
        let file_len = fs::metadata(path)
            .map_err(|e| DataError::io(path, e))?
            .len();
        let budget = file_len.max(1 << 12).saturating_mul(MAX_COMPRESSION_RATIO);
        let cells = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        if cells.is_none_or(|c| c > budget) {
            return Err(bad(
                path,
                format!(
                    "data has shape {shape:?}, more than a {file_len}-byte file can hold at a ratio of {MAX_COMPRESSION_RATIO}"
                ),
            ));
        }
        // rust-hdf5 allocates each chunk at the size its layout declares before decoding it
        // (0.7.9), and a damaged layout can declare terabytes: refuse what no histogram needs.
        if let Some(chunk) = ds.chunk_dims() {
            let chunk_cells = chunk
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            if chunk_cells.is_none_or(|c| c > MAX_CHUNK_CELLS.min(budget)) {
                return Err(bad(
                    path,
                    format!(
                        "data has chunks of {chunk:?}; at most {MAX_CHUNK_CELLS} cells are read"
                    ),
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            windows,
            channels,
            height,
            width,
        })
    }

    /// Every window, zero-padded at the bottom and right to `padded_h` x `padded_w`, compressed
    /// with prism's codec (a window is read, padded and compressed before the next is read).
    fn read_padded(&self, padded_h: usize, padded_w: usize) -> Result<EncodedHistograms> {
        catch_hdf5_panic(|| self.read_padded_unguarded(padded_h, padded_w))
            .unwrap_or_else(|reason| Err(bad(&self.path, reason)))
    }

    fn read_padded_unguarded(&self, padded_h: usize, padded_w: usize) -> Result<EncodedHistograms> {
        let ds = self
            .file
            .dataset("data")
            .map_err(|e| bad(&self.path, format!("dataset 'data': {e}")))?;
        let (c, h, w) = (self.channels, self.height, self.width);
        let mut window = vec![0u8; c * h * w];
        let mut padded = vec![0u8; c * padded_h * padded_w];
        let mut encoded = EncodedHistograms::new(padded.len());
        for i in 0..self.windows {
            ds.read_slice_into(&mut window, &[i, 0, 0, 0], &[1, c, h, w])
                .map_err(|e| bad(&self.path, format!("window {i}: {e}")))?;
            for (src, dst) in window.chunks_exact(w).zip(
                padded
                    .chunks_exact_mut(padded_w * padded_h)
                    .flat_map(|plane| plane.chunks_exact_mut(padded_w).take(h)),
            ) {
                dst[..w].copy_from_slice(src);
            }
            encoded.push_window(&padded)?;
        }
        Ok(encoded)
    }
}
