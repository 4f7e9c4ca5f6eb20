//! YOLO label files: one object per line, `class x_center y_center width height`, the four
//! numbers normalised to the image size. A missing file means no objects; blank lines are
//! skipped. Anything else that is not a valid object is an error naming the file and line.

use std::path::Path;

use super::{io_error, MmDataError, MmResult};

/// One labelled object, normalised to `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YoloBox {
    pub class: usize,
    pub x_center: f32,
    pub y_center: f32,
    pub width: f32,
    pub height: f32,
}

impl YoloBox {
    /// Corners in pixels of a `width x height` image: `[x1, y1, x2, y2]`.
    pub fn to_pixels(&self, width: usize, height: usize) -> [f32; 4] {
        let (w, h) = (width as f32, height as f32);
        [
            (self.x_center - self.width / 2.0) * w,
            (self.y_center - self.height / 2.0) * h,
            (self.x_center + self.width / 2.0) * w,
            (self.y_center + self.height / 2.0) * h,
        ]
    }
}

/// Reads `path`'s labels (`Ok(None)` when there is no such file).
pub fn read_labels(path: &Path, num_classes: usize) -> MmResult<Option<Vec<YoloBox>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_labels(&text, path, num_classes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Parses label text; `path` names it in errors.
pub fn parse_labels(text: &str, path: &Path, num_classes: usize) -> MmResult<Vec<YoloBox>> {
    let mut boxes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| MmDataError::Label {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 5 {
            return Err(err(format!(
                "expected `class x_center y_center width height`, found {} fields",
                fields.len()
            )));
        }
        let class: usize = fields[0]
            .parse()
            .map_err(|_| err(format!("class {:?} is not a class index", fields[0])))?;
        if class >= num_classes {
            return Err(err(format!(
                "class {class} is not one of the dataset's {num_classes} classes (classes.txt)"
            )));
        }
        let mut v = [0f32; 4];
        for (k, (slot, name)) in v
            .iter_mut()
            .zip(["x_center", "y_center", "width", "height"])
            .enumerate()
        {
            let x: f32 = fields[k + 1]
                .parse()
                .map_err(|_| err(format!("{name} {:?} is not a number", fields[k + 1])))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(err(format!(
                    "{name} {x} is outside [0, 1] (labels are normalised)"
                )));
            }
            *slot = x;
        }
        if v[2] <= 0.0 || v[3] <= 0.0 {
            return Err(err("a box needs a positive width and height".into()));
        }
        boxes.push(YoloBox {
            class,
            x_center: v[0],
            y_center: v[1],
            width: v[2],
            height: v[3],
        });
    }
    Ok(boxes)
}

/// Writes labels in the YOLO format.
pub fn write_labels(path: &Path, boxes: &[YoloBox]) -> MmResult<()> {
    let text: String = boxes
        .iter()
        .map(|b| {
            format!(
                "{} {:.6} {:.6} {:.6} {:.6}\n",
                b.class, b.x_center, b.y_center, b.width, b.height
            )
        })
        .collect();
    std::fs::write(path, text).map_err(io_error(path))
}
