//! Checkpoints read by ranges: a `.pth` whose bytes are fetched on demand (HTTP `Range`
//! requests, `File.slice()` in a browser) rather than from a local file.
//!
//! The zip reader asks for many small pieces (the end-of-archive record, the central
//! directory, a local header before each storage) and then for each storage whole. Sent as
//! they are asked, the small pieces would each be a request, so [`Windowed`] reads ahead: a
//! small read fetches a window of `window` bytes and later reads inside it are answered from
//! memory; a read at least that large goes straight to the source, so a tensor's storage is
//! fetched once, in one request, and never copied into the window. Memory is one window plus
//! what the caller asked for.

use std::io::{self, Read, Seek, SeekFrom};

/// A source of bytes by offset, of a known length.
pub trait RangeSource {
    /// Its length in bytes.
    fn len(&self) -> u64;

    /// Whether it holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()` (all inside the source).
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Whole-source reads for tests and for checkpoints already in memory.
impl RangeSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let piece = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(piece);
        Ok(())
    }
}

/// `Read + Seek` over a [`RangeSource`], with one read-ahead window (see the module docs).
pub struct Windowed<S> {
    source: S,
    position: u64,
    window_start: u64,
    window: Vec<u8>,
    window_bytes: usize,
    /// Reads sent to the source, for tests and progress reports.
    requests: u64,
}

impl<S: RangeSource> Windowed<S> {
    /// Reads of fewer than `window_bytes` fetch that many bytes ahead.
    pub fn new(source: S, window_bytes: usize) -> Self {
        Self {
            source,
            position: 0,
            window_start: 0,
            window: Vec::new(),
            window_bytes: window_bytes.max(1),
            requests: 0,
        }
    }

    /// How many reads went to the source.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    fn fetch(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.requests += 1;
        self.source.read_exact_at(offset, buf)
    }
}

impl<S: RangeSource> Read for Windowed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.source.len();
        if buf.is_empty() || self.position >= len {
            return Ok(0);
        }
        let available = usize::try_from(len - self.position).unwrap_or(usize::MAX);
        let wanted = buf.len().min(available);
        let window_end = self.window_start + self.window.len() as u64;
        if self.position >= self.window_start && self.position < window_end {
            let from = (self.position - self.window_start) as usize;
            let n = wanted.min(self.window.len() - from);
            buf[..n].copy_from_slice(&self.window[from..from + n]);
            self.position += n as u64;
            return Ok(n);
        }
        if wanted >= self.window_bytes {
            let position = self.position;
            self.fetch(position, &mut buf[..wanted])?;
            self.position += wanted as u64;
            return Ok(wanted);
        }
        let fill = self.window_bytes.min(available);
        let mut window = std::mem::take(&mut self.window);
        window.resize(fill, 0);
        let position = self.position;
        let fetched = self.fetch(position, &mut window);
        self.window = window;
        if let Err(e) = fetched {
            self.window.clear();
            return Err(e);
        }
        self.window_start = position;
        let n = wanted.min(fill);
        buf[..n].copy_from_slice(&self.window[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl<S: RangeSource> Seek for Windowed<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.source.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_seeks_like_a_cursor_with_few_requests() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = Windowed::new(bytes.clone(), 1024);
        let mut cursor = io::Cursor::new(bytes.clone());
        // Small reads, a backwards seek, a large read, reads past the end.
        let plan: [(SeekFrom, usize); 6] = [
            (SeekFrom::End(-22), 22),
            (SeekFrom::Start(100), 30),
            (SeekFrom::Current(5), 40),
            (SeekFrom::Start(2000), 5000),
            (SeekFrom::Start(9990), 64),
            (SeekFrom::End(10), 8),
        ];
        // Up to `n` bytes in reads of the whole remaining buffer, as the zip reader reads.
        fn read_up_to(r: &mut impl Read, n: usize) -> Vec<u8> {
            let (mut buf, mut filled) = (vec![0; n], 0);
            while filled < n {
                match r.read(&mut buf[filled..]).unwrap() {
                    0 => break,
                    k => filled += k,
                }
            }
            buf.truncate(filled);
            buf
        }
        for (to, n) in plan {
            assert_eq!(w.seek(to).unwrap(), cursor.seek(to).unwrap());
            assert_eq!(
                read_up_to(&mut w, n),
                read_up_to(&mut cursor, n),
                "{to:?} {n}"
            );
        }
        // The two reads at 100.. share one window; the 5000-byte read went straight through.
        assert_eq!(w.requests(), 4, "{}", w.requests());
        assert!(w.seek(SeekFrom::Current(-1_000_000)).is_err());
    }
}
