//! Dynamic batching, as Triton's dynamic batcher does it: requests for a stateless model with a
//! dynamic batch axis queue up, and one thread per model runs them together, up to
//! [`super::ServerOptions::max_batch`] rows, waiting at most
//! [`super::ServerOptions::max_queue_delay`] after the first for more to arrive. Each request
//! gets its own rows of every output back, the same numbers as running it alone.
//!
//! Requests batch together when their inputs have the same names and the same shapes past the
//! batch axis; a request that does not fit the batch waits for the next one. If a model's output
//! does not have the batch axis first, the batch is run request by request instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::sequences::Input;
use super::{err, HttpError};
use crate::engine::{Engine, Tensor, TensorView};

type Answer = Result<Vec<Tensor>, HttpError>;

struct Job {
    inputs: Vec<Input>,
    rows: usize,
    enqueued: Instant,
    reply: mpsc::SyncSender<Answer>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    arrived: Condvar,
    max_batch: usize,
    max_delay: Duration,
    engine: Arc<Engine>,
    /// Batches run, and the requests they held (their ratio is the mean batch).
    batches: AtomicU64,
    batched_requests: AtomicU64,
}

/// A model's batching queue and the thread that runs it; dropping it stops the thread.
pub(super) struct Batcher {
    shared: Arc<Shared>,
}

impl Batcher {
    pub fn new(
        engine: Arc<Engine>,
        max_batch: usize,
        max_delay: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
            max_batch,
            max_delay,
            engine,
            batches: AtomicU64::new(0),
            batched_requests: AtomicU64::new(0),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("prism-batcher".into())
            .spawn(move || batch_loop(&worker))?;
        Ok(Self { shared })
    }

    /// (batches run, requests they held).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.batches.load(Ordering::Relaxed),
            self.shared.batched_requests.load(Ordering::Relaxed),
        )
    }

    /// Queues `inputs` and waits for their outputs, until `deadline` (408 after it).
    pub fn run(&self, inputs: Vec<Input>, deadline: Instant) -> Answer {
        let rows = batch_rows(&inputs).ok_or_else(|| {
            err(
                400,
                "the inputs of a batched model need the same batch size (their first axis), at least 1",
            )
        })?;
        if rows > self.shared.max_batch {
            // Too large to share a batch: it runs alone.
            return run_alone(&self.shared.engine, &inputs);
        }
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.closed {
                return Err(err(503, "the model is being unloaded"));
            }
            queue.jobs.push_back(Job {
                inputs,
                rows,
                enqueued: Instant::now(),
                reply,
            });
        }
        self.shared.arrived.notify_one();
        let left = deadline.saturating_duration_since(Instant::now());
        answer.recv_timeout(left).unwrap_or_else(|e| match e {
            mpsc::RecvTimeoutError::Timeout => Err(err(
                408,
                "the request's deadline passed while it waited for its batch",
            )),
            mpsc::RecvTimeoutError::Disconnected => Err(err(503, "the model was unloaded")),
        })
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.arrived.notify_all();
    }
}

/// The batch size of a request: the first axis, the same for every input.
fn batch_rows(inputs: &[Input]) -> Option<usize> {
    let rows = inputs.first()?.1.first().copied()?;
    (rows > 0
        && inputs
            .iter()
            .all(|(_, shape, _)| shape.first() == Some(&rows)))
    .then_some(rows)
}

/// Whether two requests can share a batch: same input names, same shapes past the batch axis.
fn compatible(a: &[Input], b: &[Input]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((na, sa, _), (nb, sb, _))| na == nb && sa.get(1..) == sb.get(1..))
}

fn run_alone(engine: &Engine, inputs: &[Input]) -> Answer {
    let views: Vec<TensorView<'_>> = inputs
        .iter()
        .map(|(name, shape, data)| TensorView::new(name, shape, data))
        .collect();
    engine.run(&views).map_err(HttpError::from)
}

fn batch_loop(shared: &Shared) {
    loop {
        let batch = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            while queue.jobs.is_empty() && !queue.closed {
                queue = shared
                    .arrived
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if queue.closed {
                // Waiting requests see their channel close: 503.
                queue.jobs.clear();
                return;
            }
            // Wait for more until the batch is full or the first request has waited long enough.
            loop {
                let rows: usize = queue.jobs.iter().map(|j| j.rows).sum();
                let waited = queue
                    .jobs
                    .front()
                    .map_or(Duration::ZERO, |j| j.enqueued.elapsed());
                if rows >= shared.max_batch || waited >= shared.max_delay || queue.closed {
                    break;
                }
                queue = shared
                    .arrived
                    .wait_timeout(queue, shared.max_delay - waited)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let Some(first) = queue.jobs.pop_front() else {
                continue;
            };
            let mut rows = first.rows;
            let mut batch = vec![first];
            while let Some(next) = queue.jobs.front() {
                if rows + next.rows > shared.max_batch
                    || !compatible(&batch[0].inputs, &next.inputs)
                {
                    break;
                }
                rows += next.rows;
                batch.extend(queue.jobs.pop_front());
            }
            batch
        };
        shared.batches.fetch_add(1, Ordering::Relaxed);
        shared
            .batched_requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        run_batch(&shared.engine, batch);
    }
}

/// Runs the jobs as one batch and hands each its rows; falls back to one run per job when an
/// output does not split by rows.
fn run_batch(engine: &Engine, batch: Vec<Job>) {
    if batch.len() == 1 {
        let job = &batch[0];
        let _ = job.reply.send(run_alone(engine, &job.inputs));
        return;
    }
    let total: usize = batch.iter().map(|j| j.rows).sum();
    let joined: Vec<Input> = batch[0]
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (name, shape, _))| {
            let mut shape = shape.clone();
            shape[0] = total;
            let data = batch
                .iter()
                .flat_map(|j| j.inputs[i].2.iter().copied())
                .collect();
            (name.clone(), shape, data)
        })
        .collect();
    let outputs = match run_alone(engine, &joined) {
        Ok(o) if o.iter().all(|t| t.shape.first() == Some(&total)) => o,
        // An error may be one request's fault, and an output without the batch axis cannot be
        // split: each request runs alone and gets its own answer.
        _ => {
            for job in &batch {
                let _ = job.reply.send(run_alone(engine, &job.inputs));
            }
            return;
        }
    };
    let mut offset = 0;
    for job in batch {
        let mine = outputs
            .iter()
            .map(|t| {
                let per_row = t.data.len() / total;
                let mut shape = t.shape.clone();
                shape[0] = job.rows;
                Tensor {
                    name: t.name.clone(),
                    shape,
                    data: t.data[offset * per_row..(offset + job.rows) * per_row].to_vec(),
                }
            })
            .collect();
        offset += job.rows;
        let _ = job.reply.send(Ok(mine));
    }
}
