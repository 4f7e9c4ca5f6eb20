//! Export of a ~20M-parameter model: time and peak memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use prism_export::{export, ExportOptions};

#[derive(Module, Debug)]
struct Big {
    layers: Vec<Linear>,
}

fn rss_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn export_20m_params_under_10s_within_three_copies() {
    let d = Device::flex();
    let m = Big {
        layers: (0..5)
            .map(|_| LinearConfig::new(2048, 2048).init(&d))
            .collect(),
    };
    let params = m.num_params();
    let weight_bytes = params as u64 * 4;
    assert!(params > 20_000_000, "{params}");
    // Parameters are initialized lazily: materialize them so the baseline holds one copy.
    for l in &m.layers {
        let _ = l.weight.val();
        if let Some(b) = &l.bias {
            let _ = b.val();
        }
    }
    // Reset the peak-RSS counter so the peak below is the export's own.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let base = rss_kib("VmRSS:").unwrap_or(0) * 1024;

    let path = std::env::temp_dir().join(format!("prism-export-perf-{}.onnx", std::process::id()));
    let t = Instant::now();
    let model = export(
        &m,
        Tensor::<2>::zeros([1, 2048], &d),
        |m, x| {
            m.layers
                .iter()
                .fold(x, |x, l| burn::tensor::activation::relu(l.forward(x)))
        },
        &ExportOptions::default(),
    )
    .unwrap();
    let t_export = t.elapsed();
    let written = model.save(&path).unwrap();
    let total = t.elapsed();
    drop(model);
    let peak = rss_kib("VmHWM:").unwrap_or(0) * 1024;
    let file = std::fs::metadata(&path).unwrap().len();
    let _ = std::fs::remove_file(&path);

    let extra = peak.saturating_sub(base) as f64 / weight_bytes as f64;
    eprintln!(
        "params {params}, capture+lower {:.2}s, total with save {:.2}s, file {file} B ({:.4}% over weights), \
         peak RSS {:.0} MiB over a baseline of {:.0} MiB = {extra:.2} extra weight copies (reset: {reset})",
        t_export.as_secs_f64(),
        total.as_secs_f64(),
        (file as f64 / weight_bytes as f64 - 1.0) * 100.0,
        peak.saturating_sub(base) as f64 / 1048576.0,
        base as f64 / 1048576.0,
    );
    assert_eq!(written, file);
    assert!(total.as_secs_f64() < 10.0, "export took {total:?}");
    assert!(file as f64 <= weight_bytes as f64 * 1.01);
    if reset {
        // The module itself is one copy; export may add at most two more (capture's recorded
        // values and burn-capture's clone of them), plus a little working memory.
        let over = peak.saturating_sub(base);
        assert!(
            over <= 2 * weight_bytes + (32 << 20),
            "export held {extra:.2} extra copies of the weights"
        );
    }
}
