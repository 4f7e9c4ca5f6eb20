//! The models a server serves: the one it was started with, or every prism ONNX file of a model
//! repository (`prism serve --model-repository DIR`: `DIR/NAME.onnx` is model `NAME`), which
//! clients list, load and unload while the server runs, as Triton's model repository extension
//! does it (`POST /v2/repository/index`, `POST /v2/repository/models/NAME/load|unload`).
//!
//! Each model has its own event streams, sequences and queue / compute histograms; the worker
//! slots, the deadline and the request metrics are the server's. A request that is running when
//! its model is unloaded finishes on the model it started with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use prism_core::spec::Task;
use serde::Serialize;

use super::batcher::Batcher;
use super::metrics::Histogram;
use super::sequences::Sequences;
use super::{err, HttpError, ServerOptions};
use crate::engine::{Engine, EngineOptions};
use crate::error::{DeployError, Result};
use crate::stream::{StreamDetector, StreamOptions};

/// One served model and the per-client state that belongs to it.
pub(super) struct Model {
    pub name: String,
    pub engine: Arc<Engine>,
    pub streams: Mutex<HashMap<String, Arc<Mutex<StreamDetector>>>>,
    pub sequences: Sequences,
    /// Time from a request's arrival until a worker took it.
    pub queue: Histogram,
    /// Time the model computed for a request.
    pub compute: Histogram,
    /// The dynamic batcher, for a stateless model with a dynamic batch axis when batching is on.
    pub batcher: Option<Batcher>,
}

impl Model {
    /// Checks that the server can run `engine` (a model whose spec cannot be run fails here, not
    /// as a client error on every request).
    pub fn new(name: String, engine: Arc<Engine>, options: &ServerOptions) -> Result<Self> {
        match engine.spec().task {
            Task::EventDetection => {
                let stream = StreamOptions {
                    max_gap_us: options.max_gap_us,
                    ..StreamOptions::default()
                };
                StreamDetector::with_options(engine.clone(), stream)?;
            }
            Task::FrameDetection => {
                crate::frame::FrameDetector::new(engine.clone())?;
            }
            // A next-vector model is served through the plain tensor endpoint: one input, one
            // output, as its spec says.
            Task::NextVector => {
                let spec = engine.spec();
                let (ins, outs) = (engine.inputs(), engine.outputs());
                if ins.len() != 1
                    || outs.len() != 1
                    || ins[0].name != spec.input.name
                    || outs[0].name != spec.output.name
                {
                    return Err(DeployError::BadSpec(format!(
                        "a next-vector model has one input `{}` and one output `{}`; the graph has {} inputs and {} outputs",
                        spec.input.name,
                        spec.output.name,
                        ins.len(),
                        outs.len()
                    )));
                }
            }
        }
        let batchable = engine.spec().state.is_empty()
            && !engine.inputs().is_empty()
            && engine
                .inputs()
                .iter()
                .all(|i| i.shape.first() == Some(&None));
        let batcher = if options.max_batch > 1 && batchable {
            tracing::info!(
                "model {name}: dynamic batching up to {} rows, {:?} queue delay",
                options.max_batch,
                options.max_queue_delay
            );
            Some(
                Batcher::new(engine.clone(), options.max_batch, options.max_queue_delay)
                    .map_err(|e| DeployError::io("batcher thread", e))?,
            )
        } else {
            None
        };
        Ok(Self {
            batcher,
            name,
            engine,
            streams: Mutex::new(HashMap::new()),
            sequences: Sequences::new(options.sequence_idle, options.max_streams),
            queue: Histogram::default(),
            compute: Histogram::default(),
        })
    }
}

/// Where a repository's models come from and how they are run.
struct Repository {
    dir: PathBuf,
    engine: EngineOptions,
}

