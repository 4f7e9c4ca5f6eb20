//! Data of the next-vector sequence models: a corpus of embedding vectors in document order, the
//! (context → next vector) samples drawn from it, a document-level train / validation split and
//! the batches a model trains on.
//!
//! On disk a corpus is a folder:
//! - `embeddings.npy`: float32 `[N, D]`, one vector per sentence, documents back to back;
//! - `documents.npy`: int64 `[docs + 1]` offsets, document `d` holding rows
//!   `documents[d]..documents[d + 1]` (0 first, N last);
//! - `sentences.txt` (optional): the N sentences the vectors embed, one per line, for showing
//!   what a prediction retrieved;
//! - `dataset.json` (optional): where the corpus came from (`cargo xtask seq-data` writes all four).
//!
//! A sample never crosses a document boundary: its context and its target come from one document.
//! [`synthetic_corpus`] writes the same layout from a documented random process, so the tests and
//! the first run of a new user need nothing downloaded.

use std::path::{Path, PathBuf};

use prism_events::synth::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// File names of a corpus folder.
pub const EMBEDDINGS_FILE: &str = "embeddings.npy";
pub const DOCUMENTS_FILE: &str = "documents.npy";
pub const SENTENCES_FILE: &str = "sentences.txt";
pub const DATASET_FILE: &str = "dataset.json";

/// Vectors in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorCorpus {
    /// Width of every vector.
    pub dim: usize,
    /// Row-major `[N, dim]`.
    pub vectors: Vec<f32>,
    /// Document offsets: `len = docs + 1`, from 0 to N, non-decreasing.
    pub documents: Vec<usize>,
    /// The sentence each row embeds, when the corpus has them.
    pub sentences: Option<Vec<String>>,
    /// What the corpus is (from `dataset.json`, or how it was made).
    pub description: serde_json::Value,
}

/// Which documents train and which validate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentSplit {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

impl VectorCorpus {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.vectors.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_documents(&self) -> usize {
        self.documents.len().saturating_sub(1)
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Checks the offsets and values; `origin` names the corpus in errors.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let corrupt = |reason: String| Err(DataError::corrupt(origin, reason));
        if self.dim == 0 || self.vectors.len() % self.dim != 0 {
            return corrupt(format!(
                "{} values are not rows of width {}",
                self.vectors.len(),
                self.dim
            ));
        }
        let n = self.len();
        match (self.documents.first(), self.documents.last()) {
            (Some(0), Some(&last)) if last == n && self.documents.len() >= 2 => {}
            _ => {
                return corrupt(format!(
                    "document offsets must run from 0 to the {n} rows, found {:?}…{:?}",
                    self.documents.first(),
                    self.documents.last()
                ))
            }
        }
        if let Some(w) = self.documents.windows(2).position(|w| w[0] > w[1]) {
            return corrupt(format!("document offsets decrease at document {w}"));
        }
        if let Some(i) = self.vectors.iter().position(|v| !v.is_finite()) {
            return corrupt(format!(
                "row {} holds a non-finite value {}",
                i / self.dim,
                self.vectors[i]
            ));
        }
        if let Some(s) = &self.sentences {
            if s.len() != n {
                return corrupt(format!("{} sentences for {n} vectors", s.len()));
            }
        }
        Ok(())
    }

    /// Reads a corpus folder (see the module doc).
    pub fn load(dir: &Path) -> Result<Self> {
        let embeddings = dir.join(EMBEDDINGS_FILE);
        let (shape, vectors) = read_npy_f32(&embeddings)?;
        let [_, dim] = shape[..] else {
            return Err(DataError::corrupt(
                &embeddings,
                format!("shape {shape:?}, expected [sentences, dim]"),
            ));
        };
        let documents_path = dir.join(DOCUMENTS_FILE);
        let documents = read_npy_offsets(&documents_path)?;
        let sentences_path = dir.join(SENTENCES_FILE);
        let sentences = if sentences_path.exists() {
            let text = std::fs::read_to_string(&sentences_path)
                .map_err(|e| DataError::io(&sentences_path, e))?;
            Some(text.lines().map(str::to_string).collect())
        } else {
            None
        };
        let dataset_path = dir.join(DATASET_FILE);
        let description = if dataset_path.exists() {
            let text = std::fs::read_to_string(&dataset_path)
                .map_err(|e| DataError::io(&dataset_path, e))?;
            serde_json::from_str(&text).map_err(|source| DataError::Json {
                path: dataset_path,
                source,
            })?
        } else {
            serde_json::Value::Null
        };
        let corpus = Self {
            dim: dim as usize,
            vectors,
            documents,
            sentences,
            description,
        };
        corpus.validate(dir)?;
        Ok(corpus)
    }

