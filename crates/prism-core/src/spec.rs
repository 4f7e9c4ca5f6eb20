//! The model spec: JSON stored under the key [`METADATA_KEY`] in an ONNX file's `metadata_props`.
//!
//! It says what the model is (task, classes), how to build its input (event representation, sensor
//! and padded sizes), how to read its output (layout, strides, score threshold, NMS) and which
//! tensors carry recurrent state from one window to the next. A next-vector sequence model
//! ([`Task::NextVector`]) carries none of the detector fields: no classes, strides or
//! post-processing, only its [`SequenceSpec`].

use serde::{Deserialize, Serialize};

/// Key of the spec in `metadata_props`.
pub const METADATA_KEY: &str = "prism";

/// Version of this JSON layout; readers reject versions they do not know.
pub const SPEC_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("model spec is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "model spec version {found} is not supported (this prism reads version {SPEC_VERSION})"
    )]
    Version { found: u32 },
    #[error("model spec is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub spec_version: u32,
    /// Name of the model, e.g. `rvt-tiny-gen1`.
    pub model: String,
    pub task: Task,
    /// Class names in class-index order (detectors only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// The tensor the representation feeds, always NCHW float32.
    pub input: TensorSpec,
    /// How events become the input tensor (event models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub representation: Option<Representation>,
    pub output: OutputSpec,
    /// Recurrent state tensors, carried from one window to the next and zeroed at sequence start.
    #[serde(default)]
    pub state: Vec<StateSpec>,
    /// Graph input that takes the time each window covers, in seconds, as float32 `[N, 1]`:
    /// models whose memory is discretized by time (RVT with `model.memory = "ssm"`). Runtimes
    /// fill it with the window length they cut the events with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_input: Option<String>,
    /// Score threshold and NMS of the decoded detections (detectors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocess: Option<Postprocess>,
    /// Context length and vector width of a next-vector sequence model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceSpec>,
    /// Numeric precision of the graph's weights and arithmetic (fp32 unless the file says so).
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// How an int8 file was quantized (`prism quantize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
}

/// Numeric precision of an exported graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout.
    #[default]
    Fp32,
    /// float16 weights and arithmetic, float32 inputs and outputs.
    Fp16,
    /// int8 QDQ (QuantizeLinear / DequantizeLinear) around the weighted layers.
    Int8,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Self::Fp32
    }

    /// `fp32`, `fp16` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
            Self::Int8 => "int8",
        }
    }
}

/// How a model was quantized, as `prism quantize` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// `qdq`.
    pub format: String,
    /// e.g. `int8 symmetric per-channel`.
    pub weights: String,
    /// e.g. `int8 symmetric`.
    pub activations: String,
    /// Calibration method, e.g. `entropy`.
    pub method: String,
    /// Windows (or images) the ranges were calibrated on.
    pub calibration_windows: usize,
    /// Weighted nodes quantized.
    pub quantized_nodes: usize,
    /// Weighted nodes left in float, and why.
    #[serde(default)]
    pub float_nodes: Vec<FloatNode>,
}

/// A weighted node a quantized model keeps in float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatNode {
    pub name: String,
    pub op: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A recurrent detector over event windows (RVT).
    EventDetection,
    /// A single-tensor detector (one frame in, detections out).
    FrameDetection,
    /// A sequence model: a context of vectors `[N, context, dim]` in, the predicted next vector
    /// `[N, dim]` (unit length) out.
    NextVector,
}

impl Task {
    /// Whether the model's output is YOLOX detections (classes, strides, NMS apply).
    pub fn is_detection(self) -> bool {
        matches!(self, Self::EventDetection | Self::FrameDetection)
    }
}

/// What a next-vector model reads and writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceSpec {
    /// Vectors of context the model reads (the input's axis 1).
    pub context: usize,
    /// Width of every vector, in and out (the input's axis 2).
    pub dim: usize,
    /// The architecture, e.g. `mlp`, `lstm`, `transformer`.
    pub architecture: String,
    /// True when the output is L2-normalised (compare it by cosine or dot product).
    pub normalized: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// Shape with the batch axis first; `None` marks a dynamic axis.
    pub shape: Vec<Option<usize>>,
}

/// RVT's stacked histogram: `[2 * bins, H, W]`, OFF channels first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Representation {
    pub kind: RepresentationKind,
    pub bins: usize,
    /// Window length in microseconds (RVT: 50 ms).
    pub window_us: i64,
    pub count_cutoff: u8,
    /// Sensor width and height in pixels.
    pub sensor_width: usize,
    pub sensor_height: usize,
    /// 2 for RVT's 1Mpx `nearest-exact` ×0.5 downsampling, else 1.
    pub downsample: usize,
    /// Network input size after downsampling and zero padding at bottom / right.
    pub padded_width: usize,
    pub padded_height: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepresentationKind {
    StackedHistogram,
}

