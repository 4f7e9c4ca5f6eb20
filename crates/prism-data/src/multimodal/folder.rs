//! A multimodal dataset folder (layout in the module docs above): its classes, its images with
//! their label files, the seeded train / validation split and the extra test folders.

use std::path::{Path, PathBuf};

use prism_events::synth::rng::SplitMix64;

use super::{io_error, read_image, read_labels, MmDataError, MmImage, MmResult, YoloBox};

/// One image and where its labels are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmSample {
    /// The file name without `.npy`.
    pub stem: String,
    pub image: PathBuf,
    /// `labels/STEM.txt` (it may not exist: no objects).
    pub labels: PathBuf,
}

/// The images of one folder (`images/` + `labels/`).
#[derive(Debug, Clone)]
pub struct MmSplit {
    pub name: String,
    pub samples: Vec<MmSample>,
    /// Images without a label file, read as images without objects (counted, not an error:
    /// the YOLO convention for background images).
    pub unlabelled: usize,
}

/// A dataset folder.
#[derive(Debug, Clone)]
pub struct MmFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    /// `images/` at the root: the pool the train / validation split is drawn from.
    pub pool: MmSplit,
    /// Sub-folders with their own `images/` (e.g. `daytest`, `nighttest`), by name.
    pub tests: Vec<MmSplit>,
}

impl MmFolder {
    /// Opens `root`: reads `classes.txt` and lists the images (sorted by name) of the pool and
    /// of every test folder.
    pub fn open(root: &Path) -> MmResult<Self> {
        let classes_path = root.join("classes.txt");
        let text = std::fs::read_to_string(&classes_path).map_err(io_error(&classes_path))?;
        let classes: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if classes.is_empty() {
            return Err(MmDataError::Folder {
                path: classes_path,
                message: "no class names (one per line)".into(),
            });
        }
        let pool = list_split(root, "train+val")?;
        let mut tests = Vec::new();
        let entries = std::fs::read_dir(root).map_err(io_error(root))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("images").is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            tests.push(list_split(&dir, &name)?);
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            pool,
            tests,
        })
    }

    /// The seeded train / validation split of the pool: a Fisher-Yates shuffle by `seed`
    /// (42 by default), then the first `val_fraction` (0.2) of the images are validation.
    pub fn split(&self, seed: u64, val_fraction: f64) -> (Vec<MmSample>, Vec<MmSample>) {
        let mut order: Vec<usize> = (0..self.pool.samples.len()).collect();
        let mut rng = SplitMix64::new(seed);
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let n_val =
            ((self.pool.samples.len() as f64) * val_fraction.clamp(0.0, 1.0)).round() as usize;
        let pick = |ids: &[usize]| -> Vec<MmSample> {
            let mut v: Vec<MmSample> = ids.iter().map(|&i| self.pool.samples[i].clone()).collect();
            v.sort_by(|a, b| a.stem.cmp(&b.stem));
            v
        };
        let (val, train) = order.split_at(n_val.min(order.len()));
        (pick(train), pick(val))
    }

    /// Reads one sample: its image and its objects (none when it has no label file).
    pub fn load(&self, sample: &MmSample) -> MmResult<(MmImage, Vec<YoloBox>)> {
        let image = read_image(&sample.image)?;
        let boxes = read_labels(&sample.labels, self.classes.len())?.unwrap_or_default();
        Ok((image, boxes))
    }
}

fn list_split(dir: &Path, name: &str) -> MmResult<MmSplit> {
    let images = dir.join("images");
    let entries = std::fs::read_dir(&images).map_err(io_error(&images))?;
    let mut samples = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_error(&images))?.path();
        if path.extension().is_none_or(|e| e != "npy") {
            continue;
        }
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let labels = dir.join("labels").join(format!("{stem}.txt"));
        samples.push(MmSample {
            stem,
            image: path,
            labels,
        });
    }
    samples.sort_by(|a, b| a.stem.cmp(&b.stem));
    if samples.is_empty() {
        return Err(MmDataError::Folder {
            path: images,
            message: "no .npy images".into(),
        });
    }
    let unlabelled = samples.iter().filter(|s| !s.labels.is_file()).count();
    Ok(MmSplit {
        name: name.to_string(),
        samples,
        unlabelled,
    })
}