    /// Writes the corpus folder (files first to temporary names, then renamed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let n = self.len() as u64;
        write_npy(
            &dir.join(EMBEDDINGS_FILE),
            &[n, self.dim as u64],
            &self.vectors,
        )?;
        let offsets: Vec<i64> = self.documents.iter().map(|&o| o as i64).collect();
        write_npy(&dir.join(DOCUMENTS_FILE), &[offsets.len() as u64], &offsets)?;
        if let Some(sentences) = &self.sentences {
            write_atomic(&dir.join(SENTENCES_FILE), sentences.join("\n").as_bytes())?;
        }
        let json = serde_json::to_string_pretty(&self.description).unwrap_or_default();
        write_atomic(&dir.join(DATASET_FILE), json.as_bytes())
    }

    /// Splits the documents `1 - val_fraction` / `val_fraction`, shuffled by `seed`; at least one
    /// document validates and one trains.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<DocumentSplit> {
        let docs = self.num_documents();
        if docs < 2 {
            return Err(DataError::Invalid(format!(
                "a split by document needs at least 2 documents, the corpus has {docs}"
            )));
        }
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(DataError::Invalid(format!(
                "validation fraction {val_fraction} is not in [0, 1)"
            )));
        }
        let mut order: Vec<usize> = (0..docs).collect();
        let mut rng = SplitMix64::stream(seed, 0x5E0_5B17, 0);
        for i in (1..docs).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let n_val = ((docs as f64 * val_fraction).round() as usize).clamp(1, docs - 1);
        let mut val = order[..n_val].to_vec();
        let mut train = order[n_val..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok(DocumentSplit { train, val })
    }

    /// The target rows of every sample in `documents` with `context` vectors before it in the
    /// same document, in corpus order.
    pub fn targets(&self, documents: &[usize], context: usize) -> Vec<usize> {
        documents
            .iter()
            .filter(|&&d| d + 1 < self.documents.len())
            .flat_map(|&d| (self.documents[d] + context)..self.documents[d + 1])
            .collect()
    }

    /// The rows of `documents`, in corpus order (the candidates of a retrieval check).
    pub fn rows(&self, documents: &[usize]) -> Vec<usize> {
        documents
            .iter()
            .filter(|&&d| d + 1 < self.documents.len())
            .flat_map(|&d| self.documents[d]..self.documents[d + 1])
            .collect()
    }

    /// The batch of the samples whose targets are `targets`: contexts `[B, context, dim]` and
    /// targets `[B, dim]`, row-major. Every target must have `context` rows before it in its
    /// document (as [`Self::targets`] gives).
    pub fn batch(&self, targets: &[usize], context: usize) -> SequenceBatch {
        let d = self.dim;
        let mut contexts = Vec::with_capacity(targets.len() * context * d);
        let mut next = Vec::with_capacity(targets.len() * d);
        for &t in targets {
            contexts.extend_from_slice(&self.vectors[(t - context) * d..t * d]);
            next.extend_from_slice(self.row(t));
        }
        SequenceBatch {
            size: targets.len(),
            context,
            dim: d,
            contexts,
            targets: next,
        }
    }
}

/// Contexts and the vectors that follow them.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceBatch {
    pub size: usize,
    pub context: usize,
    pub dim: usize,
    /// `[size, context, dim]`.
    pub contexts: Vec<f32>,
    /// `[size, dim]`.
    pub targets: Vec<f32>,
}

/// The synthetic corpus process (`prism data synth-seq`).
///
/// Every document is a walk on the unit sphere of `dim` dimensions driven by two fixed random
/// orthogonal maps shared by all documents:
/// `v[t] = normalize(a · Q1 v[t-1] + b · Q2 v[t-2] + noise · e[t])`, with `e[t]` standard normal
/// scaled by `1 / sqrt(dim)` and the first two vectors uniform on the sphere. The next vector
/// depends on the last two, so a model must read more than the last one to beat the
/// last-vector baseline, and the noise bounds the cosine any model can reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticSequences {
    pub seed: u64,
    pub documents: usize,
    /// Sentences per document are uniform in `[min_len, max_len]`.
    pub min_len: usize,
    pub max_len: usize,
    pub dim: usize,
    pub a: f64,
    pub b: f64,
    pub noise: f64,
}

