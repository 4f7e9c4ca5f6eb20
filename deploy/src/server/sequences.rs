//! Stateful sequences on the ordinary infer call, the way Triton's sequence batcher does them:
//! a request with a `sequence_id` parameter gives only the model's ordinary inputs, and the
//! server supplies the recurrent state that sequence's previous request produced (zeros on
//! `sequence_start`), keeps the new state, and frees it on `sequence_end` or after the sequence
//! has been idle for [`super::ServerOptions::sequence_idle`].
//!
//! Requests of one sequence run one at a time, in arrival order; different sequences run in
//! parallel. The state outputs are the server's business: they are left out of the answer unless
//! the request names them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prism_core::spec::StateSpec;

use super::protocol::SequenceId;
use super::{err, HttpError};
use crate::engine::{Engine, Tensor, TensorView};

/// One sequence's recurrent state, one buffer per [`StateSpec`], in the spec's order.
struct Sequence {
    state: Vec<Vec<f32>>,
    last_used: Instant,
}

/// The open sequences of one model.
pub(super) struct Sequences {
    open: Mutex<HashMap<SequenceId, Arc<Mutex<Sequence>>>>,
    idle: Duration,
    max: usize,
}

/// An input of a request: name, shape, values.
pub(super) type Input = (String, Vec<usize>, Vec<f32>);

/// What a sequence request says about its sequence.
pub(super) struct SequenceFlags {
    pub id: SequenceId,
    pub start: bool,
    pub end: bool,
}

impl Sequences {
    pub fn new(idle: Duration, max: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            idle,
            max,
        }
    }

    /// Sequences open now (idle ones not yet freed included).
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Runs `inputs` as the next step of sequence `flags.id`.
    pub fn run(
        &self,
        engine: &Engine,
        flags: &SequenceFlags,
        inputs: &[Input],
    ) -> Result<Vec<Tensor>, HttpError> {
        let states = &engine.spec().state;
        if states.is_empty() {
            return Err(err(
                400,
                format!(
                    "model `{}` has no recurrent state: send requests without sequence_id",
                    engine.spec().model
                ),
            ));
        }
        if let Some(given) = inputs
            .iter()
            .find(|(name, _, _)| states.iter().any(|s| s.input == *name))
        {
            return Err(err(
                400,
                format!(
                    "input `{}` is recurrent state, which the server carries in a sequence; leave it out",
                    given.0
                ),
            ));
        }
        let sequence = self.open_or_continue(flags, states)?;
        let mut sequence = sequence.lock().unwrap_or_else(|e| e.into_inner());
        let mut views: Vec<TensorView<'_>> = inputs
            .iter()
            .map(|(name, shape, data)| TensorView::new(name, shape, data))
            .collect();
        views.extend(
            states
                .iter()
                .zip(&sequence.state)
                .map(|(spec, data)| TensorView::new(&spec.input, &spec.shape, data)),
        );
        let outputs = engine.run(&views);
        sequence.last_used = Instant::now();
        let outputs = match outputs {
            Ok(o) => o,
            Err(e) => {
                drop(sequence);
                self.forget(&flags.id);
                let mut e = HttpError::from(e);
                e.message
                    .push_str(&format!(" (sequence {} was ended)", flags.id));
                return Err(e);
            }
        };
        for (spec, state) in states.iter().zip(sequence.state.iter_mut()) {
            let out = outputs
                .iter()
                .find(|o| o.name == spec.output)
                .ok_or_else(|| {
                    err(
                        500,
                        format!("the model gave no state output `{}`", spec.output),
                    )
                })?;
            state.clone_from(&out.data);
        }
        drop(sequence);
        if flags.end {
            self.forget(&flags.id);
        }
        Ok(outputs)
    }

    /// The sequence to run: a fresh one on `start` (restarting one of the same id), otherwise
    /// the open one. Frees sequences idle for too long first.
    fn open_or_continue(
        &self,
        flags: &SequenceFlags,
        states: &[StateSpec],
    ) -> Result<Arc<Mutex<Sequence>>, HttpError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let idle = self.idle;
        open.retain(|_, s| {
            // A sequence in use right now is not idle.
            s.try_lock().map_or(true, |s| s.last_used.elapsed() <= idle)
        });
        if flags.start {
            if !open.contains_key(&flags.id) && open.len() >= self.max {
                return Err(err(
                    429,
                    format!("too many open sequences (limit {})", self.max),
                ));
            }
            let fresh = Arc::new(Mutex::new(Sequence {
                state: states
                    .iter()
                    .map(|s| vec![0.0; s.shape.iter().product()])
                    .collect(),
                last_used: Instant::now(),
            }));
            open.insert(flags.id.clone(), fresh.clone());
            return Ok(fresh);
        }
        open.get(&flags.id).cloned().ok_or_else(|| {
            err(
                400,
                format!(
                    "sequence {} is not open: start it with sequence_start (a sequence idle for {} s is freed)",
                    flags.id,
                    idle.as_secs_f64()
                ),
            )
        })
    }

    fn forget(&self, id: &SequenceId) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}
