//! The two AEDAT 4.0 flatbuffer tables prism reads, written the way `flatc` writes Rust for
//! iniVation's schemas (`io_header.fbs`, `events.fbs` of dv-processing), on the kept
//! `flatbuffers` crate. Debian's `flatc` (2.0.8) generates code for a crate API three major
//! versions older than the one used here, so the few accessors are written out instead.
//!
//! ```text
//! file_identifier "IOHE";
//! enum Compression : int32 { None, Lz4, Lz4High, Zstd, ZstdHigh }
//! table IOHeader { compression: Compression = None; file_data_position: int64 = -1;
//!                  description: string; }
//! file_identifier "EVTS";
//! struct Event { t: int64; x: int16; y: int16; on: bool; }   // 16 bytes, aligned to 8
//! table EventPacket { elements: [Event]; }
//! ```
//!
//! The `flatbuffers` crate's `Follow` trait is `unsafe` to implement, hence the one `allow`.
//! Every value here is reached only through [`flatbuffers::root`] /
//! [`flatbuffers::size_prefixed_root`], which run the verifier over the whole table first
//! (offsets, vtables, string and vector bounds): the accessors never read outside the buffer.
//! Events are read from the verified vector's bytes in safe code ([`EventPacket::event_bytes`]).
#![allow(unsafe_code)]

use flatbuffers::{
    Follow, ForwardsUOffset, InvalidFlatbuffer, SimpleToVerifyInSlice, Table, Vector, Verifiable,
    Verifier,
};

/// Bytes of one `Event` struct in a packet's `elements` vector.
pub const EVENT_SIZE: usize = 16;

/// The file header table (`IOHeader`).
#[derive(Clone, Copy)]
pub struct IoHeader<'a> {
    table: Table<'a>,
}

impl IoHeader<'_> {
    const VT_COMPRESSION: u16 = 4;
    const VT_FILE_DATA_POSITION: u16 = 6;
    const VT_DESCRIPTION: u16 = 8;

    /// The `Compression` enum value (0 none, 1 LZ4, 2 LZ4 high, 3 Zstd, 4 Zstd high).
    pub fn compression(&self) -> i32 {
        // SAFETY: the table was verified (see the module doc); the slot holds an i32.
        unsafe { self.table.get::<i32>(Self::VT_COMPRESSION, Some(0)) }.unwrap_or(0)
    }

    /// Byte offset of the file data table, `-1` when the recorder did not write one.
    pub fn file_data_position(&self) -> i64 {
        // SAFETY: as above; the slot holds an i64.
        unsafe { self.table.get::<i64>(Self::VT_FILE_DATA_POSITION, Some(-1)) }.unwrap_or(-1)
    }

    /// The XML description of the streams.
    pub fn description(&self) -> Option<&str> {
        // SAFETY: as above; the slot holds an offset to a verified string.
        unsafe {
            self.table
                .get::<ForwardsUOffset<&str>>(Self::VT_DESCRIPTION, None)
        }
    }
}

impl<'a> Follow<'a> for IoHeader<'a> {
    type Inner = IoHeader<'a>;

    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        // SAFETY: the caller's contract (a verified table at `loc`) is passed on unchanged.
        Self {
            table: unsafe { Table::new(buf, loc) },
        }
    }
}

impl Verifiable for IoHeader<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<i32>("compression", Self::VT_COMPRESSION, false)?
            .visit_field::<i64>("file_data_position", Self::VT_FILE_DATA_POSITION, false)?
            .visit_field::<ForwardsUOffset<&str>>("description", Self::VT_DESCRIPTION, false)?
            .finish();
        Ok(())
    }
}

/// One `Event` struct, kept as its 16 little-endian bytes.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Event(pub [u8; EVENT_SIZE]);

impl SimpleToVerifyInSlice for Event {}

impl<'a> Follow<'a> for Event {
    type Inner = Event;

    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        let mut bytes = [0u8; EVENT_SIZE];
        // Bounds-checked copy: a short buffer would panic, never read out of bounds.
        bytes.copy_from_slice(&buf[loc..loc + EVENT_SIZE]);
        Event(bytes)
    }
}

/// An `EventPacket` table.
#[derive(Clone, Copy)]
pub struct EventPacket<'a> {
    table: Table<'a>,
}

impl<'a> EventPacket<'a> {
    const VT_ELEMENTS: u16 = 4;

    /// The packet's events as consecutive 16-byte `Event` structs (empty when absent).
    pub fn event_bytes(&self) -> &'a [u8] {
        // SAFETY: the table was verified; the slot holds an offset to a vector of 16-byte
        // structs whose whole byte range the verifier checked.
        let elements = unsafe {
            self.table
                .get::<ForwardsUOffset<Vector<'a, Event>>>(Self::VT_ELEMENTS, None)
        };
        elements.map_or(&[], |v| v.bytes())
    }
}

impl<'a> Follow<'a> for EventPacket<'a> {
    type Inner = EventPacket<'a>;

    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        // SAFETY: the caller's contract (a verified table at `loc`) is passed on unchanged.
        Self {
            table: unsafe { Table::new(buf, loc) },
        }
    }
}

impl Verifiable for EventPacket<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<Vector<'_, Event>>>(
                "elements",
                Self::VT_ELEMENTS,
                false,
            )?
            .finish();
        Ok(())
    }
}
