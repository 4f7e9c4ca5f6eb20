//! Fuzzes the server's request parsing: the HTTP infer body (JSON, and the binary tensor data
//! extension with its header value), the gRPC `ModelInferRequest` message and the event-stream
//! body (binary and JSON). The first byte picks the endpoint and its flags. Every refusal must be
//! a 4xx: a 5xx for a malformed request is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_deploy::server::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let result = match knob % 4 {
        0 => fuzzing::http_infer(None, rest),
        1 => {
            // The header value: the next line of the input, then the body.
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let header = String::from_utf8_lossy(&rest[..end]);
            let body = rest.get(end + 1..).unwrap_or_default();
            fuzzing::http_infer(Some(&header), body)
        }
        2 => fuzzing::grpc_infer(rest),
        _ => fuzzing::stream_events(rest, knob & 4 != 0, knob & 8 != 0),
    };
    if let Err((status, message)) = result {
        assert!((400..500).contains(&status), "{status}: {message}");
    }
});
