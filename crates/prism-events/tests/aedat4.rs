//! The AEDAT 4.0 decoder on faery 0.7.1's `davis346.aedat4`, against two independent readers:
//! evlib's (the provisioned venv reads the same file) and faery's own test suite (its
//! `tests/assets.py` lists a SHA3-224 digest of each event field as faery decodes it). The file
//! re-packed with every compression the format has, cut short and corrupted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use prism_events::reader::read_all;
use prism_events::testdata::{faery, python};
use prism_events::{open, open_with, EventChunk, EventError, Format, ReaderOptions, SensorSize};

/// faery 0.7.1 `tests/assets.py`, `davis346.aedat4`: SHA3-224 of the little-endian `t` (u64),
/// `x`, `y` (u16) and `on` (bool) columns of every event packet, in file order.
const FAERY_DIGESTS: [(&str, &str); 4] = [
    (
        "t",
        "f1e093cad5afb6ecb971dfa2ef7646ab4ae0f467f73a48804e40bb68",
    ),
    (
        "x",
        "1d8ea97b0febadfde24dd0b9e608682fc6934fc88656823b15f0e7a7",
    ),
    (
        "y",
        "18f89da35f8f10b24c3407b03aa7f82bdd7c8e6ab5369e2c30f8bad0",
    ),
    (
        "on",
        "6f99cf01187da8a05e1a032f3782de51b87e51bdc31356669bdd7cb9",
    ),
];

fn decode(path: &Path, chunk_events: usize) -> EventChunk {
    let options = ReaderOptions {
        chunk_events,
        ..ReaderOptions::default()
    };
    let mut reader = open_with(path, options).unwrap();
    let all = read_all(reader.as_mut()).unwrap();
    assert_eq!(reader.stats().events, all.len() as u64);
    all
}

fn write_columns(dir: &Path, events: &EventChunk) {
    let t: Vec<u8> = events.t.iter().flat_map(|v| v.to_le_bytes()).collect();
    let x: Vec<u8> = events.x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let y: Vec<u8> = events.y.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("t"), t).unwrap();
    std::fs::write(dir.join("x"), x).unwrap();
    std::fs::write(dir.join("y"), y).unwrap();
    std::fs::write(dir.join("on"), &events.p).unwrap();
}

/// Digests our columns the way faery's test does, and compares them with evlib's reading.
const CHECK: &str = r#"
import hashlib, json, sys
import numpy as np, evlib
d, src = sys.argv[1], sys.argv[2]
cols = {"t": np.fromfile(d + "/t", "<i8"), "x": np.fromfile(d + "/x", "<u2"),
        "y": np.fromfile(d + "/y", "<u2"), "on": np.fromfile(d + "/on", "u1")}
digests = {k: hashlib.sha3_224(v.astype({"t": "<u8", "x": "<u2", "y": "<u2", "on": "?"}[k]).tobytes()).hexdigest()
           for k, v in cols.items()}
ev = evlib.load_events(src)
df = ev.collect() if hasattr(ev, "collect") else ev
t = df["t"].dt.total_microseconds().to_numpy().astype("<i8")
same = {"t": bool(np.array_equal(t, cols["t"])),
        "x": bool(np.array_equal(df["x"].to_numpy().astype("<i4"), cols["x"].astype("<i4"))),
        "y": bool(np.array_equal(df["y"].to_numpy().astype("<i4"), cols["y"].astype("<i4"))),
        "on": bool(np.array_equal(df["polarity"].to_numpy() > 0, cols["on"] > 0))}
print(json.dumps({"digests": digests, "evlib_events": len(df), "evlib_same": same,
                  "evlib_first_t": int(t[0]), "evlib_last_t": int(t[-1])}))
"#;

