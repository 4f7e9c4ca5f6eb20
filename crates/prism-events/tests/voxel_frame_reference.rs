//! The voxel grid and the event frame against a NumPy transcription of tonic
//! (`tests/reference/tonic_voxel_frame.py`), byte for byte, on windows of gen4.dat and on a
//! single-timestamp window.

use std::path::Path;
use std::process::Command;

use prism_events::repr::{EventFrame, FrameConfig, VoxelConfig, VoxelGrid};
use prism_events::window::{window_ranges, WindowConfig};
use prism_events::{testdata, EventChunk};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn write_events(path: &Path, e: &EventChunk) -> std::io::Result<()> {
    let mut b = Vec::new();
    b.extend_from_slice(&(e.len() as u64).to_le_bytes());
    e.t.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    e.x.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    e.y.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    b.extend_from_slice(&e.p);
    std::fs::write(path, b)
}

fn read_f32(path: &Path) -> std::io::Result<Vec<f32>> {
    Ok(std::fs::read(path)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn same_bits(ours: &[f32], reference: &[f32], what: &str) -> TestResult {
    if ours.len() != reference.len() {
        return Err(format!(
            "{what}: {} values, reference {}",
            ours.len(),
            reference.len()
        )
        .into());
    }
    if let Some(i) = (0..ours.len()).find(|&i| ours[i].to_bits() != reference[i].to_bits()) {
        return Err(format!(
            "{what}: cell {i}: ours {}, reference {}",
            ours[i], reference[i]
        )
        .into());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check(
    python: &Path,
    dir: &Path,
    events: &EventChunk,
    (w, h, bins): (usize, usize, usize),
    range: std::ops::Range<usize>,
    clip: Option<f32>,
    voxel: &mut VoxelGrid,
    frame: &mut EventFrame,
) -> TestResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/tonic_voxel_frame.py");
    let (ev, vf, ff) = (
        dir.join("ev.bin"),
        dir.join("voxel.f32"),
        dir.join("frame.f32"),
    );
    write_events(&ev, events)?;
    let out = Command::new(python)
        .arg(script)
        .arg(&ev)
        .args([w, h, bins, range.start, range.end].map(|v| v.to_string()))
        .arg(&vf)
        .arg(&ff)
        .arg(clip.unwrap_or(-1.0).to_string())
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    let window = events.as_slice().slice(range.clone());
    same_bits(
        voxel.build(window)?,
        &read_f32(&vf)?,
        &format!("voxel {range:?}"),
    )?;
    same_bits(
        frame.build(window)?,
        &read_f32(&ff)?,
        &format!("frame {range:?}"),
    )?;
    Ok(())
}

#[test]
fn voxel_grid_and_frame_match_tonic_transcription() -> TestResult {
    let (Some(dat), Some(python)) = (testdata::faery("gen4.dat"), testdata::python()) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let events = prism_events::reader::read_all(prism_events::open(&dat)?.as_mut())?;
    let windows = window_ranges(events.as_slice(), WindowConfig::rvt())?;
    let mut voxel = VoxelGrid::new(VoxelConfig {
        bins: 5,
        width: 1280,
        height: 720,
    })?;
    let mut frame = EventFrame::new(FrameConfig {
        width: 1280,
        height: 720,
        clip: Some(3.0),
    })?;
    for k in [0, 100, windows.len() - 1] {
        let range = windows[k].1.clone();
        check(
            &python,
            dir.path(),
            &events,
            (1280, 720, 5),
            range,
            Some(3.0),
            &mut voxel,
            &mut frame,
        )?;
    }
    // All events at one timestamp (tonic would divide by zero; both sides put them in bin 0).
    let mut same = EventChunk::default();
    for i in 0..50u16 {
        same.push(42, i % 7, i % 5, (i % 2) as u8);
    }
    let mut voxel = VoxelGrid::new(VoxelConfig {
        bins: 3,
        width: 7,
        height: 5,
    })?;
    let mut frame = EventFrame::new(FrameConfig {
        width: 7,
        height: 5,
        clip: None,
    })?;
    check(
        &python,
        dir.path(),
        &same,
        (7, 5, 3),
        0..50,
        None,
        &mut voxel,
        &mut frame,
    )?;
    Ok(())
}
