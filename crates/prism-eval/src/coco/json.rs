//! COCO JSON: ground-truth datasets and detection result lists, read, checked and written.
//!
//! Reading accepts what pycocotools accepts for `bbox` evaluation and rejects what would make
//! it crash or silently misbehave, with an error naming the file and the offending entry:
//! duplicate ids, annotations pointing at unknown images or categories, detections on images
//! that are not in the ground truth (pycocotools asserts), non-finite numbers and negative
//! sizes. Two documented leniencies: a missing `area` is taken as `w * h`, a missing `iscrowd`
//! as 0 (pycocotools would raise `KeyError` on both). An annotation's `ignore` field is not
//! read: pycocotools overwrites it with `iscrowd`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

/// Everything that can go wrong reading, checking or writing COCO data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CocoError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The bytes are not JSON of the expected shape.
    #[error("{origin}: not a valid COCO {kind} file: {source}")]
    Json {
        /// The file, or "ground truth" / "detections" for in-memory data.
        origin: String,
        /// "ground-truth" or "detection".
        kind: &'static str,
        /// The parser's message, with line and column.
        source: serde_json::Error,
    },
    /// Two images, categories or annotations share an id.
    #[error("{origin}: duplicate {what} id {id}")]
    DuplicateId {
        /// Where the data came from.
        origin: String,
        /// "image", "category" or "annotation".
        what: &'static str,
        /// The repeated id.
        id: i64,
    },
    /// A ground-truth annotation names an image or category the dataset does not list.
    #[error("{origin}: annotation {annotation_id} refers to unknown {what} id {id}")]
    UnknownReference {
        /// Where the data came from.
        origin: String,
        /// The annotation's id.
        annotation_id: i64,
        /// "image" or "category".
        what: &'static str,
        /// The missing id.
        id: i64,
    },
    /// A detection names an image that is not in the ground truth.
    #[error(
        "{origin}: detection #{index} refers to image id {image_id}, which is not in the ground \
         truth (pycocotools asserts 'Results do not correspond to current coco set')"
    )]
    UnknownDetectionImage {
        /// Where the detections came from.
        origin: String,
        /// Position of the detection in the list (0-based).
        index: usize,
        /// The unknown image id.
        image_id: i64,
    },
    /// A box with a NaN or infinite coordinate, or a negative width or height.
    #[error("{origin}: {item} has bbox {bbox:?}; values must be finite and width, height >= 0")]
    InvalidBox {
        /// Where the data came from.
        origin: String,
        /// "annotation 12" or "detection #3".
        item: String,
        /// The box `[x, y, w, h]`.
        bbox: [f64; 4],
    },
    /// A NaN or infinite score, or a NaN, infinite or negative area.
    #[error("{origin}: {item} has {field} = {value}; it must be finite{extra}", extra = if *field == "area" { " and >= 0" } else { "" })]
    InvalidNumber {
        /// Where the data came from.
        origin: String,
        /// "annotation 12" or "detection #3".
        item: String,
        /// "area" or "score".
        field: &'static str,
        /// The value.
        value: f64,
    },
}

/// One image of a ground-truth dataset. Only `id` matters for evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoImage {
    /// Image id, referenced by annotations and detections.
    pub id: i64,
    /// Width in pixels (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// File name (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

/// One category (class) of a ground-truth dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoCategory {
    /// Category id, referenced by annotations and detections.
    pub id: i64,
    /// Class name.
    #[serde(default)]
    pub name: String,
    /// Parent name (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
}

/// One ground-truth box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CocoAnnotation {
    /// Annotation id, unique in the dataset. pycocotools treats a detection matched to a
    /// ground truth with id 0 as unmatched; this evaluator does the same.
    pub id: i64,
    /// The image it belongs to.
    pub image_id: i64,
    /// Its category.
    pub category_id: i64,
    /// `[x, y, w, h]`, top-left corner and size in pixels.
    pub bbox: [f64; 4],
    /// Area used for the small / medium / large ranges (not recomputed from the box).
    pub area: f64,
    /// Crowd region: never a false negative, may match many detections.
    #[serde(serialize_with = "flag_as_int")]
    pub iscrowd: bool,
}