/// The detections output `[N, A, 5 + K]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    /// YOLOX strides of the anchor-free grid levels, in output order (detectors only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strides: Vec<usize>,
    /// True when the graph already decodes (grid + stride, exp sizes, sigmoid scores); false when
    /// it emits raw head outputs that [`crate::yolox::decode_rows`] decodes.
    #[serde(default)]
    pub decoded: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSpec {
    /// Graph input that receives the state of the previous window.
    pub input: String,
    /// Graph output that holds the state after this window.
    pub output: String,
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Postprocess {
    /// Detections scoring below (objectness × class score) are dropped.
    pub score_threshold: f32,
    /// IoU above which class-aware NMS suppresses the lower-scoring box.
    pub nms_iou: f32,
    /// Most detections kept per image after NMS.
    pub max_detections: usize,
}

impl Default for Postprocess {
    fn default() -> Self {
        Self {
            score_threshold: 0.1,
            nms_iou: 0.45,
            max_detections: 300,
        }
    }
}

impl ModelSpec {
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a spec read from a model file.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        let version: serde_json::Value = serde_json::from_str(json)?;
        let found = version
            .get("spec_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != SPEC_VERSION {
            return Err(SpecError::Version { found });
        }
        let spec: ModelSpec = serde_json::from_str(json)?;
        spec.validate()?;
        Ok(spec)
    }

    /// What a runtime feeds [`Self::duration_input`] when nothing says otherwise: the window
    /// length of the representation, in seconds (50 ms for a model without one).
    pub fn default_duration_s(&self) -> f32 {
        self.representation
            .as_ref()
            .map_or(0.05, |r| r.window_us as f32 / 1e6)
    }

    /// Number of anchor points the output holds for the padded input size.
    pub fn num_anchors(&self) -> Option<usize> {
        let (h, w) = self.input_hw()?;
        Some(crate::yolox::num_anchors([h, w], &self.output.strides))
    }

    /// Input height and width (static axes 2 and 3).
    pub fn input_hw(&self) -> Option<(usize, usize)> {
        match self.input.shape.as_slice() {
            [_, _, Some(h), Some(w)] => Some((*h, *w)),
            _ => None,
        }
    }

    /// The post-processing of a detector (the defaults when the file has none).
    pub fn postprocess(&self) -> Postprocess {
        self.postprocess.clone().unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        match self.task {
            Task::NextVector => self.validate_sequence(),
            Task::EventDetection | Task::FrameDetection => self.validate_detector(),
        }
    }

    /// A next-vector model: `[N, context, dim]` in, `[N, dim]` out, nothing a detector has.
    fn validate_sequence(&self) -> Result<(), SpecError> {
        let invalid = |m: String| Err(SpecError::Invalid(m));
        let Some(seq) = &self.sequence else {
            return invalid("a next-vector model needs a sequence section".into());
        };
        if seq.context == 0 || seq.dim == 0 {
            return invalid("sequence context and dim must be positive".into());
        }
        match self.input.shape.as_slice() {
            [_, Some(c), Some(d)] if *c == seq.context && *d == seq.dim => {}
            shape => {
                return invalid(format!(
                    "input {} has shape {shape:?}, the sequence section says [N, {}, {}]",
                    self.input.name, seq.context, seq.dim
                ))
            }
        }
        if !self.classes.is_empty()
            || !self.output.strides.is_empty()
            || self.postprocess.is_some()
            || self.representation.is_some()
            || !self.state.is_empty()
            || self.duration_input.is_some()
        {
            return invalid(
                "a next-vector model has no classes, strides, post-processing, representation, state or duration input"
                    .into(),
            );
        }
        Ok(())
    }

    fn validate_detector(&self) -> Result<(), SpecError> {
        let invalid = |m: String| Err(SpecError::Invalid(m));
        if self.sequence.is_some() {
            return invalid("a detector has no sequence section".into());
        }
        if self.classes.is_empty() {
            return invalid("no classes".into());
        }
        if self.input.shape.len() != 4 {
            return invalid(format!("input {} must be NCHW", self.input.name));
        }
        let Some((h, w)) = self.input_hw() else {
            return invalid("input height and width must be static".into());
        };
        if self.output.strides.is_empty()
            || self
                .output
                .strides
                .iter()
                .any(|&s| s == 0 || h % s != 0 || w % s != 0)
        {
            return invalid(format!(
                "strides {:?} must divide the input size {h}x{w}",
                self.output.strides
            ));
        }
        if let Some(r) = &self.representation {
            let channels = self.input.shape[1];
            if channels != Some(2 * r.bins) {
                return invalid(format!(
                    "input has {channels:?} channels, the histogram has 2 x {} bins",
                    r.bins
                ));
            }
            if r.downsample == 0 || r.window_us <= 0 {
                return invalid("downsample and window_us must be positive".into());
            }
            let (dw, dh) = (
                r.sensor_width.div_ceil(r.downsample),
                r.sensor_height.div_ceil(r.downsample),
            );
            if r.padded_width != w || r.padded_height != h || dw > w || dh > h {
                return invalid(format!(
                    "sensor {}x{} / {} does not fit the padded input {}x{} (graph input {w}x{h})",
                    r.sensor_width, r.sensor_height, r.downsample, r.padded_width, r.padded_height
                ));
            }
        }
        if self.task == Task::EventDetection && self.representation.is_none() {
            return invalid("an event-detection model needs a representation".into());
        }
        if let Some(name) = &self.duration_input {
            if self.task != Task::EventDetection {
                return invalid(format!(
                    "duration input `{name}`: only an event-detection model takes window durations"
                ));
            }
            if *name == self.input.name || self.state.iter().any(|s| s.input == *name) {
                return invalid(format!(
                    "duration input `{name}` is also the model's input or a state input"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rvt_tiny_gen1() -> ModelSpec {
        ModelSpec {
            spec_version: SPEC_VERSION,
            model: "rvt-tiny-gen1".into(),
            task: Task::EventDetection,
            classes: vec!["car".into(), "pedestrian".into()],
            input: TensorSpec {
                name: "histogram".into(),
                shape: vec![Some(1), Some(20), Some(256), Some(320)],
            },
            representation: Some(Representation {
                kind: RepresentationKind::StackedHistogram,
                bins: 10,
                window_us: 50_000,
                count_cutoff: 10,
                sensor_width: 304,
                sensor_height: 240,
                downsample: 1,
                padded_width: 320,
                padded_height: 256,
            }),
            output: OutputSpec {
                name: "detections".into(),
                strides: vec![8, 16, 32],
                decoded: false,
            },
            state: vec![StateSpec {
                input: "h1".into(),
                output: "h1_out".into(),
                shape: vec![1, 32, 64, 80],
            }],
            duration_input: None,
            postprocess: Some(Postprocess::default()),
            sequence: None,
            precision: Precision::Fp32,
            quantization: None,
        }
    }

    #[test]
    fn json_round_trip() {
        let spec = rvt_tiny_gen1();
        let back = ModelSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(spec, back);
        assert_eq!(back.num_anchors(), Some(1680));
    }

    #[test]
    fn rejects_unknown_version_and_bad_json() {
        let mut spec = rvt_tiny_gen1();
        spec.spec_version = 99;
        assert!(matches!(
            ModelSpec::from_json(&spec.to_json()),
            Err(SpecError::Version { found: 99 })
        ));
        assert!(matches!(ModelSpec::from_json("{"), Err(SpecError::Json(_))));
    }

    #[test]
    fn rejects_inconsistent_sizes() {
        let mut spec = rvt_tiny_gen1();
        spec.output.strides = vec![8, 16, 48];
        assert!(ModelSpec::from_json(&spec.to_json()).is_err());
        let mut spec = rvt_tiny_gen1();
        spec.input.shape[1] = Some(18);
        assert!(ModelSpec::from_json(&spec.to_json()).is_err());
        let mut spec = rvt_tiny_gen1();
        if let Some(r) = spec.representation.as_mut() {
            r.sensor_width = 400;
        }
        assert!(ModelSpec::from_json(&spec.to_json()).is_err());
    }

    fn seq_mlp() -> ModelSpec {
        ModelSpec {
            spec_version: SPEC_VERSION,
            model: "seq-mlp".into(),
            task: Task::NextVector,
            classes: Vec::new(),
            input: TensorSpec {
                name: "context".into(),
                shape: vec![None, Some(5), Some(384)],
            },
            representation: None,
            output: OutputSpec {
                name: "next".into(),
                strides: Vec::new(),
                decoded: false,
            },
            state: Vec::new(),
            duration_input: None,
            postprocess: None,
            sequence: Some(SequenceSpec {
                context: 5,
                dim: 384,
                architecture: "mlp".into(),
                normalized: true,
            }),
            precision: Precision::Fp32,
            quantization: None,
        }
    }

    #[test]
    fn next_vector_spec_has_no_detector_fields() {
        let spec = seq_mlp();
        let json = spec.to_json();
        for field in ["classes", "strides", "postprocess", "representation"] {
            assert!(!json.contains(field), "{field} in {json}");
        }
        assert!(json.contains("\"task\":\"next-vector\""), "{json}");
        assert_eq!(ModelSpec::from_json(&json).unwrap(), spec);
    }

    #[test]
    fn next_vector_spec_must_agree_with_its_input() {
        let mut spec = seq_mlp();
        spec.input.shape = vec![None, Some(4), Some(384)];
        assert!(ModelSpec::from_json(&spec.to_json()).is_err());
        let mut spec = seq_mlp();
        spec.classes = vec!["car".into()];
        assert!(ModelSpec::from_json(&spec.to_json()).is_err());
        let mut spec = seq_mlp();
        spec.sequence = None;
        assert!(ModelSpec::from_json(&spec.to_json()).is_err());
        // A detector's spec still needs its classes and post-processing fields to be valid.
        let mut detector = rvt_tiny_gen1();
        detector.sequence = seq_mlp().sequence;
        assert!(ModelSpec::from_json(&detector.to_json()).is_err());
    }
}
