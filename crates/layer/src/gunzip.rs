//! gzip without its CRC-32, for layers whose diff_id (the sha256 of the
//! whole uncompressed tar) is checked anyway: the CRC was 3% of a cold
//! build's samples, on the thread that bounds a base's extraction
//! (docs/benchmarks.md). Members follow each other as in any gzip file;
//! a header, a deflate stream and the 8-byte trailer are still required,
//! so a truncated or damaged stream is an error, and a changed byte is
//! caught by the diff_id.

use flate2::bufread::DeflateDecoder;
use std::io::{self, BufRead, Read};

enum State<R: BufRead> {
    Header { input: R, first: bool },
    Body(DeflateDecoder<R>),
    Done,
    Failed,
}

pub struct GzWithoutCrc<R: BufRead> {
    state: State<R>,
}

impl<R: BufRead> GzWithoutCrc<R> {
    pub fn new(input: R) -> GzWithoutCrc<R> {
        GzWithoutCrc {
            state: State::Header { input, first: true },
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {what}"))
}

fn byte(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

/// Skips a member's header (RFC 1952): magic, method, flags, then the
/// optional extra field, name, comment and header CRC.
fn skip_header(r: &mut impl BufRead) -> io::Result<()> {
    let mut fixed = [0u8; 10];
    r.read_exact(&mut fixed)?;
    if fixed[..3] != [0x1f, 0x8b, 8] {
        return Err(bad("not a gzip member (or not deflate)"));
    }
    let flags = fixed[3];
    if flags & 0xe0 != 0 {
        return Err(bad("reserved header flags set"));
    }
    if flags & 4 != 0 {
        let len = u16::from_le_bytes([byte(r)?, byte(r)?]) as u64;
        io::copy(&mut r.take(len), &mut io::sink())?;
    }
    for flag in [8u8, 16] {
        if flags & flag != 0 {
            let mut skipped = Vec::new();
            r.read_until(0, &mut skipped)?;
            if skipped.last() != Some(&0) {
                return Err(bad("header name or comment runs past the end"));
            }
        }
    }
    if flags & 2 != 0 {
        let mut crc = [0u8; 2];
        r.read_exact(&mut crc)?;
    }
    Ok(())
}

impl<R: BufRead> Read for GzWithoutCrc<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, State::Failed) {
                State::Header { mut input, first } => {
                    // After the first member, the end of the input ends
                    // the file; before it, an empty input is no gzip.
                    if !first && input.fill_buf()?.is_empty() {
                        self.state = State::Done;
                        return Ok(0);
                    }
                    skip_header(&mut input)?;
                    self.state = State::Body(DeflateDecoder::new(input));
                }
                State::Body(mut body) => {
                    let n = body.read(buf)?;
                    if n > 0 {
                        self.state = State::Body(body);
                        return Ok(n);
                    }
                    // The deflate stream ended (or its input did): the
                    // trailer must follow (its CRC and size are not used).
                    let mut input = body.into_inner();
                    let mut trailer = [0u8; 8];
                    input
                        .read_exact(&mut trailer)
                        .map_err(|_| bad("the stream ends before its trailer"))?;
                    self.state = State::Header {
                        input,
                        first: false,
                    };
                }
                State::Done => {
                    self.state = State::Done;
                    return Ok(0);
                }
                State::Failed => return Err(bad("read after an error")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8], name: bool) -> Vec<u8> {
        let mut b = flate2::GzBuilder::new();
        if name {
            b = b.filename("layer.tar").comment("c").extra(vec![1, 2, 3]);
        }
        let mut e = b.write(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzWithoutCrc::new(io::BufReader::with_capacity(7, bytes)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn members_headers_and_damage() {
        let a: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut two = gz(&a, true);
        two.extend(gz(b"second member", false));
        let mut want = a.clone();
        want.extend(b"second member");
        assert_eq!(gunzip(&two).unwrap(), want);
        // The same bytes kiln's block-parallel writer makes.
        let mut p = crate::pgzip::ParallelGzEncoder::new(Vec::new(), 6, 2).unwrap();
        p.write_all(&a).unwrap();
        assert_eq!(gunzip(&p.finish().unwrap()).unwrap(), a);
        // Truncated anywhere: an error, never a shorter tar read as whole.
        let one = gz(&a, false);
        for cut in [5, 12, one.len() / 2, one.len() - 4] {
            assert!(gunzip(&one[..cut]).is_err(), "cut at {cut}");
        }
        assert!(gunzip(b"").is_err());
        assert!(gunzip(b"not gzip at all").is_err());
    }
}
