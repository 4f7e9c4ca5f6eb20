//! Bounding-box `.npy` labels: both Prophesee dtypes from NumPy read correctly, ours read back in
//! NumPy field by field, and malformed files never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use prism_events::labels::{encode_bbox_npy, parse_bbox_npy, parse_int_npy};
use prism_events::{read_bbox_npy, testdata, write_bbox_npy, BoxLabel, EventError};
use proptest::prelude::*;

fn run_python(script: &str) -> Option<String> {
    let python = testdata::python()?;
    let out = Command::new(python).arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sample_labels() -> Vec<BoxLabel> {
    (0..25)
        .map(|i| BoxLabel {
            t: 59_749_999 + i64::from(i) * 250_000,
            x: 118.0 + i as f32 * 0.25,
            y: -3.5 + i as f32,
            w: 43.0 + i as f32 / 3.0,
            h: 39.0,
            class_id: i % 3,
            track_id: 2753 + i * 1000,
            confidence: 1.0 - i as f32 / 100.0,
        })
        .collect()
}

/// Python literal of the sample rows for the given field order.
fn python_rows(labels: &[BoxLabel], gen1: bool) -> String {
    let rows: Vec<String> = labels
        .iter()
        .map(|b| {
            if gen1 {
                format!(
                    "({}, {:?}, {:?}, {:?}, {:?}, {}, {:?}, {})",
                    b.t, b.x, b.y, b.w, b.h, b.class_id, b.confidence, b.track_id
                )
            } else {
                format!(
                    "({}, {:?}, {:?}, {:?}, {:?}, {}, {}, {:?})",
                    b.t, b.x, b.y, b.w, b.h, b.class_id, b.track_id, b.confidence
                )
            }
        })
        .collect();
    format!("[{}]", rows.join(", "))
}

fn assert_labels_eq(got: &[BoxLabel], want: &[BoxLabel]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w);
    }
}

#[test]
fn reads_the_gen1_dtype_as_numpy_packs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen1_bbox.npy");
    let labels = sample_labels();
    let script = format!(
        "import numpy as np\n\
         dt = np.dtype([('ts','<u8'),('x','<f4'),('y','<f4'),('w','<f4'),('h','<f4'),('class_id','u1'),('confidence','<f4'),('track_id','<u4')])\n\
         assert dt.itemsize == 33\n\
         np.save({:?}, np.array({}, dtype=dt))\n",
        path.to_str().unwrap(),
        python_rows(&labels, true)
    );
    let Some(_) = run_python(&script) else { return };
    assert_labels_eq(&read_bbox_npy(&path).unwrap(), &labels);
}

/// The Gen1 dtype as NumPy lays it out with alignment (padding after `class_id`) reads in, and
/// what prism writes back from it reads in NumPy with every field equal.
#[test]
fn the_padded_gen1_layout_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (gen1, ours) = (dir.path().join("gen1.npy"), dir.path().join("ours.npy"));
    let labels = sample_labels();
    let write = format!(
        "import numpy as np\n\
         dt = np.dtype([('ts','<u8'),('x','<f4'),('y','<f4'),('w','<f4'),('h','<f4'),('class_id','u1'),('confidence','<f4'),('track_id','<u4')], align=True)\n\
         assert dt.itemsize == 40 and dt.fields['confidence'][1] == 28\n\
         np.save({:?}, np.array({}, dtype=dt))\n",
        gen1.to_str().unwrap(),
        python_rows(&labels, true)
    );
    let Some(_) = run_python(&write) else { return };
    let read = read_bbox_npy(&gen1).unwrap();
    assert_labels_eq(&read, &labels);
    write_bbox_npy(&ours, &read).unwrap();
    let compare = format!(
        "import numpy as np\n\
         a, b = np.load({:?}), np.load({:?})\n\
         assert len(a) == len(b) == {}\n\
         for x, y in [('ts','t'),('x','x'),('y','y'),('w','w'),('h','h'),('class_id','class_id'),('track_id','track_id'),('confidence','class_confidence')]:\n\
         \x20   assert (a[x].astype(np.float64) == b[y].astype(np.float64)).all(), x\n",
        gen1.to_str().unwrap(),
        ours.to_str().unwrap(),
        labels.len()
    );
    run_python(&compare).unwrap();
}

