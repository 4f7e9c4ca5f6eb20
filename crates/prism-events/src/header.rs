//! The ASCII `%` header shared by Prophesee `.dat` and `.raw` (EVT 2.0 / 3.0) files.
//!
//! Lines look like `% key value` (`% Height 720`, `% evt 3.0`, `% geometry 1280x720`,
//! `% format EVT3;height=720;width=1280`). The header ends at `% end`, at the first byte that is
//! not `%`, or at a `%` "line" that is not text (binary data can start with the byte `0x25`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{EventError, Result};
use crate::reader::SensorSize;

/// Longest header line accepted; anything longer is binary data, not a header line.
const MAX_LINE: usize = 4096;
/// Largest header accepted, so a garbage file cannot make the parser read without bound.
const MAX_HEADER: u64 = 1 << 20;

/// One `% key value` line: key lowercased, value trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    pub key: String,
    pub value: String,
}

/// The parsed header and where the binary data starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub lines: Vec<HeaderLine>,
    /// Byte offset of the first byte after the header.
    pub data_offset: u64,
}

impl Header {
    /// Reads the header at the start of `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EventError::io(path, e))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut header = Header::default();
        let mut line = Vec::with_capacity(256);
        loop {
            let next = reader.fill_buf().map_err(|e| EventError::io(path, e))?;
            if next.first() != Some(&b'%') {
                return Ok(header);
            }
            line.clear();
            let n = Read::take(&mut reader, MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| EventError::io(path, e))?;
            let is_text = line.last() == Some(&b'\n')
                && line.iter().all(|&b| {
                    b == b'\t' || b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b) || b >= 0x80
                })
                && std::str::from_utf8(&line).is_ok();
            if !is_text {
                // Binary data that happens to start with '%': the header ended before it.
                return Ok(header);
            }
            let text = String::from_utf8_lossy(&line);
            let body = text.trim_start_matches('%').trim();
            let (key, value) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
            let key = key.to_ascii_lowercase();
            header.data_offset += n as u64;
            if header.data_offset > MAX_HEADER {
                return Err(EventError::BadHeader {
                    path: path.to_path_buf(),
                    reason: format!("header longer than {MAX_HEADER} bytes"),
                });
            }
            let done = key == "end" && value.is_empty();
            header.lines.push(HeaderLine {
                key,
                value: value.trim().to_string(),
            });
            if done {
                return Ok(header);
            }
        }
    }

    /// The value of the first line with this (lowercase) key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.key == key)
            .map(|l| l.value.as_str())
    }

    /// Sensor size from `% geometry WxH`, from `% format NAME;height=H;width=W`, or from
    /// `% Width W` + `% Height H` (DAT), in that order; `None` when none is declared. A declared
    /// size that is not a pair of whole numbers from 1 to 65535 is an error naming it.
    pub fn geometry(&self, path: &Path) -> Result<Option<SensorSize>> {
        let Some((w, h)) = self.declared_geometry() else {
            return Ok(None);
        };
        let parse = |v: &str| v.trim().parse::<u64>().ok();
        match (parse(&w), parse(&h)) {
            (Some(width @ 1..=65_535), Some(height @ 1..=65_535)) => Ok(Some(SensorSize {
                width: width as u16,
                height: height as u16,
            })),
            _ => Err(EventError::BadHeader {
                path: path.to_path_buf(),
                reason: format!(
                    "the header declares a {}x{} sensor; width and height must be whole numbers from 1 to 65535",
                    w.trim(),
                    h.trim()
                ),
            }),
        }
    }

    /// The width and height strings of the first geometry the header declares.
    fn declared_geometry(&self) -> Option<(String, String)> {
        if let Some((w, h)) = self.get("geometry").and_then(|g| g.split_once(['x', 'X'])) {
            return Some((w.to_string(), h.to_string()));
        }
        if let Some(format) = self.get("format") {
            let option = |name: &str| {
                format.split(';').skip(1).find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.to_string())
                })
            };
            if let (Some(w), Some(h)) = (option("width"), option("height")) {
                return Some((w, h));
            }
        }
        match (self.get("width"), self.get("height")) {
            (Some(w), Some(h)) => Some((w.to_string(), h.to_string())),
            _ => None,
        }
    }

    /// The encoding a `.raw` header declares: `evt 2.0` -> "2.0", `format EVT3;…` -> "3.0".
    pub fn raw_encoding(&self) -> Option<String> {
        if let Some(v) = self.get("evt") {
            return Some(v.to_string());
        }
        let format = self.get("format")?;
        let name = format.split(';').next()?.trim().to_ascii_uppercase();
        match name.as_str() {
            "EVT3" => Some("3.0".into()),
            "EVT2" => Some("2.0".into()),
            "EVT21" => Some("2.1".into()),
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Header {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.raw");
        std::fs::write(&path, bytes).unwrap();
        Header::read(&path).unwrap()
    }

    #[test]
    fn geometry_from_each_source() {
        let h = parse(b"% evt 3.0\n% geometry 1280x720\n% end\n\x01\x02");
        assert_eq!(
            h.geometry(Path::new("t")).ok().flatten(),
            Some(SensorSize {
                width: 1280,
                height: 720
            })
        );
        assert_eq!(h.data_offset, 36);
        let h = parse(b"% format EVT3;height=480;width=640\n\x00");
        assert_eq!(
            h.geometry(Path::new("t")).ok().flatten(),
            Some(SensorSize {
                width: 640,
                height: 480
            })
        );
        assert_eq!(h.raw_encoding().as_deref(), Some("3.0"));
        let h = parse(b"% Height 720\n% Version 2\n% Width 1280\n\x0c\x08");
        assert_eq!(
            h.geometry(Path::new("t")).ok().flatten(),
            Some(SensorSize {
                width: 1280,
                height: 720
            })
        );
        assert_eq!(h.get("version"), Some("2"));
    }

    #[test]
    fn declared_sizes_out_of_range_are_errors() {
        let texts: [&[u8]; 4] = [
            b"% Width 99999999\n% Height 99999999\n",
            b"% geometry 0x0\n",
            b"% format EVT3;height=-5;width=640\n",
            b"% Width 640\n% Height many\n",
        ];
        for text in texts {
            let err = parse(text).geometry(Path::new("x.dat"));
            assert!(
                matches!(&err, Err(EventError::BadHeader { reason, .. }) if reason.contains("from 1 to 65535")),
                "{err:?}"
            );
        }
        assert!(parse(b"% evt 3.0\n")
            .geometry(Path::new("x"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn binary_after_percent_is_data() {
        let h = parse(b"% evt 2.0\n%\x00\x01\x02\n");
        assert_eq!(h.lines.len(), 1);
        assert_eq!(h.data_offset, 10);
        let h = parse(b"");
        assert_eq!(h.data_offset, 0);
        let h = parse(b"% no newline at end");
        assert_eq!(h.data_offset, 0);
    }
}
