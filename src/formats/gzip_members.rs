//! A data file of concatenated gzip members (spec §4.4): `zcat` reads it as
//! one stream, and because every member starts a fresh deflate stream, one
//! entry can be read by inflating only the member that holds it.
//!
//! [`MemberWriter`] appends members; [`scan_members`] walks an existing file
//! and reports where each member lies, compressed and uncompressed;
//! [`member_reader`] inflates from one member on.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};

use flate2::bufread::{GzDecoder, MultiGzDecoder};
use flate2::write::GzEncoder;
use flate2::Compression;
use sha1::{Digest, Sha1};

use crate::formats::Guid;

/// Errors walking or inflating members; each names the compressed offset.
#[derive(Debug, thiserror::Error)]
pub enum GzError {
    #[error("gzip member at compressed offset {offset} is truncated")]
    TruncatedMember { offset: u64 },
    #[error("gzip member at compressed offset {offset} is corrupt: {source}")]
    Corrupt { offset: u64, source: io::Error },
    #[error("I/O error at compressed offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

/// Where one member lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    pub compressed_offset: u64,
    pub compressed_len: u64,
    pub uncompressed_offset: u64,
    pub uncompressed_len: u64,
    /// SHA-1 of the member's compressed bytes: what a quick verify checks.
    pub sha1: Guid,
}

/// Appends gzip members to `W`. Bytes written go into the current member,
/// which is started on demand and closed by [`finish_member`].
///
/// [`finish_member`]: MemberWriter::finish_member
pub struct MemberWriter<W: Write> {
    level: u32,
    state: WriterState<W>,
    compressed_pos: u64,
    uncompressed_pos: u64,
    member_start: (u64, u64),
}

enum WriterState<W: Write> {
    Idle(HashingWriter<W>),
    InMember(Box<GzEncoder<HashingWriter<W>>>),
    Poisoned,
}

/// Counts and hashes what passes through to the file.
struct HashingWriter<W: Write> {
    inner: W,
    written: u64,
    hash: Sha1,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> MemberWriter<W> {
    /// `compressed_pos`/`uncompressed_pos` are where `out` stands in the
    /// file and in the inflated stream (the end of the last member).
    pub fn new(out: W, level: u32, compressed_pos: u64, uncompressed_pos: u64) -> Self {
        MemberWriter {
            level: level.min(9),
            state: WriterState::Idle(HashingWriter {
                inner: out,
                written: 0,
                hash: Sha1::new(),
            }),
            compressed_pos,
            uncompressed_pos,
            member_start: (compressed_pos, uncompressed_pos),
        }
    }

    /// Uncompressed bytes written to the current member so far.
    pub fn member_uncompressed_len(&self) -> u64 {
        self.uncompressed_pos - self.member_start.1
    }

    /// Position in the inflated stream.
    pub fn uncompressed_pos(&self) -> u64 {
        self.uncompressed_pos
    }

    /// Closes the current member, if one is open, and says where it lies.
    pub fn finish_member(&mut self) -> io::Result<Option<MemberInfo>> {
        match std::mem::replace(&mut self.state, WriterState::Poisoned) {
            WriterState::Idle(w) => {
                self.state = WriterState::Idle(w);
                Ok(None)
            }
            WriterState::InMember(enc) => {
                let mut w = enc.finish()?;
                let info = MemberInfo {
                    compressed_offset: self.member_start.0,
                    compressed_len: w.written,
                    uncompressed_offset: self.member_start.1,
                    uncompressed_len: self.uncompressed_pos - self.member_start.1,
                    sha1: Guid::from(std::mem::take(&mut w.hash)),
                };
                self.compressed_pos += w.written;
                w.written = 0;
                self.member_start = (self.compressed_pos, self.uncompressed_pos);
                self.state = WriterState::Idle(w);
                Ok(Some(info))
            }
            WriterState::Poisoned => Err(poisoned()),
        }
    }

    /// Finishes any open member and hands back the output.
    pub fn into_inner(mut self) -> io::Result<(W, Option<MemberInfo>)> {
        let info = self.finish_member()?;
        match self.state {
            WriterState::Idle(w) => Ok((w.inner, info)),
            _ => Err(poisoned()),
        }
    }

    /// The output, e.g. to fsync it between members.
    pub fn get_mut(&mut self) -> Option<&mut W> {
        match &mut self.state {
            WriterState::Idle(w) => Some(&mut w.inner),
            WriterState::InMember(enc) => Some(&mut enc.get_mut().inner),
            WriterState::Poisoned => None,
        }
    }
}

fn poisoned() -> io::Error {
    io::Error::other("gzip member writer failed earlier")
}

impl<W: Write> Write for MemberWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let WriterState::Idle(_) = self.state {
            let WriterState::Idle(w) = std::mem::replace(&mut self.state, WriterState::Poisoned)
            else {
                return Err(poisoned());
            };
            self.state =
                WriterState::InMember(Box::new(GzEncoder::new(w, Compression::new(self.level))));
        }
        let WriterState::InMember(enc) = &mut self.state else {
            return Err(poisoned());
        };
        let n = enc.write(buf)?;
        self.uncompressed_pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            WriterState::Idle(w) => w.flush(),
            WriterState::InMember(enc) => enc.flush(),
            WriterState::Poisoned => Err(poisoned()),
        }
    }
}

/// A `BufRead` that counts what its consumer consumed, so the end of a
/// member is known exactly.
struct CountingBufRead<B> {
    inner: B,
    consumed: u64,
}