#[test]
fn reads_the_rvt_dtype_and_layout_variants() {
    let dir = tempfile::tempdir().unwrap();
    let labels = sample_labels();
    let rows = python_rows(&labels, false);
    let variants = [
        // RVT BBOX_DTYPE exactly as box_loading.py builds it.
        ("rvt", "np.dtype({'names':['t','x','y','w','h','class_id','track_id','class_confidence'], 'formats':['<i8','<f4','<f4','<f4','<f4','<u4','<u4','<f4'], 'offsets':[0,8,12,16,20,24,28,32], 'itemsize':40})"),
        // Aligned struct with padding and a shuffled field order.
        ("aligned", "np.dtype([('t','<i8'),('x','<f4'),('y','<f4'),('w','<f4'),('h','<f4'),('class_id','u1'),('track_id','<u4'),('class_confidence','<f4')], align=True)"),
        // Wider types and extra fields.
        ("wide", "np.dtype([('t','<i8'),('x','<f8'),('y','<f8'),('w','<f8'),('h','<f8'),('class_id','<i8'),('track_id','<u8'),('class_confidence','<f8'),('extra','<U3')])"),
    ];
    let mut script = String::from("import numpy as np\n");
    for (name, dtype) in variants {
        let path = dir.path().join(format!("{name}.npy"));
        let extra = if name == "wide" { ", 'abc'" } else { "" };
        script.push_str(&format!(
            "dt = {dtype}\nrows = [r[:8] + ({extra:?},) if len(dt.names) > 8 else r for r in {rows}]\n\
             np.save({:?}, np.array([tuple(r) if len(dt.names) == 8 else r[:8] + ('abc',) for r in rows], dtype=dt))\n",
            path.to_str().unwrap()
        ));
    }
    let Some(_) = run_python(&script) else { return };
    for (name, _) in variants {
        let got = read_bbox_npy(dir.path().join(format!("{name}.npy")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_labels_eq(&got, &labels);
    }
}

#[test]
fn numpy_reads_what_we_write_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours_bbox.npy");
    let labels = sample_labels();
    write_bbox_npy(&path, &labels).unwrap();
    let script = format!(
        "import numpy as np\n\
         a = np.load({:?})\n\
         assert a.dtype.itemsize == 40, a.dtype\n\
         assert a.dtype.names == ('t','x','y','w','h','class_id','track_id','class_confidence'), a.dtype.names\n\
         assert [a.dtype.fields[n][1] for n in a.dtype.names] == [0,8,12,16,20,24,28,32]\n\
         assert a.dtype['t'] == np.dtype('<i8') and a.dtype['class_id'] == np.dtype('<u4')\n\
         for r in a.tolist(): print(*[repr(v) for v in r])\n",
        path.to_str().unwrap()
    );
    let Some(out) = run_python(&script) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), labels.len());
    for (line, b) in lines.iter().zip(&labels) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0].parse::<i64>().unwrap(), b.t);
        for (text, want) in f[1..5].iter().zip([b.x, b.y, b.w, b.h]) {
            assert_eq!(text.parse::<f64>().unwrap() as f32, want);
        }
        assert_eq!(f[5].parse::<u32>().unwrap(), b.class_id);
        assert_eq!(f[6].parse::<u32>().unwrap(), b.track_id);
        assert_eq!(f[7].parse::<f64>().unwrap() as f32, b.confidence);
    }
}

#[test]
fn round_trips_in_rust_including_empty_files() {
    let labels = sample_labels();
    assert_labels_eq(
        &parse_bbox_npy(&encode_bbox_npy(&labels).unwrap()).unwrap(),
        &labels,
    );
    assert!(parse_bbox_npy(&encode_bbox_npy(&[]).unwrap())
        .unwrap()
        .is_empty());
    // Header padded so the data starts on a 64-byte boundary, as NumPy does.
    let bytes = encode_bbox_npy(&labels).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(bytes.len(), 10 + header_len + 40 * labels.len());
}

