//! Allocation counts per window, with a counting global allocator (per thread, so other tests'
//! threads do not disturb the count).
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use prism_core::spec::{
    ModelSpec, OutputSpec, Postprocess, Representation, RepresentationKind, Task, TensorSpec,
    SPEC_VERSION,
};
use prism_deploy::postprocess::Postprocessor;
use prism_deploy::preprocess::HistogramInput;
use prism_deploy::{Backend, Engine, EngineOptions, StreamDetector};
use prism_events::EventChunk;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn spec() -> ModelSpec {
    ModelSpec {
        spec_version: SPEC_VERSION,
        model: "alloc".into(),
        task: Task::EventDetection,
        classes: vec!["a".into(), "b".into()],
        input: TensorSpec {
            name: "x".into(),
            shape: vec![Some(1), Some(20), Some(64), Some(64)],
        },
        representation: Some(Representation {
            kind: RepresentationKind::StackedHistogram,
            bins: 10,
            window_us: 10_000,
            count_cutoff: 10,
            sensor_width: 120,
            sensor_height: 100,
            downsample: 2,
            padded_width: 64,
            padded_height: 64,
        }),
        output: OutputSpec {
            name: "y".into(),
            strides: vec![8, 16, 32],
            decoded: false,
        },
        state: vec![],
        duration_input: None,
        postprocess: Some(Postprocess {
            score_threshold: 0.2,
            nms_iou: 0.5,
            max_detections: 50,
        }),
        sequence: None,
        precision: Default::default(),
        quantization: None,
    }
}

fn window(k: i64) -> EventChunk {
    let mut c = EventChunk::default();
    for i in 0..5000i64 {
        c.push(
            k * 10_000 + i * 2,
            ((i * 7 + k) % 120) as u16,
            ((i * 13) % 100) as u16,
            (i % 2) as u8,
        );
    }
    c
}

/// Histogram, padding, f32 conversion, decoding, NMS and box mapping allocate nothing once warm.
#[test]
fn preprocessing_and_postprocessing_do_not_allocate_in_steady_state() {
    let spec = spec();
    let mut input = HistogramInput::new(spec.representation.as_ref().unwrap()).unwrap();
    let mut post = Postprocessor::new(&spec, 2.0, (120.0, 100.0)).unwrap();
    let windows: Vec<EventChunk> = (0..6).map(window).collect();
    // Raw rows that pass the threshold in places: logits alternate.
    let raw: Vec<f32> = (0..84 * 7)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
        .collect();
    for w in &windows[..2] {
        input.build(w.as_slice()).unwrap();
        post.run(&raw).unwrap();
    }
    let before = allocations();
    let mut kept = 0;
    for w in &windows[2..] {
        input.build(w.as_slice()).unwrap();
        kept += post.run(&raw).unwrap().len();
    }
    assert!(kept > 0);
    assert_eq!(
        allocations() - before,
        0,
        "allocations in 4 steady-state windows"
    );
}

/// Rust-side allocations of each of 12 windows (one push of 5000 events each) of a StreamDetector.
fn allocations_per_window(backend: Backend, dir: &std::path::Path) -> Vec<usize> {
    let engine =
        Arc::new(Engine::load(dir.join("rvt_tiny.onnx"), &EngineOptions::new(backend)).unwrap());
    let mut d = StreamDetector::new(engine).unwrap();
    let windows: Vec<EventChunk> = (0..12).map(window).collect();
    let mut per_window = Vec::new();
    for w in &windows {
        let mut n = 0;
        let before = allocations();
        d.push(w.as_slice(), &mut |_: &prism_deploy::WindowDetections<
            '_,
        >| {
            n += 1;
            Ok::<_, prism_deploy::DeployError>(true)
        })
        .unwrap();
        let now = allocations();
        if n == 1 {
            per_window.push(now - before);
        }
    }
    per_window
}

/// The whole StreamDetector on tract: measures allocations per window in steady state (tract's
/// own per-run state and intermediate tensors; prism's buffers are reused) and checks the count
/// does not grow.
#[test]
fn stream_detector_allocations_per_window_are_bounded() {
    let Some(dir) = common::fixtures("stream_detector_allocations_per_window_are_bounded") else {
        return;
    };
    let per_window = allocations_per_window(Backend::Tract, dir);
    eprintln!("allocations per window (tract): {per_window:?}");
    let steady = &per_window[3..];
    let (min, max) = (steady.iter().min().unwrap(), steady.iter().max().unwrap());
    assert!(
        max - min <= 2,
        "allocations per window vary: {per_window:?}"
    );
}

/// On ONNX Runtime the input and the state stay in ORT tensors (state outputs written into
/// preallocated tensors that the next window reads), so a steady-state window allocates nothing
/// on the Rust side for this 3-input, 3-output model. (A model with more than 6 inputs or 4 outputs,
/// like RVT's 9 and 9, adds `ort`'s small vectors of value handles spilling to the heap: a constant
/// handful, independent of tensor sizes. ORT's own C++ allocations are not counted here.)
#[test]
fn stream_detector_on_onnx_runtime_does_not_allocate_in_steady_state() {
    let test = "stream_detector_on_onnx_runtime_does_not_allocate_in_steady_state";
    let Some(dir) = common::fixtures(test) else {
        return;
    };
    if !common::ort_available(test) {
        return;
    }
    let per_window = allocations_per_window(Backend::OrtCpu, dir);
    eprintln!("allocations per window (ort-cpu): {per_window:?}");
    assert!(
        per_window[3..].iter().all(|&n| n == 0),
        "allocations per window: {per_window:?}"
    );
}