impl<B: BufRead> Read for CountingBufRead<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<B: BufRead> BufRead for CountingBufRead<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.consumed += amt as u64;
        self.inner.consume(amt);
    }
}

/// Walks every member of `input` (positioned at compressed offset 0),
/// inflating each to measure it. A torn last member is `TruncatedMember`.
pub fn scan_members<R: Read>(input: R) -> Result<Vec<MemberInfo>, GzError> {
    let mut src = CountingBufRead {
        inner: BufReader::with_capacity(64 * 1024, input),
        consumed: 0,
    };
    let mut out = Vec::new();
    let mut uncompressed = 0u64;
    loop {
        let offset = src.consumed;
        let at_end = src
            .fill_buf()
            .map_err(|source| GzError::Io { offset, source })?
            .is_empty();
        if at_end {
            return Ok(out);
        }
        let hasher = HashingBufRead {
            inner: &mut src,
            hash: Sha1::new(),
        };
        let mut dec = GzDecoder::new(hasher);
        let len = io::copy(&mut dec, &mut io::sink()).map_err(|e| member_error(offset, e))?;
        if dec.header().is_none() {
            return Err(GzError::TruncatedMember { offset });
        }
        let hash = std::mem::take(&mut dec.get_mut().hash);
        let end = src.consumed;
        out.push(MemberInfo {
            compressed_offset: offset,
            compressed_len: end - offset,
            uncompressed_offset: uncompressed,
            uncompressed_len: len,
            sha1: Guid::from(hash),
        });
        uncompressed += len;
    }
}

/// Hashes exactly the bytes consumed from the inner `BufRead`.
struct HashingBufRead<'a, B> {
    inner: &'a mut B,
    hash: Sha1,
}

impl<B: BufRead> Read for HashingBufRead<'_, B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<B: BufRead> BufRead for HashingBufRead<'_, B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let n = amt.min(buf.len());
            self.hash.update(&buf[..n]);
        }
        self.inner.consume(amt);
    }
}

fn member_error(offset: u64, e: io::Error) -> GzError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        GzError::TruncatedMember { offset }
    } else {
        GzError::Corrupt { offset, source: e }
    }
}

/// Inflates from the member at `compressed_offset` on, through the members
/// that follow: reading stops wherever the caller stops, so one small entry
/// costs one member.
pub fn member_reader<R: Read + Seek>(
    mut input: R,
    compressed_offset: u64,
) -> io::Result<impl Read> {
    input.seek(SeekFrom::Start(compressed_offset))?;
    Ok(MultiGzDecoder::new(BufReader::with_capacity(
        64 * 1024,
        input,
    )))
}

/// Inflates exactly one member.
pub fn inflate_member<R: Read + Seek>(
    mut input: R,
    compressed_offset: u64,
) -> Result<Vec<u8>, GzError> {
    input
        .seek(SeekFrom::Start(compressed_offset))
        .map_err(|source| GzError::Io {
            offset: compressed_offset,
            source,
        })?;
    let mut dec = GzDecoder::new(BufReader::new(input));
    let mut out = Vec::new();
    dec.read_to_end(&mut out)
        .map_err(|e| member_error(compressed_offset, e))?;
    if dec.header().is_none() {
        return Err(GzError::TruncatedMember {
            offset: compressed_offset,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn three_members() -> (Vec<u8>, Vec<MemberInfo>) {
        let mut w = MemberWriter::new(Vec::new(), 6, 0, 0);
        let mut infos = Vec::new();
        for part in [&b"hello "[..], b"gzip ", b"members"] {
            w.write_all(part).unwrap();
            infos.push(w.finish_member().unwrap().unwrap());
        }
        assert!(w.finish_member().unwrap().is_none());
        (w.into_inner().unwrap().0, infos)
    }

    #[test]
    fn members_concatenate_to_one_stream_and_scan_back_exactly() {
        let (file, written) = three_members();
        let mut all = String::new();
        MultiGzDecoder::new(&file[..])
            .read_to_string(&mut all)
            .unwrap();
        assert_eq!(all, "hello gzip members");
        assert_eq!(scan_members(&file[..]).unwrap(), written);
        assert_eq!(written[1].uncompressed_offset, 6);
        let second = inflate_member(Cursor::new(&file), written[1].compressed_offset).unwrap();
        assert_eq!(second, b"gzip ");
        let m = written[1];
        let bytes =
            &file[m.compressed_offset as usize..(m.compressed_offset + m.compressed_len) as usize];
        assert_eq!(Guid::of(bytes), m.sha1);
    }

    #[test]
    fn a_torn_last_member_is_reported_not_a_panic() {
        let (file, written) = three_members();
        for cut in written[2].compressed_offset + 1..file.len() as u64 {
            let err = scan_members(&file[..cut as usize]).unwrap_err();
            assert!(
                matches!(err, GzError::TruncatedMember { offset } if offset == written[2].compressed_offset),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn a_corrupt_member_is_an_error_naming_its_offset() {
        let (mut file, written) = three_members();
        let at = (written[1].compressed_offset + 12) as usize;
        file[at] ^= 0xff;
        assert!(scan_members(&file[..]).is_err());
        assert!(inflate_member(Cursor::new(&file), written[1].compressed_offset).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = scan_members(&data[..]);
            let _ = inflate_member(Cursor::new(&data), 0);
        }
    }
}