/// One detection, as in a COCO result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoDetection {
    /// The image it was made on.
    pub image_id: i64,
    /// Its category.
    pub category_id: i64,
    /// `[x, y, w, h]`, top-left corner and size in pixels.
    pub bbox: [f64; 4],
    /// Confidence; higher is ranked first.
    pub score: f64,
}

/// A ground-truth dataset: images, categories and annotations.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CocoGt {
    /// All evaluated images, including those without annotations.
    pub images: Vec<CocoImage>,
    /// Ground-truth boxes, in file order (the order breaks ties in matching).
    pub annotations: Vec<CocoAnnotation>,
    /// The evaluated categories.
    pub categories: Vec<CocoCategory>,
}

fn flag_as_int<S: Serializer>(flag: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*flag))
}

/// `iscrowd` as found in the wild: `0`/`1`, or `false`/`true` (RVT writes booleans).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawFlag {
    Bool(bool),
    Number(f64),
}

#[derive(Deserialize)]
struct RawAnnotation {
    id: i64,
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Option<RawFlag>,
}

#[derive(Deserialize)]
struct RawGt {
    images: Vec<CocoImage>,
    #[serde(default)]
    annotations: Vec<RawAnnotation>,
    categories: Vec<CocoCategory>,
}

fn box_is_valid(b: &[f64; 4]) -> bool {
    b.iter().all(|v| v.is_finite()) && b[2] >= 0.0 && b[3] >= 0.0
}

impl CocoGt {
    /// Parses and checks a ground-truth JSON document; `origin` names it in errors.
    pub fn from_json_slice(bytes: &[u8], origin: &str) -> Result<Self, CocoError> {
        let raw: RawGt = serde_json::from_slice(bytes).map_err(|source| CocoError::Json {
            origin: origin.to_string(),
            kind: "ground-truth",
            source,
        })?;
        let annotations = raw
            .annotations
            .into_iter()
            .map(|a| CocoAnnotation {
                id: a.id,
                image_id: a.image_id,
                category_id: a.category_id,
                bbox: a.bbox,
                area: a.area.unwrap_or(a.bbox[2] * a.bbox[3]),
                iscrowd: match a.iscrowd {
                    None => false,
                    Some(RawFlag::Bool(b)) => b,
                    Some(RawFlag::Number(n)) => n != 0.0,
                },
            })
            .collect();
        let gt = CocoGt {
            images: raw.images,
            annotations,
            categories: raw.categories,
        };
        gt.validate(origin)?;
        Ok(gt)
    }

    /// Checks ids (unique, references resolve) and numbers (finite, sizes and areas >= 0).
    pub fn validate(&self, origin: &str) -> Result<(), CocoError> {
        let dup = |what, id| CocoError::DuplicateId {
            origin: origin.to_string(),
            what,
            id,
        };
        let mut images = HashSet::new();
        for im in &self.images {
            if !images.insert(im.id) {
                return Err(dup("image", im.id));
            }
        }
        let mut categories = HashSet::new();
        for c in &self.categories {
            if !categories.insert(c.id) {
                return Err(dup("category", c.id));
            }
        }
        let mut ids = HashSet::new();
        for a in &self.annotations {
            if !ids.insert(a.id) {
                return Err(dup("annotation", a.id));
            }
            let unknown = |what, id| CocoError::UnknownReference {
                origin: origin.to_string(),
                annotation_id: a.id,
                what,
                id,
            };
            if !images.contains(&a.image_id) {
                return Err(unknown("image", a.image_id));
            }
            if !categories.contains(&a.category_id) {
                return Err(unknown("category", a.category_id));
            }
            if !box_is_valid(&a.bbox) {
                return Err(CocoError::InvalidBox {
                    origin: origin.to_string(),
                    item: format!("annotation {}", a.id),
                    bbox: a.bbox,
                });
            }
            if !(a.area.is_finite() && a.area >= 0.0) {
                return Err(CocoError::InvalidNumber {
                    origin: origin.to_string(),
                    item: format!("annotation {}", a.id),
                    field: "area",
                    value: a.area,
                });
            }
        }
        Ok(())
    }

