//! iniVation AEDAT 4.0 (`.aedat4`, written by DV and dv-processing): the polarity-event stream.
//!
//! Layout: the magic `#!AER-DAT4.0\r\n`, then a size-prefixed `IOHeader` flatbuffer (the
//! compression of every packet, the offset of the file data table, an XML description of the
//! streams), then packets: `i32` stream id, `u32` size, and that many bytes of one compressed
//! (none, LZ4 frame or Zstd frame), size-prefixed flatbuffer. Packets of the stream whose
//! `typeIdentifier` is `EVTS` hold `EventPacket`s of 16-byte `Event` structs (`i64 t` in µs,
//! `i16 x`, `i16 y`, `bool on`); frames, IMU samples and triggers are skipped unread. The data
//! table at the end (an index the recorder writes on close) is not needed: reading stops where
//! it starts, and a file without one (a recording cut short) is read to its end.
//!
//! Pieces are read with kept crates: `flatbuffers` (verified roots, see `schema.rs`),
//! `lz4_flex` and `zstd` for the packets, `roxmltree` for the description. Only the first `EVTS`
//! stream is read. Time order, bounds and seeking follow the same gate and seek index as the
//! other decoders; errors about single events give the event's number in the stream.

mod description;
mod schema;

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::chunk::EventChunk;
use crate::error::{EventError, Result};
use crate::policy::{update_stats, Gate};
use crate::reader::{EventReader, Format, ReaderOptions, ReaderStats, SensorSize};
use crate::seek_index::{SeekIndex, BYTE_STRIDE};

pub use description::Stream;

/// First bytes of every AEDAT 4.0 file.
pub const MAGIC: &[u8; 14] = b"#!AER-DAT4.0\r\n";
/// Largest `IOHeader` accepted (real ones are a few kB of XML).
const MAX_HEADER: u64 = 16 << 20;
/// Largest decompressed packet accepted: 4 million events, far above what recorders write
/// (a few thousand per packet); stops a decompression bomb from taking the memory.
const MAX_PACKET: u64 = 64 << 20;
/// Bytes of a packet header: stream id and size.
const PACKET_HEADER: u64 = 8;

/// How every packet of a file is compressed (`IOHeader.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_header(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::None),
            1 | 2 => Some(Self::Lz4),
            3 | 4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// Decompresses `raw` into `out` (cleared first), at most [`MAX_PACKET`] bytes.
    fn decompress(self, raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
        out.clear();
        let read = match self {
            Self::None => {
                out.extend_from_slice(raw);
                Ok(raw.len())
            }
            Self::Lz4 => lz4_flex::frame::FrameDecoder::new(raw)
                .take(MAX_PACKET + 1)
                .read_to_end(out),
            Self::Zstd => zstd::stream::read::Decoder::with_buffer(raw)
                .and_then(|d| d.take(MAX_PACKET + 1).read_to_end(out)),
        };
        let name = match self {
            Self::None => "uncompressed",
            Self::Lz4 => "LZ4",
            Self::Zstd => "Zstd",
        };
        match read {
            Ok(n) if n as u64 > MAX_PACKET => Err(format!(
                "the {name} packet decompresses to over {} MiB",
                MAX_PACKET >> 20
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("bad {name} data: {e}")),
        }
    }
}

/// Streams polarity events out of an AEDAT 4.0 file.
pub struct Aedat4Reader {
    path: PathBuf,
    file: BufReader<File>,
    /// Offset of the first packet.
    data_start: u64,
    /// Where packets end: the file data table, or the end of the file.
    data_end: u64,
    /// Offset of the next packet header.
    pos: u64,
    compression: Compression,
    /// The `EVTS` stream read, and every stream id the description declares.
    stream_id: i32,
    streams: Vec<Stream>,
    raw: Vec<u8>,
    packet: Vec<u8>,
    /// The current packet's `Event` structs, and the next one to decode.
    events: Vec<u8>,
    cursor: usize,
    /// Events of the stream before `events[0]`: error offsets count events.
    events_before: u64,
    /// Resume points at event packets, with the events before them.
    index: SeekIndex<u64>,
    gate: Gate,
    sensor: Option<SensorSize>,
    chunk_events: usize,
    stats: ReaderStats,
}