#[test]
fn davis346_equals_faery_and_evlib() {
    let (Some(path), Some(py)) = (faery("davis346.aedat4"), python()) else {
        return;
    };
    let mut reader = open(&path).unwrap();
    assert_eq!(reader.format(), Format::Aedat4);
    assert_eq!(
        reader.sensor_size(),
        Some(SensorSize {
            width: 346,
            height: 260
        })
    );
    let events = read_all(reader.as_mut()).unwrap();
    assert_eq!(reader.progress().0, reader.progress().1);
    assert_eq!(reader.stats().time_repairs, 0);
    // faery's time range for the file: 441434:12:27.368868 to 441434:12:29.728814 (exclusive).
    let hours = 441_434_i64 * 3_600_000_000 + 12 * 60_000_000;
    assert_eq!(events.t[0], hours + 27_368_868);
    assert_eq!(*events.t.last().unwrap() + 1, hours + 29_728_814);

    let dir = tempfile::tempdir().unwrap();
    write_columns(dir.path(), &events);
    let out = Command::new(py)
        .args(["-c", CHECK])
        .arg(dir.path())
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.rsplit(|&b| b == b'\n').nth(1).unwrap()).unwrap();
    for (field, digest) in FAERY_DIGESTS {
        assert_eq!(report["digests"][field], digest, "faery digest of {field}");
    }
    assert_eq!(report["evlib_events"], events.len() as u64);
    for field in ["t", "x", "y", "on"] {
        assert_eq!(report["evlib_same"][field], true, "evlib's {field} column");
    }
    assert_eq!(events.len(), 78_830);
}

#[test]
fn chunk_sizes_and_seeks_give_the_full_decode() {
    let Some(path) = faery("davis346.aedat4") else {
        return;
    };
    let full = decode(&path, 1 << 16);
    for chunk in [1, 777, 5000] {
        assert!(decode(&path, chunk) == full, "chunk {chunk}");
    }
    let (first, last) = (full.t[0], *full.t.last().unwrap());
    let mid = full.t[full.len() / 2];
    let targets = [i64::MIN, first, first + 1, mid, mid + 1, last, last + 1];
    let mut reader = open_with(
        &path,
        ReaderOptions {
            chunk_events: 3000,
            ..ReaderOptions::default()
        },
    )
    .unwrap();
    for &target in targets.iter().chain(targets.iter().rev()) {
        reader.seek_time(target).unwrap();
        let got = read_all(reader.as_mut()).unwrap();
        let mut want = full.clone();
        want.drain_front(full.t.partition_point(|&t| t < target));
        assert!(got == want, "seek to {target}");
    }
}

// ---- Re-packing the real file: other compressions, no data table, damage ----

struct Packet {
    stream: i32,
    /// Decompressed, size-prefixed flatbuffer.
    body: Vec<u8>,
}

/// The packets of an LZ4 file, decompressed, and its XML description.
fn unpack(path: &Path) -> (String, Vec<Packet>, usize) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u32::from_le_bytes(bytes[14..18].try_into().unwrap()) as usize;
    let start = 18 + header_len;
    let xml = {
        let h = &bytes[18..start];
        let from = h.windows(3).position(|w| w == b"<dv").unwrap();
        let to = h.windows(5).position(|w| w == b"</dv>").unwrap() + 5;
        String::from_utf8(h[from..to].to_vec()).unwrap()
    };
    // The header's file_data_position says where packets stop.
    let end = {
        let root = u32::from_le_bytes(bytes[18..22].try_into().unwrap()) as usize;
        let table = 18 + root;
        let vt = table - i32::from_le_bytes(bytes[table..table + 4].try_into().unwrap()) as usize;
        let slot = u16::from_le_bytes(bytes[vt + 6..vt + 8].try_into().unwrap()) as usize;
        assert_ne!(slot, 0, "the sample file has a data table");
        i64::from_le_bytes(bytes[table + slot..table + slot + 8].try_into().unwrap()) as usize
    };
    let mut packets = Vec::new();
    let mut at = start;
    while at < end {
        let stream = i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let raw = &bytes[at + 8..at + 8 + size];
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(raw), &mut body)
            .unwrap();
        packets.push(Packet { stream, body });
        at += 8 + size;
    }
    (xml, packets, start)
}