    /// The dataset as compact COCO JSON (checked first: non-finite numbers have no JSON form).
    pub fn to_json(&self) -> Result<String, CocoError> {
        self.validate("ground truth")?;
        serde_json::to_string(self).map_err(|source| CocoError::Json {
            origin: "ground truth".to_string(),
            kind: "ground-truth",
            source,
        })
    }
}

/// Checks one detection's box and score; `index` is its position in the list.
pub fn validate_detection(
    det: &CocoDetection,
    index: usize,
    origin: &str,
) -> Result<(), CocoError> {
    if !box_is_valid(&det.bbox) {
        return Err(CocoError::InvalidBox {
            origin: origin.to_string(),
            item: format!("detection #{index}"),
            bbox: det.bbox,
        });
    }
    if !det.score.is_finite() {
        return Err(CocoError::InvalidNumber {
            origin: origin.to_string(),
            item: format!("detection #{index}"),
            field: "score",
            value: det.score,
        });
    }
    Ok(())
}

/// Parses and checks a detection result list (`[{image_id, category_id, bbox, score}, ...]`;
/// other fields such as `id`, `area` or `segmentation` are ignored, as pycocotools' `loadRes`
/// recomputes them).
pub fn detections_from_json_slice(
    bytes: &[u8],
    origin: &str,
) -> Result<Vec<CocoDetection>, CocoError> {
    let dets: Vec<CocoDetection> =
        serde_json::from_slice(bytes).map_err(|source| CocoError::Json {
            origin: origin.to_string(),
            kind: "detection",
            source,
        })?;
    for (i, d) in dets.iter().enumerate() {
        validate_detection(d, i, origin)?;
    }
    Ok(dets)
}

/// Detections as a compact COCO result JSON list (checked first).
pub fn detections_to_json(dets: &[CocoDetection]) -> Result<String, CocoError> {
    for (i, d) in dets.iter().enumerate() {
        validate_detection(d, i, "detections")?;
    }
    serde_json::to_string(dets).map_err(|source| CocoError::Json {
        origin: "detections".to_string(),
        kind: "detection",
        source,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CocoError> {
    std::fs::read(path).map_err(|source| CocoError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), CocoError> {
    let io = |source| CocoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.flush().map_err(io)
}

/// Reads a COCO ground-truth file (`instances_*.json` layout).
pub fn load_ground_truth(path: impl AsRef<Path>) -> Result<CocoGt, CocoError> {
    let path = path.as_ref();
    CocoGt::from_json_slice(&read(path)?, &path.display().to_string())
}

/// Reads a COCO detection result file.
pub fn load_detections(path: impl AsRef<Path>) -> Result<Vec<CocoDetection>, CocoError> {
    let path = path.as_ref();
    detections_from_json_slice(&read(path)?, &path.display().to_string())
}

/// Writes a ground-truth dataset as COCO JSON, readable by pycocotools' `COCO(path)`.
pub fn write_ground_truth(path: impl AsRef<Path>, gt: &CocoGt) -> Result<(), CocoError> {
    write(path.as_ref(), &gt.to_json()?)
}

/// Writes detections as a COCO result file, readable by pycocotools' `loadRes(path)`.
/// (pycocotools cannot load an empty list: `loadRes` indexes `anns[0]`.)
pub fn write_detections(path: impl AsRef<Path>, dets: &[CocoDetection]) -> Result<(), CocoError> {
    write(path.as_ref(), &detections_to_json(dets)?)
}