impl Default for SyntheticSequences {
    fn default() -> Self {
        Self {
            seed: 7,
            documents: 60,
            min_len: 40,
            max_len: 120,
            dim: 32,
            a: 0.8,
            b: 0.6,
            noise: 0.5,
        }
    }
}

/// Builds the corpus [`SyntheticSequences`] describes.
pub fn synthetic_corpus(config: &SyntheticSequences) -> Result<VectorCorpus> {
    let d = config.dim;
    if d == 0 || config.documents < 2 || config.min_len < 3 || config.max_len < config.min_len {
        return Err(DataError::Invalid(format!(
            "synthetic sequences need dim > 0, at least 2 documents and 3 <= min_len <= max_len: {config:?}"
        )));
    }
    let mut rng = SplitMix64::stream(config.seed, 0x5E0_C0DE, 0);
    let q1 = random_orthogonal(d, &mut rng);
    let q2 = random_orthogonal(d, &mut rng);
    let mut vectors = Vec::new();
    let mut documents = vec![0];
    let scale = config.noise / (d as f64).sqrt();
    for doc in 0..config.documents {
        let mut rng = SplitMix64::stream(config.seed, 0x5E0_D0C, doc as u64);
        let span = (config.max_len - config.min_len + 1) as u64;
        let len = config.min_len + (rng.next_u64() % span) as usize;
        let mut prev2 = random_unit(d, &mut rng);
        let mut prev1 = random_unit(d, &mut rng);
        push_row(&mut vectors, &prev2);
        push_row(&mut vectors, &prev1);
        for _ in 2..len {
            let p1 = mat_vec(&q1, &prev1);
            let p2 = mat_vec(&q2, &prev2);
            let mut next: Vec<f64> = (0..d)
                .map(|i| config.a * p1[i] + config.b * p2[i] + scale * rng.normal())
                .collect();
            normalize(&mut next);
            push_row(&mut vectors, &next);
            prev2 = std::mem::replace(&mut prev1, next);
        }
        documents.push(vectors.len() / d);
    }
    let description = serde_json::json!({
        "name": "synthetic-sequences",
        "process": "v[t] = normalize(a Q1 v[t-1] + b Q2 v[t-2] + noise e[t] / sqrt(dim)), Q1 and Q2 random orthogonal",
        "config": config,
    });
    Ok(VectorCorpus {
        dim: d,
        vectors,
        documents,
        sentences: None,
        description,
    })
}

fn push_row(out: &mut Vec<f32>, row: &[f64]) {
    out.extend(row.iter().map(|&v| v as f32));
}

fn normalize(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

fn random_unit(d: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    normalize(&mut v);
    v
}

/// A random orthogonal matrix (Gram-Schmidt on Gaussian rows), row-major.
fn random_orthogonal(d: usize, rng: &mut SplitMix64) -> Vec<Vec<f64>> {
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(d);
    while rows.len() < d {
        let mut v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        for r in &rows {
            let dot: f64 = v.iter().zip(r).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(r).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-6 {
            v.iter_mut().for_each(|x| *x /= norm);
            rows.push(v);
        }
    }
    rows
}

fn mat_vec(m: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    m.iter()
        .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
        .collect()
}

fn read_npy_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// A float32 (or float64) `.npy` in C order.
fn read_npy_f32(path: &Path) -> Result<(Vec<u64>, Vec<f32>)> {
    let bytes = read_npy_bytes(path)?;
    let bad = |m: String| DataError::corrupt(path, m);
    let file = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(e.to_string()))?;
    if file.order() == npyz::Order::Fortran {
        return Err(bad(
            "Fortran order is not supported; save it in C order".into()
        ));
    }
    let shape = file.shape().to_vec();
    let dtype = file.dtype();
    let data = match &dtype {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            file.into_vec::<f32>().map_err(|e| bad(e.to_string()))?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            file.into_vec::<f64>()
                .map_err(|e| bad(e.to_string()))?
                .into_iter()
                .map(|v| v as f32)
                .collect()
        }
        other => return Err(bad(format!("dtype {other:?}, expected float32"))),
    };
    let want: u64 = shape.iter().product();
    if data.len() as u64 != want {
        return Err(bad(format!("{} values for shape {shape:?}", data.len())));
    }
    Ok((shape, data))
}