/// A model of the repository index.
#[derive(Debug, Serialize)]
pub(super) struct IndexEntry {
    pub name: String,
    pub version: &'static str,
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why a model is unavailable: not loaded, or the error of its last load.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The loaded models, and the repository they come from if there is one.
pub(super) struct Models {
    loaded: RwLock<BTreeMap<String, Arc<Model>>>,
    repository: Option<Repository>,
    /// The error of each model's last failed load.
    failures: Mutex<HashMap<String, String>>,
}

/// Repository model names: a file stem of letters, digits, `-`, `_` and `.`, not starting with
/// a dot (so a name never leaves the directory).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Models {
    /// One model, no repository.
    pub fn single(model: Model) -> Self {
        Self {
            loaded: RwLock::new(BTreeMap::from([(model.name.clone(), Arc::new(model))])),
            repository: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Every `*.onnx` file of `dir`, loaded; the first that fails stops the start.
    pub fn repository(dir: &Path, engine: EngineOptions, options: &ServerOptions) -> Result<Self> {
        let models = Self {
            loaded: RwLock::new(BTreeMap::new()),
            repository: Some(Repository {
                dir: dir.to_path_buf(),
                engine,
            }),
            failures: Mutex::new(HashMap::new()),
        };
        let names = models.files()?;
        if names.is_empty() {
            return Err(DeployError::Input(format!(
                "the model repository {} holds no .onnx file",
                dir.display()
            )));
        }
        for name in names {
            models.load_file(&name, options)?;
        }
        Ok(models)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Model>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The loaded models, by name.
    pub fn all(&self) -> Vec<Arc<Model>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The model a request names, or 404 naming the models there are.
    pub fn find(&self, name: &str) -> std::result::Result<Arc<Model>, HttpError> {
        self.get(name).ok_or_else(|| {
            let names: Vec<String> = self.all().iter().map(|m| format!("`{}`", m.name)).collect();
            let has = match names.len() {
                0 => "no model loaded".to_string(),
                1 => format!("this server has {}", names[0]),
                _ => format!("this server has {}", names.join(", ")),
            };
            err(404, format!("unknown model `{name}` ({has})"))
        })
    }

    /// Model names of the repository's `.onnx` files, sorted.
    fn files(&self) -> Result<Vec<String>> {
        let Some(repo) = &self.repository else {
            return Ok(Vec::new());
        };
        let entries = std::fs::read_dir(&repo.dir)
            .map_err(|e| DeployError::io(repo.dir.display().to_string(), e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "onnx"))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The repository index: every model file, and whether it is loaded.
    pub fn index(&self) -> std::result::Result<Vec<IndexEntry>, HttpError> {
        if self.repository.is_none() {
            return Err(err(
                400,
                "this server was started with one model, not a model repository",
            ));
        }
        let files = self.files().map_err(|e| err(500, e.to_string()))?;
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Ok(files
            .into_iter()
            .map(|name| {
                let ready = self.get(&name).is_some();
                let reason = match (ready, failures.get(&name)) {
                    (true, _) => String::new(),
                    (false, Some(e)) => e.clone(),
                    (false, None) => "unloaded".into(),
                };
                IndexEntry {
                    name,
                    version: super::VERSION,
                    state: if ready { "READY" } else { "UNAVAILABLE" },
                    reason,
                }
            })
            .collect())
    }

    /// Loads (or reloads) repository model `name`; on failure a loaded version stays.
    pub fn load(&self, name: &str, options: &ServerOptions) -> std::result::Result<(), HttpError> {
        if self.repository.is_none() {
            return Err(err(
                400,
                "this server was started with one model, not a model repository",
            ));
        }
        if !valid_name(name) {
            return Err(err(
                400,
                format!("`{name}` is not a model name (letters, digits, - _ .)"),
            ));
        }
        self.load_file(name, options).map_err(|e| match e {
            DeployError::Io { .. } => err(404, e.to_string()),
            e => err(400, e.to_string()),
        })
    }

    fn load_file(&self, name: &str, options: &ServerOptions) -> Result<()> {
        let Some(repo) = &self.repository else {
            return Err(DeployError::Input("no model repository".into()));
        };
        let path = repo.dir.join(format!("{name}.onnx"));
        let loaded = if path.is_file() {
            Engine::load(&path, &repo.engine)
                .and_then(|engine| Model::new(name.to_string(), Arc::new(engine), options))
        } else {
            Err(DeployError::io(
                path.display().to_string(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file"),
            ))
        };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match loaded {
            Ok(model) => {
                failures.remove(name);
                self.loaded
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_string(), Arc::new(model));
                tracing::info!("loaded model {name} from {}", path.display());
                Ok(())
            }
            Err(e) => {
                failures.insert(name.to_string(), e.to_string());
                Err(e)
            }
        }
    }

    /// Unloads model `name`: new requests for it get 404, running ones finish.
    pub fn unload(&self, name: &str) -> std::result::Result<(), HttpError> {
        if self.repository.is_none() {
            return Err(err(
                400,
                "this server was started with one model, not a model repository",
            ));
        }
        match self
            .loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
        {
            Some(_) => {
                tracing::info!("unloaded model {name}");
                Ok(())
            }
            None => Err(err(404, format!("model `{name}` is not loaded"))),
        }
    }
}
