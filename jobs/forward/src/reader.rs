//! Line reader for file and stdin inputs: splits the input into lines on a
//! thread of its own, in chunks, with a bound on line length so that one huge
//! line cannot take memory with it (only its first bytes are kept).

use std::io::{self, BufRead};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Target size of a chunk of lines: the unit of work of a decode worker.
const CHUNK_BYTES: usize = 2 << 20;

/// One line of a chunk.
#[derive(Debug, Clone, Copy)]
pub struct LineItem {
    /// Start offset in the chunk's data.
    pub start: usize,
    /// End offset in the chunk's data (what was kept).
    pub end: usize,
    /// Line number, 1-based.
    pub number: u64,
    /// Full length of the line; larger than `end - start` when cut.
    pub total_len: u64,
    /// True when the line was longer than the limit.
    pub too_long: bool,
}

/// A run of whole lines.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Bytes of the lines, without newlines.
    pub data: Vec<u8>,
    /// The lines.
    pub items: Vec<LineItem>,
}

impl Chunk {
    /// The bytes kept of a line.
    pub fn line(&self, item: &LineItem) -> &[u8] {
        &self.data[item.start..item.end]
    }
}

/// Reads lines from `r` and hands them to `emit` in chunks until EOF (or
/// until `emit` returns false). Chunk boundaries depend only on the bytes
/// read. Lines longer than `max_line` keep only their first `keep` bytes.
/// Blank lines are skipped and counted in `blank`. `read_bytes` advances with
/// the input.
pub fn read_lines<R: BufRead>(
    mut r: R,
    max_line: usize,
    keep: usize,
    mut emit: impl FnMut(io::Result<Chunk>) -> bool,
    read_bytes: Arc<AtomicU64>,
    blank: Arc<AtomicU64>,
) {
    let mut chunk = Chunk::default();
    let mut number = 0u64;
    let mut start = 0usize;
    let mut total = 0u64;
    let mut too_long = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                emit(Err(e));
                return;
            }
        };
        let eof = buf.is_empty();
        let (take, newline) = match memchr(buf) {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if !eof {
            if !too_long && total + take as u64 > max_line as u64 {
                too_long = true;
                let kept = chunk.data.len() - start;
                chunk.data.truncate(start + kept.min(keep));
            }
            let kept = chunk.data.len() - start;
            let limit = if too_long { keep } else { max_line };
            let room = limit.saturating_sub(kept);
            chunk.data.extend_from_slice(&buf[..take.min(room)]);
            total += take as u64;
            r.consume(take + usize::from(newline));
            read_bytes.fetch_add((take + usize::from(newline)) as u64, Ordering::Relaxed);
        }
        if newline || (eof && total > 0) {
            number += 1;
            let mut end = chunk.data.len();
            if !too_long && end > start && chunk.data[end - 1] == b'\r' {
                end -= 1;
                total -= 1;
                chunk.data.truncate(end);
            }
            if total == 0 {
                blank.fetch_add(1, Ordering::Relaxed);
            } else {
                chunk.items.push(LineItem {
                    start,
                    end,
                    number,
                    total_len: total,
                    too_long,
                });
            }
            start = chunk.data.len();
            total = 0;
            too_long = false;
            if chunk.data.len() >= CHUNK_BYTES || chunk.items.len() >= 16384 {
                if !emit(Ok(std::mem::take(&mut chunk))) {
                    return;
                }
                start = 0;
            }
        }
        if eof {
            if !chunk.items.is_empty() {
                emit(Ok(chunk));
            }
            return;
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Lines = Vec<(Vec<u8>, u64, u64, bool)>;

    fn lines(input: &[u8], max: usize, keep: usize, cap: usize) -> (Lines, u64) {
        let mut chunks = Vec::new();
        let blank = Arc::new(AtomicU64::new(0));
        let r = io::BufReader::with_capacity(cap, input);
        let emit = |c: io::Result<Chunk>| {
            chunks.push(c.unwrap());
            true
        };
        read_lines(
            r,
            max,
            keep,
            emit,
            Arc::new(AtomicU64::new(0)),
            blank.clone(),
        );
        let mut out = Vec::new();
        for c in chunks {
            for it in &c.items {
                out.push((c.line(it).to_vec(), it.number, it.total_len, it.too_long));
            }
        }
        (out, blank.load(Ordering::Relaxed))
    }

    #[test]
    fn splits_and_bounds_lines() {
        for cap in [1, 2, 3, 7, 64, 8192] {
            let (l, blank) = lines(b"ab\r\n\ncdefgh\nxyz", 4, 2, cap);
            assert_eq!(blank, 1, "cap {cap}");
            assert_eq!(
                l,
                vec![
                    (b"ab".to_vec(), 1, 2, false),
                    (b"cd".to_vec(), 3, 6, true),
                    (b"xyz".to_vec(), 4, 3, false),
                ],
                "cap {cap}"
            );
        }
        let (l, _) = lines(b"abcd\n", 4, 2, 2);
        assert_eq!(l, vec![(b"abcd".to_vec(), 1, 4, false)]);
        let (l, _) = lines(b"", 4, 2, 2);
        assert!(l.is_empty());
    }
}