fn header_with(descr: &str, shape: &str) -> Vec<u8> {
    let dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[test]
fn bad_files_give_errors_that_name_the_problem() {
    let reason = |bytes: &[u8]| parse_bbox_npy(bytes).unwrap_err().to_string();
    let big_endian = header_with("[('t', '>i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', '<u4')]", "(1,)");
    let mut with_data = big_endian.clone();
    with_data.extend_from_slice(&[0; 28]);
    let r = reason(&with_data);
    assert!(r.contains("'t'") && r.contains("big-endian"), "{r}");
    let r = reason(&header_with(
        "[('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('class_id', '<u4')]",
        "(0,)",
    ));
    assert!(r.contains("missing field 'h'"), "{r}");
    let r = reason(&header_with(
        "[('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', '<u4')]",
        "(0,)",
    ));
    assert!(r.contains("'t' or 'ts'"), "{r}");
    let r = reason(&header_with("'<f4'", "(3,)"));
    assert!(r.contains("not a structured array"), "{r}");
    let r = reason(&header_with("[('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', '<u4')]", "(2,)"));
    assert!(r.contains("needs 2 x 28"), "{r}");
    assert!(reason(b"hello").contains("magic"));
    // The file-level API wraps the reason in EventError::Labels with the path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_bbox.npy");
    std::fs::write(&path, &with_data).unwrap();
    match read_bbox_npy(&path) {
        Err(EventError::Labels { path: p, source }) => {
            assert_eq!(p, path);
            assert!(source.to_string().contains("big-endian"));
        }
        other => panic!("expected a labels error, got {other:?}"),
    }
    assert!(matches!(
        read_bbox_npy(Path::new("/nonexistent/x.npy")),
        Err(EventError::Io { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_bbox_npy(&bytes);
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = parse_bbox_npy(&with_magic);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..8),
        cut in 0usize..600,
    ) {
        let mut bytes = encode_bbox_npy(&sample_labels()[..4]).unwrap();
        for (at, value) in edits {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        let _ = parse_bbox_npy(&bytes);
        bytes.truncate(cut);
        let _ = parse_bbox_npy(&bytes);
    }

    #[test]
    fn mutated_headers_never_panic(header in "[\\[\\](){}',: a-z0-9<>|_-]{0,120}") {
        let _ = parse_bbox_npy(&header_with(&header, "(1,)"));
        let _ = parse_bbox_npy(&header_with("[('t', '<i8')]", &header));
    }
}

/// Found by the `labels` fuzz target: 396 bytes whose header nests ~80 brackets kept npyz's
/// header parser busy past libFuzzer's 10 s timeout. Refused up front now, at once.
#[test]
fn deeply_nested_headers_are_refused_at_once() {
    let bytes = include_bytes!("regressions/labels-nested-header.npy");
    let started = std::time::Instant::now();
    let err = prism_events::labels::parse_bbox_npy(bytes).unwrap_err();
    assert!(err.to_string().contains("nests brackets"), "{err}");
    assert!(
        started.elapsed().as_secs_f64() < 1.0,
        "{:?}",
        started.elapsed()
    );
    // A header longer than numpy's limit is refused too.
    let mut long = b"\x93NUMPY\x02\x00".to_vec();
    long.extend_from_slice(&20_000u32.to_le_bytes());
    long.extend(std::iter::repeat_n(b' ', 20_000));
    let err = prism_events::labels::parse_bbox_npy(&long).unwrap_err();
    assert!(err.to_string().contains("numpy reads at most"), "{err}");
}

/// The 1-D index and time arrays of RVT's preprocessed datasets, every integer type numpy
/// writes, against numpy's own files.
#[test]
fn integer_arrays_read_as_numpy_wrote_them() {
    let script = r#"
import io, numpy as np, sys
values = [0, 1, -2, 127, -128, 100000, -7]
for dt in ['<i1', '<i2', '<i4', '<i8', '<u1', '<u2', '<u4', '<u8', '|u1', '|i1']:
    a = np.array([v for v in values if np.iinfo(dt).min <= v <= np.iinfo(dt).max], dtype=dt)
    b = io.BytesIO(); np.save(b, a)
    print(dt, b.getvalue().hex(), ','.join(str(int(v)) for v in a))
"#;
    let Some(out) = run_python(script) else {
        return;
    };
    let mut checked = 0;
    for line in out.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let bytes: Vec<u8> = (0..parts[1].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&parts[1][i..i + 2], 16).unwrap())
            .collect();
        let want: Vec<i64> = parts[2].split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(parse_int_npy(&bytes).unwrap(), want, "{}", parts[0]);
        checked += 1;
    }
    assert_eq!(checked, 10);
}

#[test]
fn integer_arrays_refuse_what_they_cannot_hold() {
    let with_data = |descr: &str, shape: &str, data: &[u8]| {
        let mut b = header_with(descr, shape);
        b.extend_from_slice(data);
        b
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not numpy".to_vec(), "magic"),
        (with_data("'<f8'", "(1,)", &[0; 8]), "not an integer array"),
        (with_data("'<i8'", "(1, 1)", &[0; 8]), "not one-dimensional"),
        (with_data("'<i8'", "(3,)", &[0; 16]), "data holds 16 bytes"),
        (with_data("'>i8'", "(1,)", &[0; 8]), "big-endian"),
        (with_data("'<u8'", "(1,)", &[0xff; 8]), "does not fit"),
        (
            with_data("[('t', '<i8')]", "(1,)", &[0; 8]),
            "not an integer array",
        ),
    ];
    for (bytes, expected) in cases {
        let err = parse_int_npy(&bytes).unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // The signed case sign-extends.
    let mut minus_one = header_with("'<i2'", "(2,)");
    minus_one.extend_from_slice(&[0xff, 0xff, 0x05, 0x00]);
    assert_eq!(parse_int_npy(&minus_one).unwrap(), vec![-1, 5]);
}
