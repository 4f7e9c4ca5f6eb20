//! `POST /v2/models/{name}/infer`: KServe v2 / Triton inference on plain tensors, as JSON or with
//! the binary tensor data extension, stateless or as a step of a sequence
//! ([`super::sequences`]).

use std::borrow::Cow;
use std::collections::VecDeque;

use super::http;
use super::models::Model;
use super::protocol::{
    f32_from_le_parts, f32_to_le_bytes, flatten_f32, BinaryDataSize, InferRequest, InferResponse,
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
    let (req, inputs, sequence) =
        decode_request(request.header(HEADER_LENGTH), &request.body.parts())?;
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

/// An HTTP infer body (with the binary extension's header value, if sent; the body as the
/// pieces it arrived in), decoded: the request, its inputs and the sequence it continues. Every
/// refusal is a 400.
pub(super) fn decode_request(
    header_length: Option<&str>,
    body: &[&[u8]],
) -> Result<(InferRequest, Vec<Input>, Option<SequenceFlags>), HttpError> {
    let (json, mut binary) = split_binary(header_length, body)?;
    let req: InferRequest = parse(&json)?;
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
                binary.len
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

/// The JSON part of the body (borrowed when it lies in one piece) and the binary data after
/// it (empty for a JSON-only request).
fn split_binary<'a>(
    header_length: Option<&str>,
    body: &[&'a [u8]],
) -> Result<(Cow<'a, [u8]>, BinaryData<'a>), HttpError> {
    let mut all = BinaryData::new(body);
    let length = match header_length {
        None => all.len,
        Some(length) => {
            let length: usize = length.trim().parse().map_err(|_| {
                err(
                    400,
                    format!("{HEADER_LENGTH} {length:?} is not a number of bytes"),
                )
            })?;
            if length > all.len {
                return Err(err(
                    400,
                    format!(
                        "{HEADER_LENGTH} is {length} but the body has {} bytes",
                        all.len
                    ),
                ));
            }
            length
        }
    };
    let json = match all.take(length).as_slice() {
        [] => Cow::Borrowed(&[][..]),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.concat()),
    };
    Ok((json, all))
}

/// The binary tensor data of a request: the body's pieces after the JSON, taken from the
/// front one input at a time without copying.
struct BinaryData<'a> {
    parts: VecDeque<&'a [u8]>,
    /// Bytes left.
    len: usize,
}

impl<'a> BinaryData<'a> {
    fn new(parts: &[&'a [u8]]) -> Self {
        Self {
            parts: parts.iter().copied().filter(|p| !p.is_empty()).collect(),
            len: parts.iter().map(|p| p.len()).sum(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next `size` bytes (all that is left, if fewer), as pieces.
    fn take(&mut self, size: usize) -> Vec<&'a [u8]> {
        let mut taken = Vec::new();
        let mut left = size.min(self.len);
        self.len -= left;
        while left > 0 {
            let Some(front) = self.parts.pop_front() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                taken.push(front);
            } else {
                let (mine, rest) = front.split_at(left);
                taken.push(mine);
                self.parts.push_front(rest);
                left = 0;
            }
        }
        taken
    }
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
    binary: &mut BinaryData<'_>,
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
                .filter(|&s| s <= binary.len)
                .ok_or_else(|| {
                    err(
                        400,
                        format!(
                            "input `{}`: binary_data_size {size} but {} bytes of binary data are left",
                            input.name,
                            binary.len
                        ),
                    )
                })?;
            f32_from_le_parts(&binary.take(size), &input.name)
                .map_err(|e| err(400, e.to_string()))?
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
    let tensors = chosen
        .iter()
        .map(|&(o, as_binary)| OutputTensor {
            name: &o.name,
            shape: &o.shape,
            datatype: "FP32",
            data: (!as_binary).then_some(o.data.as_slice()),
            parameters: as_binary.then(|| BinaryDataSize {
                binary_data_size: 4 * o.data.len(),
            }),
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
        // The binary outputs go straight after the JSON, in the order the JSON lists them.
        let binary: usize = chosen
            .iter()
            .filter(|c| c.1)
            .map(|c| 4 * c.0.data.len())
            .sum();
        reply.body.reserve_exact(binary);
        for &(o, _) in chosen.iter().filter(|c| c.1) {
            f32_to_le_bytes(&o.data, &mut reply.body);
        }
        reply.content_type = "application/octet-stream";
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A binary request for inputs `a` [2] and `b` [1, 3], and the length of its JSON.
    fn binary_body(a: &[f32; 2], b: &[f32; 3]) -> (Vec<u8>, usize) {
        let json = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"b","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}}]}"#;
        let mut body = json.to_vec();
        f32_to_le_bytes(a, &mut body);
        f32_to_le_bytes(b, &mut body);
        (body, json.len())
    }

    fn decoded(header: Option<&str>, parts: &[&[u8]]) -> Result<Vec<Input>, String> {
        decode_request(header, parts)
            .map(|(_, inputs, _)| inputs)
            .map_err(|e| format!("{} {}", e.status, e.message))
    }

    proptest! {
        /// The body as hyper hands it over, in frames cut anywhere (inside the JSON, inside a
        /// float, between the inputs), decodes to what the whole body decodes to; so does a
        /// body one byte short, to the same refusal.
        #[test]
        fn a_body_in_pieces_decodes_as_the_whole_body(
            cuts in proptest::collection::vec(0usize..200, 0..6),
            a in proptest::array::uniform2(-1e3f32..1e3),
            b in proptest::array::uniform3(-1e3f32..1e3),
        ) {
            let (body, json) = binary_body(&a, &b);
            let header = json.to_string();
            for body in [&body[..], &body[..body.len() - 1]] {
                let parts = super::super::protocol::cut_into_parts(body, &cuts);
                prop_assert_eq!(
                    decoded(Some(&header), &parts),
                    decoded(Some(&header), &[body])
                );
            }
            let whole = decoded(Some(&header), &[&body]);
            prop_assert_eq!(
                whole,
                Ok(vec![
                    ("a".to_string(), vec![2], a.to_vec()),
                    ("b".to_string(), vec![1, 3], b.to_vec()),
                ])
            );
        }
    }

    #[test]
    fn binary_data_past_the_last_input_and_a_short_body_are_refused() {
        let (mut body, json) = binary_body(&[1.0, 2.0], &[3.0, 4.0, 5.0]);
        let header = json.to_string();
        body.extend_from_slice(&[0; 4]);
        let extra = decoded(Some(&header), &[&body[..json + 3], &body[json + 3..]]);
        assert_eq!(
            extra,
            Err("400 4 bytes of binary data follow the last input's binary_data_size".into())
        );
        let short = decoded(Some(&header), &[&body[..body.len() - 8]]);
        assert_eq!(
            short,
            Err("400 input `b`: binary_data_size 12 but 8 bytes of binary data are left".into())
        );
        let too_long = decoded(Some("100000"), &[&body]);
        assert!(too_long.is_err_and(|e| e.contains("but the body has")));
    }
}
