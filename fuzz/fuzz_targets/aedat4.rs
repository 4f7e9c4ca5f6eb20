//! Fuzzes the AEDAT 4.0 decoder. The first input byte picks the reader options (bit 7: LZ4
//! packets, else uncompressed ones). The rest is a whole file when it starts with the AEDAT
//! magic (the header path), else the packets after a valid header declaring an event stream
//! (0, 346x260), a frame stream (1) and an IMU stream (2).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const MAGIC: &[u8] = b"#!AER-DAT4.0\r\n";
const STREAMS: &str = r#"<dv version="2.0"><node name="outInfo" path="/o/"><node name="0" path="/o/0/"><attr key="typeIdentifier" type="string">EVTS</attr><node name="info" path="/o/0/info/"><attr key="sizeX" type="int">346</attr><attr key="sizeY" type="int">260</attr></node></node><node name="1" path="/o/1/"><attr key="typeIdentifier" type="string">FRME</attr></node><node name="2" path="/o/2/"><attr key="typeIdentifier" type="string">IMUS</attr></node></node></dv>"#;

/// Magic and a size-prefixed `IOHeader` with `compression` and no data table.
fn header(compression: i32) -> Vec<u8> {
    let mut b = flatbuffers::FlatBufferBuilder::new();
    let description = b.create_string(STREAMS);
    let table = b.start_table();
    b.push_slot::<i32>(4, compression, 0);
    b.push_slot_always(8, description);
    let root = b.end_table(table);
    b.finish_size_prefixed(root, Some("IOHE"));
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(b.finished_data());
    file
}

static HEADERS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let headers = HEADERS.get_or_init(|| [header(0), header(1)]);
    let head: &[u8] = if rest.starts_with(MAGIC) {
        &[]
    } else {
        &headers[usize::from(knob >> 7)]
    };
    let target = rest
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_le_bytes);
    prism_events_fuzz::decode_with("fuzz.aedat4", head, rest, knob, target);
});
