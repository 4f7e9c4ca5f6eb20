//! Entry points for the cargo-fuzz targets in `fuzz/`: the server's request parsing, reachable
//! without a model or a socket. Each runs exactly the code the endpoint runs on a body and
//! returns the number of inputs (or events) it decoded, or the refusal's status and message.
//! A refusal that is not a 4xx is a bug: the fuzz targets assert it.

use prost::Message;

use super::protocol::{self, EventsRequest};
use super::{grpc, infer, parse, HttpError};

/// A refusal: its HTTP status (gRPC statuses map from it) and message.
pub type Refusal = (u16, String);

fn refusal(e: HttpError) -> Refusal {
    (e.status, e.message)
}

/// `POST /v2/models/{name}/infer`: `header_length` is the `Inference-Header-Content-Length`
/// value, if sent.
pub fn http_infer(header_length: Option<&str>, body: &[u8]) -> Result<usize, Refusal> {
    infer::decode_request(header_length, &[body])
        .map(|(_, inputs, _)| inputs.len())
        .map_err(refusal)
}

/// `ModelInfer` over gRPC: `message` is the serialized `ModelInferRequest`. A message prost
/// cannot decode is refused by tonic before our code runs, as `Ok(0)` here.
pub fn grpc_infer(message: &[u8]) -> Result<usize, Refusal> {
    let Ok(request) = grpc::proto::ModelInferRequest::decode(message) else {
        return Ok(0);
    };
    grpc::decode_request(&request)
        .map(|(inputs, _)| inputs.len())
        .map_err(refusal)
}

/// `POST /v2/models/{name}/streams/{id}/events`, as binary events or as JSON.
pub fn stream_events(body: &[u8], binary: bool, finish: bool) -> Result<usize, Refusal> {
    let request: EventsRequest = if binary {
        protocol::decode_binary_events(body, finish).map_err(|e| (400, e.to_string()))?
    } else {
        parse(body).map_err(refusal)?
    };
    prism_events::EventSlice::new(&request.t, &request.x, &request.y, &request.p)
        .map(|events| events.len())
        .ok_or_else(|| (400, "event arrays differ in length".to_string()))
}
