//! What a next-vector prediction is worth: the mean cosine to the true next vector, and a
//! retrieval check: among every vector of the validation documents, where does the true next
//! one rank by cosine to the prediction?
//!
//! The query's own context vectors are left out of its candidates (they are known not to come
//! next, and the last of them would otherwise win for the baseline that copies it). The same
//! protocol scores two baselines: the last context vector, and the mean training vector. The
//! second matters for cosine: sentence embeddings share a common direction (random pairs of
//! all-MiniLM-L6-v2 vectors have a mean cosine near 0.18), so one constant vector already reaches
//! a cosine near the square root of that, while it cannot retrieve anything.

use serde::{Deserialize, Serialize};

use prism_data::sequence::VectorCorpus;

/// Retrieval of the true next vector among the candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    pub queries: usize,
    /// Candidates per query (the validation vectors less the query's context).
    pub candidates: usize,
    /// Mean cosine between prediction and true next vector.
    pub mean_cosine: f64,
    /// 1 is first.
    pub median_rank: f64,
    pub mean_rank: f64,
    pub recall_at_1: f64,
    pub recall_at_10: f64,
    /// Mean reciprocal rank.
    pub mrr: f64,
}

/// The baseline prediction: each sample's last context vector, `[len, dim]`.
pub fn last_vector_predictions(corpus: &VectorCorpus, targets: &[usize]) -> Vec<f32> {
    targets
        .iter()
        .flat_map(|&t| corpus.row(t - 1).iter().copied())
        .collect()
}

/// The constant baseline: the normalised mean of `rows` (the training vectors), once per target.
pub fn mean_vector_predictions(corpus: &VectorCorpus, rows: &[usize], targets: usize) -> Vec<f32> {
    let d = corpus.dim;
    let mut mean = vec![0.0f64; d];
    for &r in rows {
        mean.iter_mut()
            .zip(corpus.row(r))
            .for_each(|(m, &v)| *m += f64::from(v));
    }
    let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt().max(1e-12);
    let unit: Vec<f32> = mean.iter().map(|m| (m / norm) as f32).collect();
    unit.iter().copied().cycle().take(targets * d).collect()
}

/// Ranks each target among `candidate_rows` by cosine to its prediction (`predictions` is
/// `[targets.len(), dim]`); the `context` rows before a target are not candidates for it.
pub fn retrieval(
    corpus: &VectorCorpus,
    predictions: &[f32],
    targets: &[usize],
    candidate_rows: &[usize],
    context: usize,
) -> Retrieval {
    let d = corpus.dim;
    let unit = |v: &[f32]| -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter().map(|x| x / norm).collect()
    };
    let candidates: Vec<Vec<f32>> = candidate_rows
        .iter()
        .map(|&r| unit(corpus.row(r)))
        .collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut ranks = Vec::with_capacity(targets.len());
    let mut cos_sum = 0.0;
    let mut excluded_max = 0usize;
    for (q, &t) in targets.iter().enumerate() {
        let p = unit(&predictions[q * d..(q + 1) * d]);
        let true_score = dot(&p, &unit(corpus.row(t)));
        cos_sum += true_score as f64;
        let skip = (t - context)..t;
        let mut above = 0usize;
        let mut excluded = 0usize;
        for (&row, c) in candidate_rows.iter().zip(&candidates) {
            if row == t {
                continue;
            }
            if skip.contains(&row) {
                excluded += 1;
                continue;
            }
            if dot(&p, c) > true_score {
                above += 1;
            }
        }
        excluded_max = excluded_max.max(excluded);
        ranks.push(above + 1);
    }
    let n = ranks.len().max(1) as f64;
    let mut sorted = ranks.clone();
    sorted.sort_unstable();
    let median_rank = match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2] as f64,
        len => (sorted[len / 2 - 1] + sorted[len / 2]) as f64 / 2.0,
    };
    Retrieval {
        queries: ranks.len(),
        candidates: candidate_rows.len().saturating_sub(excluded_max),
        mean_cosine: cos_sum / n,
        median_rank,
        mean_rank: ranks.iter().sum::<usize>() as f64 / n,
        recall_at_1: ranks.iter().filter(|&&r| r == 1).count() as f64 / n,
        recall_at_10: ranks.iter().filter(|&&r| r <= 10).count() as f64 / n,
        mrr: ranks.iter().map(|&r| 1.0 / r as f64).sum::<f64>() / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One document of 6 unit vectors along axes 0..6 (dim 6).
    fn axes() -> VectorCorpus {
        let mut vectors = vec![0.0; 36];
        for i in 0..6 {
            vectors[i * 6 + i] = 1.0;
        }
        VectorCorpus {
            dim: 6,
            vectors,
            documents: vec![0, 6],
            sentences: None,
            description: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_perfect_prediction_ranks_first_and_a_copy_does_not() {
        let corpus = axes();
        let targets = corpus.targets(&[0], 2); // 2, 3, 4, 5
        let rows = corpus.rows(&[0]);
        let perfect: Vec<f32> = targets
            .iter()
            .flat_map(|&t| corpus.row(t).to_vec())
            .collect();
        let r = retrieval(&corpus, &perfect, &targets, &rows, 2);
        assert_eq!((r.median_rank, r.recall_at_1, r.mrr), (1.0, 1.0, 1.0));
        assert!((r.mean_cosine - 1.0).abs() < 1e-6);
        assert_eq!(r.candidates, 4);

        // Copying the last context vector: that vector is excluded, every other candidate
        // ties the true one at cosine 0, and ties do not rank above it.
        let copy = last_vector_predictions(&corpus, &targets);
        let r = retrieval(&corpus, &copy, &targets, &rows, 2);
        assert_eq!(r.median_rank, 1.0);
        assert!(r.mean_cosine.abs() < 1e-6);
    }

    #[test]
    fn the_mean_vector_is_the_normalised_centroid() {
        let corpus = axes();
        let p = mean_vector_predictions(&corpus, &[0, 1], 2);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert_eq!(p.len(), 12);
        assert!((p[0] - h).abs() < 1e-6 && (p[1] - h).abs() < 1e-6 && p[2] == 0.0);
        assert_eq!(p[..6], p[6..]);
    }

    #[test]
    fn a_wrong_prediction_ranks_behind_the_candidates_it_points_at() {
        let corpus = axes();
        let targets = vec![5];
        // Points at row 0 (not in the context 3..5), so row 0 outranks the target.
        let mut p = vec![0.0f32; 6];
        p[0] = 1.0;
        p[5] = 0.5;
        let r = retrieval(&corpus, &p, &targets, &corpus.rows(&[0]), 2);
        assert_eq!(r.median_rank, 2.0);
        assert_eq!(r.recall_at_1, 0.0);
        assert_eq!(r.recall_at_10, 1.0);
    }
}
