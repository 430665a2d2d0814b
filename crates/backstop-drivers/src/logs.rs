//! Counting error lines in a growing log file: each call reads what was appended since the
//! last one and counts the complete lines that match a pattern. A file that shrank (rotated or
//! truncated) is read again from its start; a partial last line waits for its end.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use regex::Regex;

/// At most this much is read per call: a runaway log is sampled, not slurped.
const MAX_READ: u64 = 8 * 1024 * 1024;

/// A log file followed from an offset.
#[derive(Debug, Clone)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    /// Follows `path` from its current end: only lines written from now on count.
    pub fn from_end(path: PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        Self { path, offset }
    }

    /// The complete lines appended since the last call that match `pattern`. A missing file
    /// counts none (the instance has not written yet).
    pub fn count_new(&mut self, pattern: &Regex) -> std::io::Result<u64> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        file.take(MAX_READ).read_to_end(&mut buf)?;
        // Only complete lines: a line still being written is counted next time.
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        Ok(String::from_utf8_lossy(&buf[..complete])
            .lines()
            .filter(|line| pattern.is_match(line))
            .count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn counts_complete_new_matching_lines_and_starts_over_after_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.log");
        std::fs::write(&path, "ERROR before we looked\n").unwrap();
        let re = Regex::new("ERROR|panicked").unwrap();
        let mut tail = LogTail::from_end(path.clone());
        assert_eq!(tail.count_new(&re).unwrap(), 0);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "ok\nERROR one\nthread panicked\nERROR half").unwrap();
        assert_eq!(tail.count_new(&re).unwrap(), 2);
        writeln!(f, " done").unwrap();
        assert_eq!(tail.count_new(&re).unwrap(), 1);
        std::fs::write(&path, "ERROR after rotation\n").unwrap();
        assert_eq!(tail.count_new(&re).unwrap(), 1);
        let mut gone = LogTail::from_end(dir.path().join("none.log"));
        assert_eq!(gone.count_new(&re).unwrap(), 0);
    }
}
