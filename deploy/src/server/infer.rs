//! `POST /v2/models/{name}/infer`: KServe v2 / Triton inference on plain tensors, as JSON or with
//! the binary tensor data extension, stateless or as a step of a sequence
//! ([`super::sequences`]).

use super::http;
use super::models::Model;
use super::protocol::{
    f32_from_le_bytes, f32_to_le_bytes, flatten_f32, BinaryDataSize, InferRequest, InferResponse,
    OutputTensor, SequenceId,
};
use super::sequences::{Input, SequenceFlags};
use super::{err, parse, HttpError, Reply, VERSION};
use crate::engine::{Tensor, TensorView};

/// The header that marks a binary tensor data request or response: the JSON's length in bytes.
const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

pub(super) fn infer(
    model: &Model,
    request: &http::Request,
    deadline: std::time::Instant,
) -> Result<Reply, HttpError> {
    let (req, inputs, sequence) = decode_request(request.header(HEADER_LENGTH), &request.body)?;
    let in_sequence = sequence.is_some();
    let outputs = run(
        model,
        Call {
            inputs,
            sequence,
            deadline,
        },
    )?;
    respond(model, &req, &outputs, in_sequence)
}

/// An HTTP infer body (with the binary extension's header value, if sent), decoded: the
/// request, its inputs and the sequence it continues. Every refusal is a 400.
pub(super) fn decode_request(
    header_length: Option<&str>,
    body: &[u8],
) -> Result<(InferRequest, Vec<Input>, Option<SequenceFlags>), HttpError> {
    let (json, mut binary) = split_binary(header_length, body)?;
    let req: InferRequest = parse(json)?;
    let inputs = req
        .inputs
        .iter()
        .map(|input| decode_input(input, &mut binary))
        .collect::<Result<Vec<Input>, HttpError>>()?;
    if !binary.is_empty() {
        return Err(err(
            400,
            format!(
                "{} bytes of binary data follow the last input's binary_data_size",
                binary.len()
            ),
        ));
    }
    let sequence = sequence_flags(
        req.parameters.sequence_id.clone(),
        req.parameters.sequence_start,
        req.parameters.sequence_end,
    )?;
    Ok((req, inputs, sequence))
}

/// A request's inputs, decoded, and the sequence it continues, if any: what the HTTP and the
/// gRPC endpoints hand to [`run`].
pub(super) struct Call {
    pub inputs: Vec<Input>,
    pub sequence: Option<SequenceFlags>,
    /// When the answer is due (a batched request waits for its batch until then).
    pub deadline: std::time::Instant,
}

/// The sequence flags of a request; the sequence parameters without an id are refused.
pub(super) fn sequence_flags(
    id: Option<SequenceId>,
    start: bool,
    end: bool,
) -> Result<Option<SequenceFlags>, HttpError> {
    match id.filter(|id| !id.is_none()) {
        Some(id) => Ok(Some(SequenceFlags { id, start, end })),
        None if start || end => Err(err(
            400,
            "sequence_start and sequence_end need a sequence_id",
        )),
        None => Ok(None),
    }
}

/// Runs the model on a call's inputs, as a step of its sequence or on its own.
pub(super) fn run(model: &Model, mut call: Call) -> Result<Vec<Tensor>, HttpError> {
    fill_duration(model.engine.spec(), &mut call.inputs)?;
    let computing = std::time::Instant::now();
    let outputs = match (&call.sequence, &model.batcher) {
        (Some(flags), _) => model.sequences.run(&model.engine, flags, &call.inputs),
        // Its time is the batch's: the batcher's queue and compute are not this request's.
        (None, Some(batcher)) => return batcher.run(call.inputs, call.deadline),
        (None, None) => {
            let views: Vec<TensorView<'_>> = call
                .inputs
                .iter()
                .map(|(name, shape, data)| TensorView::new(name, shape, data))
                .collect();
            model.engine.run(&views).map_err(HttpError::from)
        }
    };
    model.compute.observe(computing.elapsed());
    outputs
}

/// A model whose memory follows time (the spec's `duration_input`, SSM memory) takes each
/// window's duration in seconds. A request may send it as an ordinary `[1, 1]` input (for
/// windows of another length than the model's); one that leaves it out gets the spec's window
/// length, the length a client cuts its histograms at, as `StreamDetector` does. A duration that
/// is not a finite number of seconds >= 0 is refused.
fn fill_duration(
    spec: &prism_core::spec::ModelSpec,
    inputs: &mut Vec<Input>,
) -> Result<(), HttpError> {
    let Some(name) = &spec.duration_input else {
        return Ok(());
    };
    match inputs.iter().find(|(n, _, _)| n == name) {
        Some((_, _, values)) => {
            if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(err(
                    400,
                    format!("input `{name}`: a window duration is a finite number of seconds >= 0, not {bad}"),
                ));
            }
        }
        None => {
            let batch = inputs
                .iter()
                .find(|(n, _, _)| *n == spec.input.name)
                .and_then(|(_, shape, _)| shape.first().copied())
                .unwrap_or(1);
            inputs.push((
                name.clone(),
                vec![batch, 1],
                vec![spec.default_duration_s(); batch],
            ));
        }
    }
    Ok(())
}

