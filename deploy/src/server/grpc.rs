//! The KServe v2 gRPC endpoint (`inference.GRPCInferenceService`, `proto/kserve_v2.proto`) on
//! tonic: health, metadata and inference with the same model, worker slots, deadline, sequences
//! and metrics as the HTTP endpoint. Tensors come as `fp32_contents` or `raw_input_contents`;
//! answers are raw little-endian bytes (`raw_output_contents`), as Triton answers.
//!
//! With `--model-repository`, Triton's repository RPCs list, load and unload its models, as the
//! HTTP repository endpoints do.
//!
//! Errors map to gRPC codes: a bad request is `INVALID_ARGUMENT`, an unknown model `NOT_FOUND`,
//! a passed deadline `DEADLINE_EXCEEDED`, too many sequences `RESOURCE_EXHAUSTED`, a stopping
//! server `UNAVAILABLE`.
//!
//! Bounded like the HTTP endpoint: at most [`ServerOptions::max_connections`](super::ServerOptions)
//! connections (more are closed on arrival, `grpc_incoming`) and as many calls in progress at once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Code, Request, Response, Status};

use super::grpc_incoming::CappedIncoming;
use super::infer::{choose_outputs, fp32_shape, run, sequence_flags, Call};
use super::models::Model;
use super::protocol::{f32_from_le_bytes, f32_to_le_bytes, SequenceId};
use super::sequences::{Input, SequenceFlags};
use super::{err, App, HttpError, VERSION};

/// The code generated from `proto/kserve_v2.proto` (package `inference`).
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::infer_parameter::ParameterChoice;
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;
use proto::*;

struct Service {
    app: Arc<App>,
}

/// Serves gRPC on `listener` until `stop` is set; connections still open then get
/// `grace` to finish.
pub(super) async fn serve(
    listener: std::net::TcpListener,
    app: Arc<App>,
    stop: Arc<AtomicBool>,
    grace: Duration,
) {
    let incoming = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => CappedIncoming::new(l, app.options.max_connections),
        Err(e) => {
            tracing::error!("cannot poll the gRPC listener: {e}");
            return;
        }
    };
    let limit = app.options.max_body_bytes;
    // HTTP/2 multiplexes calls on a connection: the calls being decoded or run, over all
    // connections, are bounded like the HTTP endpoint's (one per connection); the others wait
    // with their bodies unread, held back by HTTP/2 flow control.
    let in_progress = tower::limit::GlobalConcurrencyLimitLayer::new(app.options.max_connections);
    let service = GrpcInferenceServiceServer::new(Service { app })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let server = tonic::transport::Server::builder()
        .layer(in_progress)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stopped(stop.clone()));
    tokio::pin!(server);
    let finished = tokio::select! {
        result = server.as_mut() => Some(result),
        () = async {
            stopped(stop).await;
            tokio::time::sleep(grace).await;
        } => None,
    };
    match finished {
        Some(Err(e)) => tracing::error!("gRPC server failed: {e}"),
        Some(Ok(())) => {}
        None => tracing::warn!("closing gRPC connections still open after {grace:?}"),
    }
}

/// Returns once `stop` is set.
async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status(e: HttpError) -> Status {
    let code = match e.status {
        400 | 413 => Code::InvalidArgument,
        404 => Code::NotFound,
        408 => Code::DeadlineExceeded,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.message)
}

/// prism serves one repository, which has no name.
fn check_repository(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        Ok(())
    } else {
        Err(Status::not_found(format!(
            "unknown repository `{name}`: this server has one, named \"\""
        )))
    }
}

