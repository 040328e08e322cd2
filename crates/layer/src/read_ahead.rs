//! A reader that runs ahead on a thread of its own: a layer's
//! decompression (zlib: about a third of a core's second per 100 MB) then
//! overlaps the hashing, parsing and file creation that consume it, on the
//! other core. A few chunks are in flight, never the whole stream.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

const CHUNK: usize = 256 << 10;
const IN_FLIGHT: usize = 4;

pub struct ReadAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    /// Read chunks go back to the thread: a new buffer per chunk would
    /// cost its pages' faults and zeroing on the thread that bounds the
    /// extraction.
    spent: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    finished: bool,
}

impl ReadAhead {
    /// Reads `inner` to its end on a thread of `scope`. The thread stops
    /// at the end, at an error (handed to the reader), or when this reader
    /// is dropped (after the read it is in returns).
    pub fn start<'scope, 'env, R: Read + Send + 'scope>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        mut inner: R,
    ) -> ReadAhead {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (spent, recycled) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        scope.spawn(move || loop {
            let mut chunk = match recycled.try_recv() {
                Ok(mut used) => {
                    used.resize(CHUNK, 0);
                    used
                }
                Err(_) => vec![0u8; CHUNK],
            };
            let mut filled = 0;
            let got = loop {
                match inner.read(&mut chunk[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == CHUNK {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            chunk.truncate(filled);
            let last = filled < CHUNK;
            let sent = match got {
                Err(e) => tx.send(Err(e)).map(|_| true),
                Ok(()) if filled == 0 => Ok(true),
                Ok(()) => tx.send(Ok(chunk)).map(|_| last),
            };
            if !matches!(sent, Ok(false)) {
                break;
            }
        });
        ReadAhead {
            chunks: rx,
            spent,
            current: Vec::new(),
            at: 0,
            finished: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.finished {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    // Full (the thread stopped) or gone: the buffer is dropped.
                    let _ = self.spent.try_send(used);
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                // The thread ended: the stream did.
                Err(_) => self.finished = true,
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_inner_reader_gives() {
        let data: Vec<u8> = (0..(3 * CHUNK + 1234)).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        std::thread::scope(|s| {
            let mut r = ReadAhead::start(s, &data[..]);
            r.read_to_end(&mut out).unwrap();
        });
        assert_eq!(out, data);
        let mut empty = Vec::new();
        std::thread::scope(|s| {
            ReadAhead::start(s, &[][..])
                .read_to_end(&mut empty)
                .unwrap();
        });
        assert!(empty.is_empty());
    }

    #[test]
    fn an_error_reaches_the_reader_and_a_dropped_reader_stops_the_thread() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("broken"))
            }
        }
        std::thread::scope(|s| {
            let err = ReadAhead::start(s, Failing).read_to_end(&mut Vec::new());
            assert_eq!(err.unwrap_err().to_string(), "broken");
        });
        let endless = std::io::repeat(7);
        std::thread::scope(|s| {
            let mut r = ReadAhead::start(s, endless);
            let mut first = [0u8; 10];
            r.read_exact(&mut first).unwrap();
            assert_eq!(first, [7; 10]);
            drop(r);
        });
    }
}