/// The outputs to answer with, each with what the request says about it: the named ones in
/// the order named, else every output (in a sequence, all but the recurrent state) with
/// `default`.
pub(super) fn choose_outputs<'a, T: Copy>(
    model: &Model,
    outputs: &'a [Tensor],
    named: Option<Vec<(&str, T)>>,
    default: T,
    in_sequence: bool,
) -> Result<Vec<(&'a Tensor, T)>, HttpError> {
    let states = &model.engine.spec().state;
    match named {
        Some(named) => named
            .into_iter()
            .map(|(name, how)| {
                outputs
                    .iter()
                    .find(|o| o.name == name)
                    .map(|o| (o, how))
                    .ok_or_else(|| err(400, format!("the model has no output `{name}`")))
            })
            .collect(),
        None => Ok(outputs
            .iter()
            .filter(|o| !in_sequence || !states.iter().any(|s| s.output == o.name))
            .map(|o| (o, default))
            .collect()),
    }
}

/// The JSON part of the body and the binary data after it (empty for a JSON-only request).
fn split_binary<'a>(
    header_length: Option<&str>,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), HttpError> {
    let Some(length) = header_length else {
        return Ok((body, &[]));
    };
    let length: usize = length.trim().parse().map_err(|_| {
        err(
            400,
            format!("{HEADER_LENGTH} {length:?} is not a number of bytes"),
        )
    })?;
    if length > body.len() {
        return Err(err(
            400,
            format!(
                "{HEADER_LENGTH} is {length} but the body has {} bytes",
                body.len()
            ),
        ));
    }
    Ok(body.split_at(length))
}

/// An input's shape, once its datatype is known to be FP32 and no dimension is negative (the
/// checks the HTTP and gRPC endpoints share).
pub(super) fn fp32_shape(
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<Vec<usize>, HttpError> {
    if datatype != "FP32" {
        return Err(err(
            400,
            format!("input `{name}`: datatype {datatype} is not supported; this model takes FP32"),
        ));
    }
    shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            err(
                400,
                format!("input `{name}`: shape {shape:?} has a negative dimension"),
            )
        })
}

/// One input's name, shape and values, from its JSON `data` or from the front of `binary`.
fn decode_input(
    input: &super::protocol::InferInput,
    binary: &mut &[u8],
) -> Result<Input, HttpError> {
    let shape = fp32_shape(&input.name, &input.datatype, &input.shape)?;
    let data = match (&input.data, input.parameters.binary_data_size) {
        (Some(_), Some(_)) => {
            return Err(err(
                400,
                format!(
                    "input `{}` has both data and binary_data_size; give one",
                    input.name
                ),
            ))
        }
        (Some(data), None) => {
            let mut values = Vec::new();
            flatten_f32(data, &mut values, &input.name).map_err(|e| err(400, e.to_string()))?;
            values
        }
        (None, Some(size)) => {
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s <= binary.len())
                .ok_or_else(|| {
                    err(
                        400,
                        format!(
                            "input `{}`: binary_data_size {size} but {} bytes of binary data are left",
                            input.name,
                            binary.len()
                        ),
                    )
                })?;
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            f32_from_le_bytes(mine, &input.name).map_err(|e| err(400, e.to_string()))?
        }
        (None, None) => {
            return Err(err(
                400,
                format!("input `{}` has no data (nor binary_data_size)", input.name),
            ))
        }
    };
    Ok((input.name.clone(), shape, data))
}

/// The answer: the outputs asked for (all but the recurrent state when none are named in a
/// sequence), each as JSON or binary as asked.
fn respond(
    model: &Model,
    req: &InferRequest,
    outputs: &[Tensor],
    in_sequence: bool,
) -> Result<Reply, HttpError> {
    let named = req.outputs.as_ref().map(|wanted| {
        wanted
            .iter()
            .map(|w| {
                let binary = w
                    .parameters
                    .binary_data
                    .unwrap_or(req.parameters.binary_data_output);
                (w.name.as_str(), binary)
            })
            .collect()
    });
    let chosen = choose_outputs(
        model,
        outputs,
        named,
        req.parameters.binary_data_output,
        in_sequence,
    )?;
    let mut binary = Vec::new();
    let tensors = chosen
        .iter()
        .map(|&(o, as_binary)| {
            if as_binary {
                f32_to_le_bytes(&o.data, &mut binary);
            }
            OutputTensor {
                name: &o.name,
                shape: &o.shape,
                datatype: "FP32",
                data: (!as_binary).then_some(o.data.as_slice()),
                parameters: as_binary.then(|| BinaryDataSize {
                    binary_data_size: 4 * o.data.len(),
                }),
            }
        })
        .collect();
    let mut reply = Reply::json(
        200,
        &InferResponse {
            model_name: &model.name,
            model_version: VERSION,
            id: req.id.clone(),
            outputs: tensors,
        },
    );
    if chosen.iter().any(|&(_, b)| b) {
        reply
            .headers
            .push((HEADER_LENGTH, reply.body.len().to_string()));
        reply.body.extend_from_slice(&binary);
        reply.content_type = "application/octet-stream";
    }
    Ok(reply)
}
