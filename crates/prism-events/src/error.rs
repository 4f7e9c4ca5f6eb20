//! Errors of the event data layer. Every variant names the file and the place that went wrong.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a recognised event file ({reason})")]
    UnknownFormat { path: PathBuf, reason: String },
    #[error("{path}: bad header: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}: corrupt data at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: the event {} lies outside the {width}x{height} sensor (x={x}, y={y})", .unit.place(*.offset))]
    OutOfBounds {
        path: PathBuf,
        offset: u64,
        /// What `offset` counts.
        unit: OffsetUnit,
        x: u32,
        y: u32,
        width: u16,
        height: u16,
    },
    #[error("{path}: the timestamp goes backwards at the event {} ({prev} µs then {t} µs)", .unit.place(*.offset))]
    TimeBackwards {
        path: PathBuf,
        offset: u64,
        /// What `offset` counts.
        unit: OffsetUnit,
        prev: i64,
        t: i64,
    },
    #[error("{path}: HDF5: {reason}")]
    Hdf5 { path: PathBuf, reason: String },
    #[error("{}: labels: {source}", path.display())]
    Labels {
        path: PathBuf,
        #[source]
        source: crate::labels::LabelsError,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An event handed to a representation lies outside its configured frame.
    #[error("event {index}: (x={x}, y={y}) lies outside the {width}x{height} frame")]
    EventOutsideFrame {
        index: usize,
        x: u16,
        y: u16,
        width: usize,
        height: usize,
    },
    /// An event's polarity is neither 0 (OFF) nor 1 (ON).
    #[error("event {index}: polarity {p} is neither 0 nor 1")]
    BadPolarity { index: usize, p: u8 },
    /// Events handed to the windowing or a representation are not sorted by time.
    #[error("event {index}: timestamp {t} µs is before the previous one ({prev} µs)")]
    Unsorted { index: usize, prev: i64, t: i64 },
}

/// What the `offset` of an error counts: bytes into the file (the binary formats) or events
/// (HDF5 columns, the writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetUnit {
    Byte,
    Event,
}

impl OffsetUnit {
    /// `at byte 120` or `number 7`, after "the event".
    pub fn place(self, offset: u64) -> String {
        match self {
            Self::Byte => format!("at byte {offset}"),
            Self::Event => format!("number {offset}"),
        }
    }
}

impl EventError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = EventError> = std::result::Result<T, E>;
