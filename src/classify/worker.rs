//! [`Classifier`]: encoders owned by dedicated OS threads behind one bounded queue.
//!
//! Inference is CPU-bound for milliseconds, so it must never run on a tokio worker (it
//! would stall every other task on that thread). Each worker thread owns an
//! [`Encoder`] (weights shared, buffers private) and takes jobs from a
//! `std::sync::mpsc::sync_channel`; replies go back through a tokio oneshot, so async
//! callers just `.await`. The queue is bounded and [`Classifier::classify`] uses
//! `try_send`: when every worker is busy and `queue_depth` jobs wait, the caller gets
//! [`ClassifyError::Overloaded`] at once (the service answers `RESOURCE_EXHAUSTED`)
//! instead of building latency without bound.
//!
//! A count bounds memory, not time: with `max_queue_wait` the queue is also
//! bounded by how long a text may wait. A text is refused at once when it
//! would wait longer than that for a worker, and a text that has waited longer
//! anyway is answered `Overloaded` without being encoded, so under overload the
//! texts that are served are served about as fast as unloaded. The wait is read
//! off each worker's progress through its current text (not only the count
//! waiting): counting whole texts refused too few at once and let up to a third of
//! the refused ones wait out their budget first, and a worker that found only
//! expired texts sat idle (docs/performance.md, "Admission by time").
//!
//! Threads: one inference per thread and as many workers as cores served best on the
//! 2-core machines measured (see the stack notes); the int8 kernels are single-threaded,
//! and the F32 fallback uses candle's pool (set `CANDLE_NUM_THREADS=1` there).
//! Workers exit when the last `Classifier` handle is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::ClassifyError;
use super::encoder::{DEFAULT_MAX_TOKENS, Encoder, EncoderOptions, Precision, Workspace};

/// How to build a [`Classifier`].
#[derive(Clone, Debug)]
pub struct ClassifierConfig {
    /// Folder with `config.json`, `tokenizer.json` and `model.safetensors`.
    pub model_dir: PathBuf,
    /// Inference threads (each runs one text at a time).
    pub workers: usize,
    /// Jobs that may wait for a free worker before callers get `Overloaded`.
    pub queue_depth: usize,
    /// Tokens kept per text, `[CLS]`/`[SEP]` included; longer texts keep head and tail.
    pub max_tokens: usize,
    /// The longest a text may wait for a worker (`None`: only `queue_depth`).
    pub max_queue_wait: Option<Duration>,
}

impl ClassifierConfig {
    /// Defaults: one worker per core, 64 waiting jobs (≈ 0.3 s of work at ~150 texts/s,
    /// beyond which a caller is better served by an immediate error), 256 tokens.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        ClassifierConfig {
            model_dir: model_dir.into(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_depth: 64,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_queue_wait: None,
        }
    }
}

/// The result of classifying one text.
#[derive(Clone, Debug)]
pub struct Classification {
    /// L2-normalised sentence embedding.
    pub embedding: Vec<f32>,
    /// Tokens encoded (after truncation, `[CLS]`/`[SEP]` included).
    pub tokens: usize,
    /// Whether the text was cut to `max_tokens`.
    pub truncated: bool,
    /// Time spent in the worker (tokenise + encode), excluding queueing.
    pub micros: u64,
}

struct Job {
    text: String,
    /// When waiting longer makes the answer useless (`None`: never).
    wait_until: Option<Instant>,
    reply: oneshot::Sender<Result<Classification, ClassifyError>>,
}

/// What admission by time reads: texts waiting, what each worker is doing and
/// the recent time per text.
#[derive(Debug)]
struct Queue {
    max_wait: Option<Duration>,
    waiting: AtomicUsize,
    /// EWMA of a worker's time per text, in µs (0 until one is encoded).
    per_text_us: AtomicU64,
    /// When each worker started its current text, in µs after `epoch` plus
    /// one (0: idle).
    started_us: Vec<AtomicU64>,
    epoch: Instant,
}