impl Aedat4Reader {
    pub fn open(path: &Path, options: ReaderOptions) -> Result<Self> {
        let io = |e| EventError::io(path, e);
        let bad = |reason: String| EventError::BadHeader {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = BufReader::new(File::open(path).map_err(io)?);
        let file_len = file.get_ref().metadata().map_err(io)?.len();
        let mut magic = [0u8; MAGIC.len()];
        if file_len < MAGIC.len() as u64 + 4 {
            return Err(EventError::UnknownFormat {
                path: path.to_path_buf(),
                reason: "too short for an AEDAT 4.0 header".into(),
            });
        }
        file.read_exact(&mut magic).map_err(io)?;
        if &magic != MAGIC {
            return Err(EventError::UnknownFormat {
                path: path.to_path_buf(),
                reason: "no `#!AER-DAT4.0` magic".into(),
            });
        }
        let mut len = [0u8; 4];
        file.read_exact(&mut len).map_err(io)?;
        let header_len = u64::from(u32::from_le_bytes(len));
        let data_start = MAGIC.len() as u64 + 4 + header_len;
        if header_len > MAX_HEADER || data_start > file_len {
            return Err(bad(format!(
                "the header claims {header_len} bytes; the file has {file_len}"
            )));
        }
        // The length is the flatbuffer's size prefix: alignment counts from it.
        let mut header = len.to_vec();
        header.resize(4 + header_len as usize, 0);
        file.read_exact(&mut header[4..]).map_err(io)?;
        let header = flatbuffers::size_prefixed_root::<schema::IoHeader>(&header)
            .map_err(|e| bad(format!("the IOHeader flatbuffer is invalid: {e}")))?;
        let compression = Compression::from_header(header.compression())
            .ok_or_else(|| bad(format!("unknown compression {}", header.compression())))?;
        let data_table = header.file_data_position();
        let data_end = if data_table < 0 {
            file_len
        } else {
            match u64::try_from(data_table) {
                Ok(end) if (data_start..=file_len).contains(&end) => end,
                _ => {
                    return Err(bad(format!(
                        "the file data table at byte {data_table} is outside the packets \
                         ({data_start}..{file_len})"
                    )))
                }
            }
        };
        let xml = header
            .description()
            .ok_or_else(|| bad("the header has no stream description".into()))?;
        let streams = description::streams(xml).map_err(bad)?;
        let Some(events) = streams.iter().find(|s| s.type_identifier == "EVTS") else {
            let kinds: Vec<_> = streams.iter().map(|s| s.type_identifier.as_str()).collect();
            return Err(bad(format!(
                "no polarity event stream (`EVTS`); the file has [{}]",
                kinds.join(", ")
            )));
        };
        let declared = match events.size {
            Some((w, h)) => Some(SensorSize {
                width: u16::try_from(w)
                    .ok()
                    .filter(|&w| w > 0)
                    .ok_or_else(|| bad(format!("sensor width {w} out of range")))?,
                height: u16::try_from(h)
                    .ok()
                    .filter(|&h| h > 0)
                    .ok_or_else(|| bad(format!("sensor height {h} out of range")))?,
            }),
            None => None,
        };
        let sensor = declared.or(options.sensor_size);
        let stream_id = events.id;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start,
            data_end,
            pos: data_start,
            compression,
            stream_id,
            streams,
            raw: Vec::new(),
            packet: Vec::new(),
            events: Vec::new(),
            cursor: 0,
            events_before: 0,
            index: SeekIndex::new(BYTE_STRIDE),
            gate: Gate::new(&options, sensor).counting_events(),
            sensor,
            chunk_events: options.chunk_events.max(1),
            stats: ReaderStats::default(),
        })
    }

    /// Every stream the file declares (events, frames, IMU, triggers, ...).
    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    fn corrupt(&self, offset: u64, reason: String) -> EventError {
        EventError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Loads the next packet of the event stream into `events`; `false` at the end.
    fn next_event_packet(&mut self) -> Result<bool> {
        self.events_before += (self.events.len() / schema::EVENT_SIZE) as u64;
        self.events.clear();
        self.cursor = 0;
        loop {
            let at = self.pos;
            if at >= self.data_end {
                return Ok(false);
            }
            if self.data_end - at < PACKET_HEADER {
                return Err(self.corrupt(
                    at,
                    format!(
                        "truncated packet header ({} of 8 bytes)",
                        self.data_end - at
                    ),
                ));
            }
            let mut head = [0u8; PACKET_HEADER as usize];
            self.file
                .read_exact(&mut head)
                .map_err(|e| EventError::io(&self.path, e))?;
            let id = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let size = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
            let room = self.data_end - at - PACKET_HEADER;
            if size > room {
                return Err(self.corrupt(
                    at,
                    format!("a packet of {size} bytes where {room} are left"),
                ));
            }
            self.pos = at + PACKET_HEADER + size;
            if id != self.stream_id {
                if !self.streams.iter().any(|s| s.id == id) {
                    return Err(self.corrupt(
                        at,
                        format!("a packet of stream {id}, which the header does not declare"),
                    ));
                }
                self.file
                    .seek_relative(size as i64)
                    .map_err(|e| EventError::io(&self.path, e))?;
                continue;
            }
            self.index
                .record(at, self.gate.max_seen(), self.events_before);
            self.raw.resize(size as usize, 0);
            self.file
                .read_exact(&mut self.raw)
                .map_err(|e| EventError::io(&self.path, e))?;
            if let Err(reason) = self.compression.decompress(&self.raw, &mut self.packet) {
                return Err(self.corrupt(at, reason));
            }
            if self.packet.get(8..12) != Some(b"EVTS".as_slice()) {
                return Err(self.corrupt(
                    at,
                    "an event-stream packet without the `EVTS` identifier".into(),
                ));
            }
            let packet = match flatbuffers::size_prefixed_root::<schema::EventPacket>(&self.packet)
            {
                Ok(packet) => packet,
                Err(e) => {
                    let reason = format!("invalid EventPacket flatbuffer: {e}");
                    return Err(self.corrupt(at, reason));
                }
            };
            self.events.extend_from_slice(packet.event_bytes());
            if !self.events.is_empty() {
                return Ok(true);
            }
        }
    }

    /// Decodes events of the current packet into `out` until it holds `limit`.
    fn decode(&mut self, limit: usize, out: &mut EventChunk) -> Result<()> {
        let structs = self.events.len() / schema::EVENT_SIZE;
        while self.cursor < structs && out.len() < limit {
            let k = self.cursor;
            self.cursor += 1;
            let e = &self.events[k * schema::EVENT_SIZE..(k + 1) * schema::EVENT_SIZE];
            let t = i64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let index = self.events_before + k as u64;
            let Some(t) = self.gate.admit_time(t, 1, index, &self.path)? else {
                continue;
            };
            let x = i16::from_le_bytes([e[8], e[9]]);
            let y = i16::from_le_bytes([e[10], e[11]]);
            let p = u8::from(e[12] != 0);
            // A negative coordinate is outside any sensor.
            let coord = |v: i16| u32::try_from(v).unwrap_or(u32::MAX);
            self.gate
                .push(out, t, coord(x), coord(y), p, index, &self.path)?;
        }
        Ok(())
    }
}

impl EventReader for Aedat4Reader {
    fn format(&self) -> Format {
        Format::Aedat4
    }

    fn sensor_size(&self) -> Option<SensorSize> {
        self.sensor
    }

    fn read_chunk(&mut self, out: &mut EventChunk) -> Result<bool> {
        out.clear();
        let limit = self.chunk_events;
        while out.len() < limit {
            if self.cursor * schema::EVENT_SIZE >= self.events.len() && !self.next_event_packet()? {
                break;
            }
            self.decode(limit, out)?;
        }
        update_stats(&mut self.stats, &self.gate, out);
        Ok(!out.is_empty())
    }

    fn seek_time(&mut self, t_us: i64) -> Result<()> {
        let (offset, max_before, events_before) = match self.index.resume_point(t_us) {
            Some(p) => (p.offset, p.max_before, p.state),
            None => (self.data_start, i64::MIN, 0),
        };
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| EventError::io(&self.path, e))?;
        self.pos = offset;
        self.events.clear();
        self.cursor = 0;
        self.events_before = events_before;
        self.gate.seek(t_us, max_before);
        Ok(())
    }

    fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    fn progress(&self) -> (u64, u64) {
        (self.pos.min(self.data_end), self.data_end)
    }
}