impl Service {
    /// Runs `work` on the blocking pool, counted in the metrics under `route`.
    async fn blocking<T: Send + 'static>(
        &self,
        route: &'static str,
        work: impl FnOnce(&App) -> Result<T, HttpError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let app = self.app.clone();
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            app.metrics.begin();
            let result = catch_unwind(AssertUnwindSafe(|| work(&app)))
                .unwrap_or_else(|_| Err(err(500, "internal error")));
            let code = result.as_ref().map_or_else(|e| e.status, |_| 200);
            app.metrics.end(route, code, started.elapsed());
            result
        })
        .await
        .unwrap_or_else(|_| Err(err(500, "internal error")));
        outcome.map(Response::new).map_err(status)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let r = request.into_inner();
        check_repository(&r.repository_name)?;
        self.blocking("repository", move |app| {
            let models = app
                .models
                .index()?
                .into_iter()
                .filter(|m| !r.ready || m.state == "READY")
                .map(|m| repository_index_response::ModelIndex {
                    name: m.name,
                    version: m.version.into(),
                    state: m.state.into(),
                    reason: m.reason,
                })
                .collect();
            Ok(RepositoryIndexResponse { models })
        })
        .await
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let r = request.into_inner();
        check_repository(&r.repository_name)?;
        if let Some(key) = r.parameters.keys().next() {
            return Err(Status::invalid_argument(format!(
                "load parameter `{key}`: prism loads {}.onnx as it is on disk and takes no \
                 configuration or files with the request",
                r.model_name
            )));
        }
        self.blocking("repository", move |app| {
            app.models.load(&r.model_name, &app.options)?;
            Ok(RepositoryModelLoadResponse {})
        })
        .await
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let r = request.into_inner();
        check_repository(&r.repository_name)?;
        if let Some(key) = r.parameters.keys().find(|k| *k != "unload_dependents") {
            return Err(Status::invalid_argument(format!(
                "unload parameter `{key}`: prism takes only `unload_dependents`"
            )));
        }
        self.blocking("repository", move |app| {
            app.models.unload(&r.model_name)?;
            Ok(RepositoryModelUnloadResponse {})
        })
        .await
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        super::check_model(&self.app, &r.name, &r.version).map_err(status)?;
        Ok(Response::new(ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "prism".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: super::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let model = super::check_model(&self.app, &r.name, &r.version).map_err(status)?;
        let e = &model.engine;
        let tensors = |infos: &[crate::engine::TensorInfo]| {
            infos
                .iter()
                .map(|t| TensorMetadata {
                    name: t.name.clone(),
                    datatype: "FP32".into(),
                    shape: t.shape.iter().map(|d| d.map_or(-1, |d| d as i64)).collect(),
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: model.name.clone(),
            versions: vec![VERSION.into()],
            platform: super::platform(e).into(),
            inputs: tensors(e.inputs()),
            outputs: tensors(e.outputs()),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let arrived = Instant::now();
        let r = request.into_inner();
        self.blocking("grpc_infer", move |app| {
            let model = super::check_model(app, &r.model_name, &r.model_version)?;
            let _slot = app.model_slot(&model, arrived)?;
            infer(&model, r, arrived + app.options.deadline)
        })
        .await
    }
}

/// A parameter's value as a sequence id (int64 or string), or a refusal.
fn sequence_id(p: Option<&InferParameter>) -> Result<Option<SequenceId>, HttpError> {
    match p.and_then(|p| p.parameter_choice.as_ref()) {
        None => Ok(None),
        Some(ParameterChoice::Int64Param(n)) => u64::try_from(*n)
            .map(|n| Some(SequenceId::Number(n)))
            .map_err(|_| err(400, format!("sequence_id {n} is negative"))),
        Some(ParameterChoice::StringParam(s)) => Ok(Some(SequenceId::Text(s.clone()))),
        Some(ParameterChoice::BoolParam(_)) => {
            Err(err(400, "sequence_id is a number or a string, not a bool"))
        }
    }
}

fn flag(p: Option<&InferParameter>, name: &str) -> Result<bool, HttpError> {
    match p.and_then(|p| p.parameter_choice.as_ref()) {
        None => Ok(false),
        Some(ParameterChoice::BoolParam(b)) => Ok(*b),
        Some(_) => Err(err(400, format!("{name} is a bool parameter"))),
    }
}

/// A gRPC infer request's inputs (from `contents` or `raw_input_contents`) and the sequence it
/// continues. Every refusal is a 400 (`INVALID_ARGUMENT`).
pub(super) fn decode_request(
    r: &ModelInferRequest,
) -> Result<(Vec<Input>, Option<SequenceFlags>), HttpError> {
    let raw = !r.raw_input_contents.is_empty();
    if raw && r.raw_input_contents.len() != r.inputs.len() {
        return Err(err(
            400,
            format!(
                "{} inputs but {} raw_input_contents; give one per input, in order",
                r.inputs.len(),
                r.raw_input_contents.len()
            ),
        ));
    }
    let mut inputs: Vec<Input> = Vec::with_capacity(r.inputs.len());
    for (i, input) in r.inputs.iter().enumerate() {
        let shape = fp32_shape(&input.name, &input.datatype, &input.shape)?;
        let data = match (&input.contents, raw) {
            (Some(_), true) => {
                return Err(err(
                    400,
                    format!(
                        "input `{}` has contents in a request that uses raw_input_contents",
                        input.name
                    ),
                ))
            }
            (_, true) => f32_from_le_bytes(&r.raw_input_contents[i], &input.name)
                .map_err(|e| err(400, e.to_string()))?,
            (Some(c), false) => c.fp32_contents.clone(),
            (None, false) => {
                return Err(err(400, format!("input `{}` has no contents", input.name)))
            }
        };
        inputs.push((input.name.clone(), shape, data));
    }
    let sequence = sequence_flags(
        sequence_id(r.parameters.get("sequence_id"))?,
        flag(r.parameters.get("sequence_start"), "sequence_start")?,
        flag(r.parameters.get("sequence_end"), "sequence_end")?,
    )?;
    Ok((inputs, sequence))
}

fn infer(
    model: &Model,
    r: ModelInferRequest,
    deadline: Instant,
) -> Result<ModelInferResponse, HttpError> {
    let (inputs, sequence) = decode_request(&r)?;
    let in_sequence = sequence.is_some();
    let outputs = run(
        model,
        Call {
            inputs,
            sequence,
            deadline,
        },
    )?;
    let named = (!r.outputs.is_empty()).then(|| {
        r.outputs
            .iter()
            .map(|o| (o.name.as_str(), ()))
            .collect::<Vec<_>>()
    });
    let chosen = choose_outputs(model, &outputs, named, (), in_sequence)?;
    let mut response = ModelInferResponse {
        model_name: model.name.clone(),
        model_version: VERSION.into(),
        id: r.id,
        ..Default::default()
    };
    for (tensor, ()) in chosen {
        response.outputs.push(InferOutputTensor {
            name: tensor.name.clone(),
            datatype: "FP32".into(),
            shape: tensor.shape.iter().map(|&d| d as i64).collect(),
            ..Default::default()
        });
        let mut bytes = Vec::new();
        f32_to_le_bytes(&tensor.data, &mut bytes);
        response.raw_output_contents.push(bytes.into());
    }
    Ok(response)
}