impl Queue {
    /// How long a text queued now would wait for a worker, about.
    fn expected_wait(&self) -> Duration {
        let waiting = self.waiting.load(Ordering::Relaxed);
        let per_text = self.per_text_us.load(Ordering::Relaxed);
        let now = self.now_us();
        let mut left: Vec<u64> = (self.started_us.iter())
            .map(|s| match s.load(Ordering::Relaxed) {
                0 => 0,
                started => per_text.saturating_sub(now.saturating_sub(started - 1)),
            })
            .collect();
        Duration::from_micros(wait_at(waiting, &mut left, per_text))
    }

    fn now_us(&self) -> u64 {
        self.us_at(Instant::now())
    }

    /// `t` in µs after `epoch` (a u64 of µs outlasts any process).
    fn us_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Marks worker `i` busy since `started`, or idle.
    fn set_busy(&self, i: usize, started: Option<Instant>) {
        let v = started.map_or(0, |t| self.us_at(t) + 1);
        self.started_us[i].store(v, Ordering::Relaxed);
    }

    /// Folds one text's encoding time into the EWMA (weight 1/8: a racy
    /// read-modify-write, harmless for an estimate).
    fn encoded(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.per_text_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        self.per_text_us.store(new.max(1), Ordering::Relaxed);
    }
}

/// A handle to the worker pool; clones share it.
#[derive(Clone)]
pub struct Classifier {
    tx: SyncSender<Job>,
    queue: Arc<Queue>,
    dim: usize,
    encoder: Encoder,
}

impl Classifier {
    /// Loads the model once and starts `cfg.workers` threads.
    pub fn load(cfg: &ClassifierConfig) -> Result<Self, ClassifyError> {
        Self::load_with(cfg, Precision::best_available())
    }

    /// As [`Classifier::load`] with an explicit precision (F32 for reference runs).
    pub fn load_with(cfg: &ClassifierConfig, precision: Precision) -> Result<Self, ClassifyError> {
        if cfg.workers == 0 {
            return Err(ClassifyError::InvalidConfig(
                "workers must be at least 1".into(),
            ));
        }
        if cfg.queue_depth == 0 {
            return Err(ClassifyError::InvalidConfig(
                "queue_depth must be at least 1".into(),
            ));
        }
        let encoder = Encoder::load(
            &cfg.model_dir,
            EncoderOptions {
                max_tokens: cfg.max_tokens,
                precision,
            },
        )?;
        let (tx, rx) = sync_channel::<Job>(cfg.queue_depth);
        let rx = Arc::new(Mutex::new(rx));
        let queue = Arc::new(Queue {
            max_wait: cfg.max_queue_wait,
            waiting: AtomicUsize::new(0),
            per_text_us: AtomicU64::new(0),
            started_us: (0..cfg.workers).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        });
        for i in 0..cfg.workers {
            let (enc, rx, queue) = (encoder.clone(), Arc::clone(&rx), Arc::clone(&queue));
            std::thread::Builder::new()
                .name(format!("classify-{i}"))
                .spawn(move || run_worker(i, enc, rx, &queue))
                .map_err(|e| {
                    ClassifyError::InvalidConfig(format!("cannot start worker thread: {e}"))
                })?;
        }
        tracing::info!(workers = cfg.workers, queue_depth = cfg.queue_depth, precision = ?encoder.precision(), "classifier started");
        Ok(Classifier {
            tx,
            queue,
            dim: encoder.dim(),
            encoder,
        })
    }

