//! Which nodes to quantize: every convolution, `MatMul` and `Gemm` with an initializer weight,
//! less the layers kept in float by default (first layer, head outputs, recurrent-cell gates)
//! and those the user excludes.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::graph::GraphIndex;
use super::{Feeds, QuantizeError, QuantizeOptions};

/// Why a quantizable node stays float.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepReason {
    /// It reads the model input through no other weighted layer.
    FirstLayer,
    /// Its output reaches a model output through no other weighted layer.
    Head,
    /// It writes the recurrent state through no other weighted layer (a recurrent cell's gates).
    RecurrentState,
    /// An `exclude` pattern matched it.
    Excluded(String),
}

impl KeepReason {
    /// Short name for reports and metadata.
    pub fn describe(&self) -> String {
        match self {
            Self::FirstLayer => "first layer".into(),
            Self::Head => "output head".into(),
            Self::RecurrentState => "recurrent state".into(),
            Self::Excluded(p) => format!("--exclude {p}"),
        }
    }
}

/// A node with a weight initializer.
#[derive(Debug, Clone)]
pub(crate) struct Weighted {
    /// Node index.
    pub node: usize,
    /// Input index of the activation.
    pub activation: usize,
    /// Input index of the weight.
    pub weight: usize,
    /// Input index of the bias, when it is a 1-D float initializer.
    pub bias: Option<usize>,
    /// The weight's output-channel axis.
    pub channel_axis: usize,
}

/// The quantization plan.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Nodes to quantize, in graph order.
    pub quantized: Vec<Weighted>,
    /// Weighted nodes kept in float, and why.
    pub kept: Vec<(usize, KeepReason)>,
}

impl Plan {
    pub fn new(
        index: &GraphIndex<'_>,
        feeds: &Feeds,
        options: &QuantizeOptions,
    ) -> Result<Self, QuantizeError> {
        let weighted = weighted_nodes(index);
        if weighted.is_empty() {
            return Err(QuantizeError::NothingToQuantize(
                "the graph has no Conv, MatMul or Gemm with an initializer weight".into(),
            ));
        }
        let weighted_set: HashSet<usize> = weighted.iter().map(|w| w.node).collect();
        for name in std::iter::once(&feeds.input)
            .chain(feeds.state.iter().map(|s| &s.input))
            .chain(feeds.duration.iter().map(|d| &d.input))
        {
            if !index.inputs.contains(&name.as_str()) {
                return Err(QuantizeError::Feeds(format!(
                    "the graph has no input {name:?} (inputs: {:?})",
                    index.inputs
                )));
            }
        }
        let first = readers_of(index, &weighted_set, std::iter::once(feeds.input.as_str()));
        // The recurrent cell's gate layers: they write the next state.
        let state = writers_of(
            index,
            &weighted_set,
            feeds.state.iter().map(|s| s.output.as_str()),
        );
        let state_outputs: HashSet<&str> = feeds.state.iter().map(|s| s.output.as_str()).collect();
        let heads = writers_of(
            index,
            &weighted_set,
            index
                .outputs
                .iter()
                .copied()
                .filter(|o| !state_outputs.contains(o)),
        );

        let exclude = patterns("exclude", &options.exclude)?;
        let include = patterns("include", &options.include)?;
        let mut exclude_hits = vec![false; exclude.len()];
        let mut include_hits = vec![false; include.len()];
        let mut quantized = Vec::new();
        let mut kept = Vec::new();
        for w in weighted {
            let node = index.node(w.node);
            let name = index.node_name(w.node);
            let matches = |p: &glob::Pattern| p.matches(&name) || p.matches(&node.op_type);
            if let Some(k) = exclude.iter().position(matches) {
                exclude_hits[k] = true;
                kept.push((w.node, KeepReason::Excluded(options.exclude[k].clone())));
                continue;
            }
            let default = if first.contains(&w.node) {
                Some(KeepReason::FirstLayer)
            } else if heads.contains(&w.node) {
                Some(KeepReason::Head)
            } else if state.contains(&w.node) {
                Some(KeepReason::RecurrentState)
            } else {
                None
            };
            match default {
                Some(reason) => match include.iter().position(matches) {
                    Some(k) => {
                        include_hits[k] = true;
                        quantized.push(w);
                    }
                    None => kept.push((w.node, reason)),
                },
                None => quantized.push(w),
            }
        }
        for (flag, list, hits, what) in [
            (
                "exclude",
                &options.exclude,
                &exclude_hits,
                "quantizable node",
            ),
            (
                "include",
                &options.include,
                &include_hits,
                "node the defaults keep in float",
            ),
        ] {
            if let Some(k) = hits.iter().position(|h| !h) {
                return Err(QuantizeError::PatternMatchesNothing {
                    flag,
                    pattern: list[k].clone(),
                    what,
                });
            }
        }
        if quantized.is_empty() {
            return Err(QuantizeError::NothingToQuantize(format!(
                "all {} weighted nodes are kept in float",
                kept.len()
            )));
        }
        Ok(Self { quantized, kept })
    }

    /// The activation tensors that get a Q/DQ pair: the inputs of quantized nodes, and the
    /// outputs of [`Self::quantized_outputs`]. Sorted, without repeats.
    pub fn activation_tensors(&self, index: &GraphIndex<'_>) -> Vec<String> {
        let mut set: std::collections::BTreeSet<String> = self
            .quantized
            .iter()
            .map(|w| index.node(w.node).input[w.activation].clone())
            .collect();
        set.extend(self.quantized_outputs(index));
        set.into_iter().collect()
    }