/// A one-dimensional integer `.npy` of non-negative offsets.
fn read_npy_offsets(path: &Path) -> Result<Vec<usize>> {
    let bytes = read_npy_bytes(path)?;
    let bad = |m: String| DataError::corrupt(path, m);
    let file = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(e.to_string()))?;
    if file.shape().len() != 1 {
        return Err(bad(format!(
            "shape {:?}, expected [documents + 1]",
            file.shape()
        )));
    }
    let values: Vec<i64> = match file.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int && t.size_field() == 8 => {
            file.into_vec::<i64>().map_err(|e| bad(e.to_string()))?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int && t.size_field() == 4 => {
            file.into_vec::<i32>()
                .map_err(|e| bad(e.to_string()))?
                .into_iter()
                .map(i64::from)
                .collect()
        }
        other => return Err(bad(format!("dtype {other:?}, expected int64"))),
    };
    values
        .into_iter()
        .map(|v| usize::try_from(v).map_err(|_| bad(format!("negative offset {v}"))))
        .collect()
}

fn write_npy<T: npyz::AutoSerialize + npyz::Serialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> Result<()> {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()
        .map_err(|e| DataError::io(path, e))?;
    writer
        .extend(data.iter().copied())
        .map_err(|e| DataError::io(path, e))?;
    writer.finish().map_err(|e| DataError::io(path, e))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to a temporary sibling and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SyntheticSequences {
        SyntheticSequences {
            documents: 10,
            min_len: 8,
            max_len: 12,
            dim: 6,
            ..Default::default()
        }
    }

    #[test]
    fn synthetic_corpus_is_unit_vectors_and_reproducible() {
        let a = synthetic_corpus(&small()).unwrap();
        assert_eq!(a, synthetic_corpus(&small()).unwrap());
        assert_eq!(a.num_documents(), 10);
        for i in 0..a.len() {
            let norm: f32 = a.row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "row {i} norm {norm}");
        }
        let other = synthetic_corpus(&SyntheticSequences { seed: 8, ..small() }).unwrap();
        assert_ne!(a.vectors, other.vectors);
    }

    #[test]
    fn samples_stay_inside_their_document() {
        let corpus = synthetic_corpus(&small()).unwrap();
        let docs: Vec<usize> = (0..corpus.num_documents()).collect();
        let targets = corpus.targets(&docs, 5);
        let expected: usize = corpus.documents.windows(2).map(|w| w[1] - w[0] - 5).sum();
        assert_eq!(targets.len(), expected);
        for &t in &targets {
            let doc = corpus.documents.partition_point(|&o| o <= t) - 1;
            assert!(
                t - 5 >= corpus.documents[doc],
                "target {t} crosses into document {doc}"
            );
        }
        let batch = corpus.batch(&targets[..3], 5);
        assert_eq!(batch.contexts.len(), 3 * 5 * 6);
        assert_eq!(&batch.targets[..6], corpus.row(targets[0]));
        assert_eq!(&batch.contexts[4 * 6..5 * 6], corpus.row(targets[0] - 1));
    }

    #[test]
    fn split_is_by_document_seeded_and_disjoint() {
        let corpus = synthetic_corpus(&small()).unwrap();
        let split = corpus.split(0.1, 3).unwrap();
        assert_eq!(split.val.len(), 1);
        assert_eq!(split.train.len(), 9);
        assert!(split.val.iter().all(|d| !split.train.contains(d)));
        assert_eq!(split, corpus.split(0.1, 3).unwrap());
        let other: Vec<_> = (0..20).map(|s| corpus.split(0.3, s).unwrap().val).collect();
        assert!(
            other.iter().any(|v| *v != other[0]),
            "the seed changes the split"
        );
        assert!(corpus.split(1.5, 0).is_err());
    }

    #[test]
    fn corpus_round_trips_and_bad_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut corpus = synthetic_corpus(&small()).unwrap();
        corpus.sentences = Some((0..corpus.len()).map(|i| format!("sentence {i}")).collect());
        corpus.save(dir.path()).unwrap();
        let back = VectorCorpus::load(dir.path()).unwrap();
        assert_eq!(back.vectors, corpus.vectors);
        assert_eq!(back.documents, corpus.documents);
        assert_eq!(back.sentences, corpus.sentences);

        // Offsets that do not end at the row count.
        let mut broken = corpus.clone();
        broken.documents.push(broken.len() + 3);
        broken.save(dir.path()).unwrap();
        let e = VectorCorpus::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("offsets"), "{e}");

        // A truncated embeddings file.
        corpus.save(dir.path()).unwrap();
        let path = dir.path().join(EMBEDDINGS_FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        let e = VectorCorpus::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("embeddings.npy"), "{e}");

        // Missing folder.
        assert!(VectorCorpus::load(&dir.path().join("nope")).is_err());
    }
}