fn io_header(compression: i32, data_table: Option<i64>, xml: &str) -> Vec<u8> {
    let mut b = flatbuffers::FlatBufferBuilder::new();
    let description = b.create_string(xml);
    let table = b.start_table();
    if let Some(at) = data_table {
        b.push_slot::<i64>(6, at, -1);
    }
    b.push_slot::<i32>(4, compression, 0);
    b.push_slot_always(8, description);
    let root = b.end_table(table);
    b.finish_size_prefixed(root, Some("IOHE"));
    b.finished_data().to_vec()
}

/// Writes `packets` as an AEDAT 4.0 file with `compression` (0 none, 1 LZ4, 3 Zstd), and no
/// data table.
/// Returns each packet's offset and stream.
fn repack(out: &Path, xml: &str, packets: &[Packet], compression: i32) -> Vec<(u64, i32)> {
    let header = io_header(compression, None, xml);
    let mut bytes = b"#!AER-DAT4.0\r\n".to_vec();
    bytes.extend(&header);
    let mut offsets = Vec::new();
    for p in packets {
        let body = match compression {
            0 => p.body.clone(),
            1 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                std::io::Write::write_all(&mut e, &p.body).unwrap();
                e.finish().unwrap()
            }
            3 => zstd::stream::encode_all(&p.body[..], 3).unwrap(),
            _ => unreachable!(),
        };
        offsets.push((bytes.len() as u64, p.stream));
        bytes.extend(p.stream.to_le_bytes());
        bytes.extend((body.len() as u32).to_le_bytes());
        bytes.extend(body);
    }
    std::fs::write(out, bytes).unwrap();
    offsets
}

type Repacked = (PathBuf, EventChunk, Vec<(u64, i32)>);

fn repacked(dir: &Path, name: &str, compression: i32) -> Option<Repacked> {
    let path = faery("davis346.aedat4")?;
    let full = decode(&path, 1 << 16);
    let (xml, packets, _) = unpack(&path);
    let out = dir.join(name);
    let offsets = repack(&out, &xml, &packets, compression);
    Some((out, full, offsets))
}

#[test]
fn every_compression_and_no_data_table_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for (name, compression) in [("none.aedat4", 0), ("lz4.aedat4", 1), ("zstd.aedat4", 3)] {
        let Some((path, full, _)) = repacked(dir.path(), name, compression) else {
            return;
        };
        assert!(decode(&path, 4096) == full, "{name}");
    }
}

fn read_until_error(path: &Path) -> (EventChunk, EventError) {
    let mut reader = open(path).unwrap();
    let mut all = EventChunk::default();
    let mut chunk = EventChunk::default();
    loop {
        match reader.read_chunk(&mut chunk) {
            Ok(true) => all.extend_from(&chunk),
            Ok(false) => panic!("{} read to its end without an error", path.display()),
            Err(e) => return (all, e),
        }
    }
}

