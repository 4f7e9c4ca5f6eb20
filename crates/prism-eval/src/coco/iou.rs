//! Box intersection over union, exactly as pycocotools' `maskApi.c::bbIou`.

/// IoU of a detection box and a ground-truth box, both `[x, y, w, h]`.
///
/// For a crowd ground truth the union is replaced by the detection's own area, so a detection
/// lying inside a crowd region scores 1 however large the region is. The float operations are
/// those of `bbIou` (`min(x+w) - max(x)`, `i / (da + ga - i)`), so thresholds tie the same way.
pub fn iou(dt: &[f64; 4], gt: &[f64; 4], crowd: bool) -> f64 {
    let w = (dt[2] + dt[0]).min(gt[2] + gt[0]) - dt[0].max(gt[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (dt[3] + dt[1]).min(gt[3] + gt[1]) - dt[1].max(gt[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let da = dt[2] * dt[3];
    let ga = gt[2] * gt[3];
    let i = w * h;
    let u = if crowd { da } else { da + ga - i };
    i / u
}

/// IoU matrix, row-major `[detection][ground truth]`.
pub fn iou_matrix(dts: &[[f64; 4]], gts: &[[f64; 4]], crowd: &[bool]) -> Vec<f64> {
    let mut out = Vec::with_capacity(dts.len() * gts.len());
    for d in dts {
        for (g, &c) in gts.iter().zip(crowd) {
            out.push(iou(d, g, c));
        }
    }
    out
}
