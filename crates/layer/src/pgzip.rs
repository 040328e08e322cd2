//! Block-parallel gzip (pigz's scheme) whose bytes never depend on the
//! number of threads: the input is cut into fixed-size blocks, each block
//! is deflated on its own thread with the 32 KiB of input before it as its
//! dictionary and ends on a byte boundary (a sync flush; the last one ends
//! the stream), and the blocks are written in order behind one gzip header
//! and before the CRC-32 and size trailer. So a layer's digest is the same
//! on a 2-core runner and a 64-core one. At most `threads` blocks are in
//! flight: memory stays a few blocks, whatever the layer's size.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// Input per block. Fixed: the output depends on it.
const BLOCK: usize = 1 << 20;
/// Deflate's window: the dictionary a block gets from the one before.
const WINDOW: usize = 32 * 1024;

type Pending = JoinHandle<io::Result<Vec<u8>>>;

pub struct ParallelGzEncoder<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    block: Vec<u8>,
    /// The last `WINDOW` bytes of the block before `block`.
    dictionary: Vec<u8>,
    crc: Crc,
    pending: VecDeque<Pending>,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// `threads` 0 means the machine's parallelism.
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Header: no name, no mtime (reproducible), OS unknown.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(ParallelGzEncoder {
            out,
            level: level.min(9),
            threads,
            block: Vec::with_capacity(BLOCK),
            dictionary: Vec::new(),
            crc: Crc::new(),
            pending: VecDeque::new(),
        })
    }

    /// Starts deflating the full block; writes finished ones while too
    /// many are in flight.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        self.crc.update(&data);
        let dictionary = std::mem::take(&mut self.dictionary);
        self.dictionary = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let level = self.level;
        self.pending.push_back(std::thread::spawn(move || {
            deflate_block(level, &dictionary, &data, last)
        }));
        while self.pending.len() > self.threads || (last && !self.pending.is_empty()) {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(handle) = self.pending.pop_front() {
            let bytes = handle
                .join()
                .map_err(|_| io::Error::other("a compression thread panicked"))??;
            self.out.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Ends the stream (last block, trailer) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        let crc = self.crc.sum();
        let size = self.crc.amount();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&size.to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are fixed in size: a flush cannot end one early.
        self.out.flush()
    }
}

/// Bytes of a block deflated first to see whether it compresses at all.
const PROBE: usize = 16 * 1024;

/// Raw deflate of one block, primed with `dictionary`; a non-last block
/// ends with a sync flush so the next one starts on a byte boundary. A
/// block whose first bytes do not compress (random data, compressed
/// files) is stored instead: searching it for matches costs a core's
/// second per 60 MB and saves nothing. The choice depends on the block's
/// bytes alone, so the output still does not depend on the threads.
fn deflate_block(level: u32, dictionary: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let level = match level > 0 && incompressible(&data[..data.len().min(PROBE)])? {
        true => 0,
        false => level,
    };
    let mut c = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let flush = match last {
        true => FlushCompress::Finish,
        false => FlushCompress::Sync,
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        let room_left = out.len() < out.capacity();
        match (last, status) {
            (true, Status::StreamEnd) => return Ok(out),
            (false, _) if all_in && room_left => return Ok(out),
            _ => {}
        }
    }
}

/// Whether `sample` (the start of a block) shrinks by less than 1% at the
/// fastest level.
fn incompressible(sample: &[u8]) -> io::Result<bool> {
    if sample.len() < PROBE {
        return Ok(false);
    }
    let mut c = Compress::new(Compression::new(1), false);
    let mut out = Vec::with_capacity(sample.len() + 1024);
    c.compress_vec(sample, &mut out, FlushCompress::Sync)
        .map_err(io::Error::other)?;
    let all_in = c.total_in() as usize == sample.len();
    Ok(!all_in || out.len() * 100 >= sample.len() * 99)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: lines of counters.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("line {i} {}\n", i * 7919 % 1000).as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn gzip(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut enc = ParallelGzEncoder::new(Vec::new(), 6, threads).unwrap();
        for c in data.chunks(chunk.max(1)) {
            enc.write_all(c).unwrap();
        }
        enc.finish().unwrap()
    }

    #[test]
    fn same_bytes_for_any_thread_count_and_write_sizes() {
        let data = sample(3 * BLOCK + 12345);
        let one = gzip(&data, 1, 4096);
        assert_eq!(one, gzip(&data, 2, 1 << 16));
        assert_eq!(one, gzip(&data, 8, 777));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // The dictionary keeps the ratio of one stream.
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(one.len() < single.len() + single.len() / 100 + 64);
    }

    #[test]
    fn random_blocks_are_stored_and_read_back() {
        // xorshift: incompressible, reproducible.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut data: Vec<u8> = (0..2 * BLOCK + 999)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // A compressible block between the random ones.
        data.splice(BLOCK..BLOCK, sample(BLOCK));
        let one = gzip(&data, 1, 1 << 16);
        assert_eq!(one, gzip(&data, 3, 4096));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Stored random blocks cost their size plus a few bytes; the
        // compressible one still shrinks.
        assert!(one.len() < 2 * BLOCK + 999 + BLOCK / 2, "{}", one.len());
    }

    #[test]
    fn empty_and_exact_block_inputs() {
        for len in [0, 1, BLOCK, 2 * BLOCK] {
            let data = sample(len);
            let gz = gzip(&data, 2, 1 << 20);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{len}");
        }
    }
}
