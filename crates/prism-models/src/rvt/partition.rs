//! MaxViT window / grid partitioning of channels-last feature maps (`[B, H, W, C]`).
//!
//! - window: contiguous `p0 x p1` blocks (`x.view(B, H/p0, p0, W/p1, p1, C)`),
//! - grid: a `p0 x p1` grid of tokens with stride `(H/p0, W/p1)` (`x.view(B, p0, H/p0, p1, W/p1, C)`).

use burn::tensor::Tensor;

/// Which partition an attention block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionType {
    /// Local attention inside contiguous blocks.
    Window,
    /// Sparse global attention over a strided grid.
    Grid,
}

fn check(h: usize, w: usize, p: [usize; 2]) {
    assert!(
        h % p[0] == 0 && w % p[1] == 0,
        "feature map {h}x{w} is not divisible by the partition size {}x{}",
        p[0],
        p[1]
    );
}

/// `[B, H, W, C]` -> `[B * (H/p0) * (W/p1), p0 * p1, C]`, windows in row-major order.
pub fn window_partition(x: Tensor<4>, p: [usize; 2]) -> Tensor<3> {
    let [b, h, w, c] = x.dims();
    check(h, w, p);
    x.reshape([b, h / p[0], p[0], w / p[1], p[1], c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (h / p[0]) * (w / p[1]), p[0] * p[1], c])
}

/// Inverse of [`window_partition`] for an output of size `[b, h, w]`.
pub fn window_reverse(x: Tensor<3>, p: [usize; 2], b: usize, h: usize, w: usize) -> Tensor<4> {
    let [_, _, c] = x.dims();
    x.reshape([b, h / p[0], w / p[1], p[0], p[1], c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h, w, c])
}

/// `[B, H, W, C]` -> `[B * (H/p0) * (W/p1), p0 * p1, C]`: each group holds the tokens
/// `(i * H/p0 + y, j * W/p1 + x)` for `i < p0, j < p1`, groups ordered by `(y, x)`.
pub fn grid_partition(x: Tensor<4>, p: [usize; 2]) -> Tensor<3> {
    let [b, h, w, c] = x.dims();
    check(h, w, p);
    x.reshape([b, p[0], h / p[0], p[1], w / p[1], c])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b * (h / p[0]) * (w / p[1]), p[0] * p[1], c])
}

/// Inverse of [`grid_partition`] for an output of size `[b, h, w]`.
pub fn grid_reverse(x: Tensor<3>, p: [usize; 2], b: usize, h: usize, w: usize) -> Tensor<4> {
    let [_, _, c] = x.dims();
    x.reshape([b, h / p[0], w / p[1], p[0], p[1], c])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([b, h, w, c])
}

/// Partition according to `kind`.
pub fn partition(x: Tensor<4>, kind: PartitionType, p: [usize; 2]) -> Tensor<3> {
    match kind {
        PartitionType::Window => window_partition(x, p),
        PartitionType::Grid => grid_partition(x, p),
    }
}

/// Reverse a partition according to `kind`.
pub fn reverse(
    x: Tensor<3>,
    kind: PartitionType,
    p: [usize; 2],
    b: usize,
    h: usize,
    w: usize,
) -> Tensor<4> {
    match kind {
        PartitionType::Window => window_reverse(x, p, b, h, w),
        PartitionType::Grid => grid_reverse(x, p, b, h, w),
    }
}