    /// Embeds one text on a worker thread. Returns `Overloaded` without waiting when the
    /// queue is full, `EmptyText` for empty or whitespace-only text.
    pub async fn classify(&self, text: &str) -> Result<Classification, ClassifyError> {
        if text.trim().is_empty() {
            return Err(ClassifyError::EmptyText);
        }
        let q = &self.queue;
        if q.max_wait.is_some_and(|max| q.expected_wait() > max) {
            return Err(ClassifyError::Overloaded);
        }
        let (reply, rx) = oneshot::channel();
        q.waiting.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            text: text.to_owned(),
            wait_until: q.max_wait.map(|max| Instant::now() + max),
            reply,
        };
        if let Err(e) = self.tx.try_send(job) {
            q.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                TrySendError::Full(_) => ClassifyError::Overloaded,
                TrySendError::Disconnected(_) => ClassifyError::WorkersGone,
            });
        }
        rx.await.map_err(|_| ClassifyError::WorkersGone)?
    }

    /// Embeds many texts (for training and evaluation CLIs), spreading them over the
    /// workers and waiting for queue space instead of failing. Blocks the calling thread:
    /// never call it from async code (use `spawn_blocking`). Each text is encoded alone,
    /// exactly as [`Classifier::classify`] would, so results do not depend on batching.
    pub fn embed_batch_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        if texts.iter().any(|t| t.trim().is_empty()) {
            return Err(ClassifyError::EmptyText);
        }
        // Submit and collect concurrently in bounded windows so a batch larger than the
        // queue cannot deadlock against replies nobody is reading yet.
        let mut out = Vec::with_capacity(texts.len());
        for window in texts.chunks(256) {
            let mut pending = Vec::with_capacity(window.len());
            for text in window {
                let (reply, rx) = oneshot::channel();
                self.queue.waiting.fetch_add(1, Ordering::Relaxed);
                // A batch waits for room by design: no time bound applies.
                let job = Job {
                    text: (*text).to_owned(),
                    wait_until: None,
                    reply,
                };
                if self.tx.send(job).is_err() {
                    return Err(ClassifyError::WorkersGone);
                }
                pending.push(rx);
            }
            for rx in pending {
                out.push(
                    rx.blocking_recv()
                        .map_err(|_| ClassifyError::WorkersGone)??
                        .embedding,
                );
            }
        }
        Ok(out)
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The shared encoder (for callers that want to tokenise or embed on their own thread).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

fn run_worker(i: usize, enc: Encoder, rx: Arc<Mutex<Receiver<Job>>>, queue: &Queue) {
    let mut ws = Workspace::default();
    loop {
        // Hold the lock only while waiting for one job; a poisoned lock means another
        // worker panicked while receiving, and the receiver itself is still sound.
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // every Classifier handle is gone
        };
        queue.waiting.fetch_sub(1, Ordering::Relaxed);
        if job.reply.is_closed() {
            continue; // the caller gave up (timeout, cancelled request): skip the work
        }
        if job.wait_until.is_some_and(|t| Instant::now() > t) {
            // Waited past its budget: the caller is better served by an
            // error now than by an answer later.
            let _ = job.reply.send(Err(ClassifyError::Overloaded));
            continue;
        }
        let start = Instant::now();
        queue.set_busy(i, Some(start));
        let result = enc.embed(&job.text, &mut ws).map(|e| Classification {
            embedding: e.embedding,
            tokens: e.tokens,
            truncated: e.truncated,
            micros: start.elapsed().as_micros() as u64,
        });
        queue.set_busy(i, None);
        queue.encoded(start.elapsed());
        let _ = job.reply.send(result); // the caller may have gone; nothing to do then
    }
}

/// The wait of the text at `position` in the queue (0: next), given what is
/// `left` of each worker's current text (0: idle) and the time per text: the
/// texts ahead take workers in the order they free, a round of `left.len()`
/// texts at a time.
fn wait_at(position: usize, left: &mut [u64], per_text: u64) -> u64 {
    if left.is_empty() {
        return u64::MAX;
    }
    left.sort_unstable();
    let rounds = (position / left.len()) as u64;
    left[position % left.len()].saturating_add(rounds.saturating_mul(per_text))
}

#[cfg(test)]
mod tests {
    use super::wait_at;

    #[test]
    fn a_text_waits_for_the_worker_that_frees_in_its_turn() {
        // Two workers, one 150 µs from done and one 20 µs, 190 µs a text.
        let wait = |position| wait_at(position, &mut [150, 20], 190);
        assert_eq!(wait(0), 20);
        assert_eq!(wait(1), 150);
        assert_eq!(wait(2), 20 + 190);
        assert_eq!(wait(5), 150 + 2 * 190);
        assert_eq!(
            wait_at(0, &mut [0, 40], 190),
            0,
            "an idle worker takes it at once"
        );
        assert_eq!(wait_at(0, &mut [], 190), u64::MAX);
    }
}
