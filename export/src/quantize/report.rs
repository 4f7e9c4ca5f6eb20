//! What a quantization did, and how much each quantized node's output moved: the SQNR
//! (signal-to-quantization-noise ratio, dB) of the quantized model's tensor against the float
//! model's, over the calibration windows, with the error of every upstream node included.

use std::fmt::Write as _;

use serde_json::json;
use tract_onnx::pb;

use super::graph::GraphIndex;
use super::observe::Observer;
use super::plan::{KeepReason, Plan};
use super::{CalibrationData, Feeds, Pass, QuantizeError, QuantizeOptions};

/// A node and its op type.
#[derive(Debug, Clone)]
pub struct NodeRef {
    /// Node name.
    pub name: String,
    /// ONNX op type.
    pub op: String,
}

/// SQNR of one quantized node's output.
#[derive(Debug, Clone)]
pub struct NodeSqnr {
    /// The node.
    pub node: NodeRef,
    /// 10 log10(signal energy / error energy); infinite when the output did not move.
    pub sqnr_db: f64,
}

/// What a quantization did.
#[derive(Debug, Clone)]
pub struct QuantReport {
    /// Calibration method name.
    pub method: String,
    /// Calibration windows run.
    pub windows: usize,
    /// Quantized nodes, in graph order.
    pub quantized: Vec<NodeRef>,
    /// Weighted nodes kept in float, and why.
    pub kept: Vec<(NodeRef, KeepReason)>,
    /// Per quantized node, worst first (empty unless asked for).
    pub sqnr: Vec<NodeSqnr>,
}

impl QuantReport {
    pub(crate) fn new(
        index: &GraphIndex<'_>,
        plan: &Plan,
        options: &QuantizeOptions,
        windows: usize,
    ) -> Self {
        let node_ref = |i: usize| NodeRef {
            name: index.node_name(i),
            op: index.node(i).op_type.clone(),
        };
        Self {
            method: options.method.name(),
            windows,
            quantized: plan.quantized.iter().map(|w| node_ref(w.node)).collect(),
            kept: plan
                .kept
                .iter()
                .map(|(i, r)| (node_ref(*i), r.clone()))
                .collect(),
            sqnr: Vec::new(),
        }
    }

    /// The `quantization` object of the model's `prism` metadata.
    pub(crate) fn metadata(&self, options: &QuantizeOptions) -> serde_json::Value {
        json!({
            "format": "qdq",
            "weights": format!(
                "int8 symmetric {}{}",
                if options.per_channel { "per-channel" } else { "per-tensor" },
                if options.reduce_range { ", 7-bit range" } else { "" }
            ),
            "activations": match options.activations {
                super::ActivationType::Int8 => "int8 symmetric",
                super::ActivationType::Uint8 => "uint8 asymmetric",
            },
            "method": self.method,
            "calibration_windows": self.windows,
            "quantized_nodes": self.quantized.len(),
            "float_nodes": self.kept.iter().map(|(n, r)| json!({
                "name": n.name, "op": n.op, "reason": r.describe(),
            })).collect::<Vec<_>>(),
        })
    }

    /// A plain-text summary, with the SQNR table when measured.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "quantized {} nodes ({} calibration windows, {}); {} kept in float",
            self.quantized.len(),
            self.windows,
            self.method,
            self.kept.len()
        );
        for (node, reason) in &self.kept {
            let _ = writeln!(
                s,
                "  float  {:<40} {:<8} {}",
                node.name,
                node.op,
                reason.describe()
            );
        }
        if !self.sqnr.is_empty() {
            let _ = writeln!(
                s,
                "SQNR per quantized node, worst first (dB, higher is better):"
            );
            for n in &self.sqnr {
                let _ = writeln!(s, "  {:>7.2}  {:<40} {}", n.sqnr_db, n.node.name, n.node.op);
            }
        }
        s
    }
}

/// Runs the float and the quantized model side by side and measures each quantized node's
/// output SQNR.
pub(crate) fn measure_sqnr(
    float: &pb::ModelProto,
    quantized: &pb::ModelProto,
    feeds: &Feeds,
    index: &GraphIndex<'_>,
    plan: &Plan,
    data: &mut dyn CalibrationData,
    progress: &mut dyn FnMut(Pass, usize, usize),
) -> Result<Vec<NodeSqnr>, QuantizeError> {
    // The first output of each quantized node.
    let nodes: Vec<(usize, String)> = plan
        .quantized
        .iter()
        .filter_map(|w| {
            index
                .node(w.node)
                .output
                .first()
                .map(|o| (w.node, o.clone()))
        })
        .collect();
    let tensors: Vec<String> = nodes.iter().map(|(_, t)| t.clone()).collect();

    // Both models step through the same windows, each carrying its own state.
    let mut float_obs = Observer::new(float, feeds, &tensors, "float")?;
    let mut quant_obs = Observer::new(quantized, feeds, &tensors, "quantized")?;
    let mut signal = vec![0f64; tensors.len()];
    let mut noise = vec![0f64; tensors.len()];
    let total = data.len();
    for (index, window) in data.windows().enumerate() {
        let window = window.map_err(|source| QuantizeError::Source { index, source })?;
        let expected = float_obs.step(&window)?;
        let got = quant_obs.step(&window)?;
        for (k, (a, b)) in expected.iter().zip(&got).enumerate() {
            for (a, b) in a.iter().zip(b) {
                let (a, b) = (f64::from(*a), f64::from(*b));
                signal[k] += a * a;
                noise[k] += (a - b) * (a - b);
            }
        }
        progress(Pass::Report, index + 1, total);
    }
    let mut out: Vec<NodeSqnr> = nodes
        .iter()
        .enumerate()
        .map(|(k, (node, _))| NodeSqnr {
            node: NodeRef {
                name: index.node_name(*node),
                op: index.node(*node).op_type.clone(),
            },
            sqnr_db: if noise[k] == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (signal[k] / noise[k]).log10()
            },
        })
        .collect();
    out.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
    Ok(out)
}