    /// Output tensors of quantized nodes: each gets a Q/DQ pair that every consumer reads, so
    /// ONNX Runtime sees `DQ -> Conv -> Q` (and `DQ -> MatMul -> Q`) and fuses it into one int8
    /// kernel; without the `Q` it runs the node in float. (Measured on rvt-tiny: leaving the
    /// `MatMul` outputs float made ONNX Runtime run 48 float `Gemm`s, 1.5x slower.) Model outputs
    /// are never quantized.
    pub fn quantized_outputs(&self, index: &GraphIndex<'_>) -> HashSet<String> {
        self.quantized
            .iter()
            .flat_map(|w| index.node(w.node).output.iter())
            .filter(|o| !index.outputs.contains(o.as_str()))
            .cloned()
            .collect()
    }

    /// Quantized node indices, by node.
    pub fn by_node(&self) -> BTreeMap<usize, &Weighted> {
        self.quantized.iter().map(|w| (w.node, w)).collect()
    }
}

fn patterns(flag: &'static str, list: &[String]) -> Result<Vec<glob::Pattern>, QuantizeError> {
    list.iter()
        .map(|p| {
            glob::Pattern::new(p).map_err(|e| QuantizeError::BadPattern {
                flag,
                pattern: p.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Conv, MatMul and Gemm nodes whose weight is a float initializer and whose activation is not.
fn weighted_nodes(index: &GraphIndex<'_>) -> Vec<Weighted> {
    let is_float_init = |name: &str| {
        index.initializers.get(name).is_some_and(|t| {
            t.data_type == super::graph::dtype::FLOAT && t.external_data.is_empty()
        })
    };
    let mut out = Vec::new();
    for (i, node) in index.graph.node.iter().enumerate() {
        let input = |k: usize| node.input.get(k).map(String::as_str).unwrap_or("");
        let rank = |name: &str| index.initializers.get(name).map_or(0, |t| t.dims.len());
        let one_d_bias = |k: usize| {
            let b = input(k);
            (!b.is_empty() && is_float_init(b) && rank(b) == 1).then_some(k)
        };
        let has_attr = |name: &str, value: i64| {
            node.attribute
                .iter()
                .any(|a| a.name == name && a.i == value)
        };
        let w = match node.op_type.as_str() {
            "Conv" if is_float_init(input(1)) && !index.initializers.contains_key(input(0)) => {
                // A bias that is present but not a 1-D initializer keeps the node float.
                if !input(2).is_empty() && one_d_bias(2).is_none() {
                    continue;
                }
                Weighted {
                    node: i,
                    activation: 0,
                    weight: 1,
                    bias: one_d_bias(2),
                    channel_axis: 0,
                }
            }
            "MatMul"
                if is_float_init(input(1))
                    && rank(input(1)) == 2
                    && !index.initializers.contains_key(input(0)) =>
            {
                Weighted {
                    node: i,
                    activation: 0,
                    weight: 1,
                    bias: None,
                    channel_axis: 1,
                }
            }
            "Gemm"
                if is_float_init(input(1))
                    && !index.initializers.contains_key(input(0))
                    && !has_attr("transA", 1)
                    && node
                        .attribute
                        .iter()
                        .all(|a| !matches!(a.name.as_str(), "alpha" | "beta") || a.f == 1.0) =>
            {
                if !input(2).is_empty() && one_d_bias(2).is_none() {
                    continue;
                }
                Weighted {
                    node: i,
                    activation: 0,
                    weight: 1,
                    bias: one_d_bias(2),
                    channel_axis: if has_attr("transB", 1) { 0 } else { 1 },
                }
            }
            _ => continue,
        };
        out.push(w);
    }
    out
}

/// Weighted nodes reached from `sources` through unweighted nodes only.
fn readers_of<'a>(
    index: &GraphIndex<'_>,
    weighted: &HashSet<usize>,
    sources: impl Iterator<Item = &'a str>,
) -> HashSet<usize> {
    let mut found = HashSet::new();
    let mut seen = HashSet::new();
    let mut queue: VecDeque<String> = sources.map(str::to_string).collect();
    while let Some(tensor) = queue.pop_front() {
        if !seen.insert(tensor.clone()) {
            continue;
        }
        for &c in index.consumers_of(&tensor) {
            if weighted.contains(&c) {
                found.insert(c);
            } else {
                queue.extend(index.node(c).output.iter().cloned());
            }
        }
    }
    found
}

/// Weighted nodes that reach `sinks` through unweighted nodes only.
fn writers_of<'a>(
    index: &GraphIndex<'_>,
    weighted: &HashSet<usize>,
    sinks: impl Iterator<Item = &'a str>,
) -> HashSet<usize> {
    let mut found = HashSet::new();
    let mut seen = HashSet::new();
    let mut queue: VecDeque<String> = sinks.map(str::to_string).collect();
    while let Some(tensor) = queue.pop_front() {
        if !seen.insert(tensor.clone()) {
            continue;
        }
        if let Some(&p) = index.producer.get(tensor.as_str()) {
            if weighted.contains(&p) {
                found.insert(p);
            } else {
                queue.extend(
                    index
                        .node(p)
                        .input
                        .iter()
                        .filter(|i| !i.is_empty())
                        .cloned(),
                );
            }
        }
    }
    found
}