#[test]
fn damaged_files_give_clear_errors_after_the_good_events() {
    let dir = tempfile::tempdir().unwrap();
    let Some((path, full, offsets)) = repacked(dir.path(), "cut.aedat4", 3) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();

    // Cut in the middle of a packet: every event before it, then an error naming the packet.
    let cut_packet = offsets[offsets.len() / 2].0;
    let cut = dir.path().join("cut-short.aedat4");
    std::fs::write(&cut, &bytes[..cut_packet as usize + 20]).unwrap();
    let (got, err) = read_until_error(&cut);
    let want = decode(&path, 1 << 16);
    assert!(got.len() < full.len() && got.t[..] == want.t[..got.len()]);
    let msg = err.to_string();
    assert!(
        matches!(err, EventError::Corrupt { offset, .. } if offset == cut_packet),
        "{msg}"
    );
    assert!(msg.contains("bytes where"), "{msg}");

    // An event packet whose compressed bytes are damaged.
    let events_stream = 0;
    let (damaged, _) = offsets[2..]
        .iter()
        .copied()
        .find(|&(_, stream)| stream == events_stream)
        .unwrap();
    let mut garbled = bytes.clone();
    let body = damaged as usize + 8;
    for b in &mut garbled[body..body + 16] {
        *b ^= 0x5A;
    }
    let bad = dir.path().join("garbled.aedat4");
    std::fs::write(&bad, &garbled).unwrap();
    let mut reader = open(&bad).unwrap();
    let err = read_all(reader.as_mut()).unwrap_err();
    assert!(
        matches!(err, EventError::Corrupt { offset, .. } if offset == damaged),
        "{err}"
    );

    // A packet of a stream the header does not declare.
    let mut stray = bytes.clone();
    let at = offsets[1].0 as usize;
    stray[at..at + 4].copy_from_slice(&99i32.to_le_bytes());
    let bad = dir.path().join("stray.aedat4");
    std::fs::write(&bad, &stray).unwrap();
    let mut reader = open(&bad).unwrap();
    let err = read_all(reader.as_mut()).unwrap_err().to_string();
    assert!(err.contains("stream 99"), "{err}");
}

#[test]
fn bad_headers_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // `io_header` writes the size prefix; the junk case gets one here.
    let with_header = |header: &[u8]| {
        let mut b = b"#!AER-DAT4.0\r\n".to_vec();
        b.extend(header);
        b
    };
    let mut junk = 40u32.to_le_bytes().to_vec();
    junk.extend([7u8; 40]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "len.aedat4",
            with_header(&[0, 0])[..16].to_vec(),
            "too short",
        ),
        (
            "claims.aedat4",
            {
                let mut b = b"#!AER-DAT4.0\r\n".to_vec();
                b.extend(1_000_000u32.to_le_bytes());
                b.extend([0u8; 64]);
                b
            },
            "the header claims 1000000 bytes",
        ),
        (
            "junk.aedat4",
            with_header(&junk),
            "IOHeader flatbuffer is invalid",
        ),
        (
            "compression.aedat4",
            with_header(&io_header(9, None, "<dv/>")),
            "unknown compression 9",
        ),
        (
            "xml.aedat4",
            with_header(&io_header(1, None, "<dv")),
            "not XML",
        ),
        (
            "frames-only.aedat4",
            with_header(&io_header(
                1,
                None,
                r#"<dv><node name="outInfo"><node name="1"><attr key="typeIdentifier">FRME</attr></node></node></dv>"#,
            )),
            "no polarity event stream (`EVTS`); the file has [FRME]",
        ),
        (
            "table.aedat4",
            with_header(&io_header(
                1,
                Some(1 << 40),
                r#"<dv><node name="outInfo"><node name="0"><attr key="typeIdentifier">EVTS</attr></node></node></dv>"#,
            )),
            "file data table",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = write(name, &bytes);
        let err = match open(&path) {
            Ok(_) => panic!("{name} opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{name}: {err}");
    }
    // Named `.aedat4` without the magic: refused, not guessed.
    let path = write("nomagic.aedat4", &[0u8; 100]);
    let err = open(&path).err().unwrap().to_string();
    assert!(err.contains("AER-DAT4.0"), "{err}");
    // Without a sensor size in the description, the one the user gives is used.
    let path = write(
        "nosize.aedat4",
        &with_header(&io_header(
            0,
            None,
            r#"<dv><node name="outInfo"><node name="0"><attr key="typeIdentifier">EVTS</attr></node></node></dv>"#,
        )),
    );
    assert_eq!(open(&path).unwrap().sensor_size(), None);
    let sensor = SensorSize {
        width: 640,
        height: 480,
    };
    let options = ReaderOptions {
        sensor_size: Some(sensor),
        ..ReaderOptions::default()
    };
    let mut reader = open_with(&path, options).unwrap();
    assert_eq!(reader.sensor_size(), Some(sensor));
    assert!(read_all(reader.as_mut()).unwrap().is_empty());
}
