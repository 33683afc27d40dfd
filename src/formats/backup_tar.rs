//! The tar dialect of a Cyrus::Backup data file, as Archive::Tar::Stream 0.06
//! writes it (spec §4.2-§4.3): ustar headers with constant owner fields, the
//! SHA-1 in `linkname`, the server inode in `devminor`, GNU `././@LongLink`
//! entries for long names, and never an end-of-archive block, so the stream
//! can be appended to forever.
//!
//! Offsets: an entry's offset is the position of its FIRST block, which is
//! the first `L`/`K` block when the entry has one. That is the `_pos` the Perl
//! reader (and so `RebuildState` and compaction) computes; the Perl writer
//! records the main header instead, which is bug §7.4. We write and record the
//! first-block offset, so Perl tools and we agree on every store we write.
//!
//! Numbers that do not fit the Perl field widths (inodes of 2^21 and more,
//! sizes of 8 GiB and more) are written first as octal without the NUL (what
//! Perl itself emits for 2^21..2^24 and what its `oct()` reads back), then as
//! GNU base-256, which GNU tar reads and old Perl readers tolerate (they read
//! a wrong inode and refetch once). Folder names carry `/` as `%2F` (see
//! [`encode_folder_name`]). `docs/format.md` documents all of this.

use std::io::{self, Read};

use crate::formats::Guid;

/// Tar block size.
pub const BLOCK: usize = 512;

/// Errors decoding or encoding the dialect. Each names the stream offset.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error(
        "tar header at offset {offset}: checksum mismatch (stored {stored:?}, computed {computed})"
    )]
    Checksum {
        offset: u64,
        stored: String,
        computed: u32,
    },
    #[error("tar stream truncated at offset {offset}: {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("tar header at offset {offset}: bad numeric field {field}: {value:?}")]
    BadNumber {
        offset: u64,
        field: &'static str,
        value: String,
    },
    #[error("tar header at offset {offset}: {field} is not UTF-8")]
    NotUtf8 { offset: u64, field: &'static str },
    #[error("tar header at offset {offset}: long-name entry of {size} bytes is implausible")]
    LongNameTooLong { offset: u64, size: u64 },
    #[error("tar entry {name:?}: {field} value {value} does not fit the field")]
    FieldTooLarge {
        name: String,
        field: &'static str,
        value: u64,
    },
    #[error("tar entry {name:?}: contains a NUL byte")]
    NulInName { name: String },
    #[error("I/O error reading the tar stream at offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

/// Typeflag of a regular file.
pub const REGULAR: u8 = b'0';
/// Typeflag of a symlink (`imap/<name>/` links).
pub const SYMLINK: u8 = b'2';

/// The fields of an entry that carry information in this dialect. The rest
/// (mode 0777, uid/gid 0, empty uname/gname/prefix, devmajor 0) is constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    pub name: String,
    pub linkname: String,
    pub typeflag: u8,
    pub size: u64,
    pub mtime: u64,
    pub devminor: u64,
}

impl EntryHeader {
    /// A regular file entry: `files/`, `meta/`, `folders/…`.
    pub fn file(name: &str, sha1: &str, size: u64, mtime: u64, inode: u64) -> Self {
        EntryHeader {
            name: name.to_string(),
            linkname: sha1.to_string(),
            typeflag: REGULAR,
            size,
            mtime,
            devminor: inode,
        }
    }

    /// A delete marker for a `folders/…` or `meta/…` key: size 0, no sha1.
    pub fn delete_marker(name: &str) -> Self {
        EntryHeader::file(name, "", 0, 0, 0)
    }

    /// An `imap/<name>/` link; an empty target marks the name deleted.
    pub fn link(name: &str, target: &str, mtime: u64) -> Self {
        EntryHeader {
            name: name.to_string(),
            linkname: target.to_string(),
            typeflag: SYMLINK,
            size: 0,
            mtime,
            devminor: 0,
        }
    }

    /// Total bytes the entry takes in the stream: L/K entries, header, body.
    pub fn stream_len(&self) -> u64 {
        let long = long_entry_len(&self.name) + long_entry_len(&self.linkname);
        long + BLOCK as u64 + padded(self.size)
    }
}

/// `size` rounded up to whole blocks.
pub fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// NUL bytes that follow a body of `size` bytes.
pub fn padding_len(size: u64) -> usize {
    (padded(size) - size) as usize
}

fn long_entry_len(value: &str) -> u64 {
    if value.len() > 100 {
        BLOCK as u64 + padded(value.len() as u64 + 1)
    } else {
        0
    }
}

/// The blocks that precede the body: any `L`/`K` entries, then the header.
/// The `L`/`K` headers carry the entry's mtime (Perl puts `time()` there,
/// which nobody reads; ours is reproducible).
pub fn encode_header(h: &EntryHeader) -> Result<Vec<u8>, TarError> {
    if h.name.contains('\0') || h.linkname.contains('\0') {
        return Err(TarError::NulInName {
            name: h.name.clone(),
        });
    }
    let mut out = Vec::with_capacity(BLOCK * 3);
    for (flag, value) in [(b'L', &h.name), (b'K', &h.linkname)] {
        if value.len() > 100 {
            let data_len = value.len() as u64 + 1;
            let long = EntryHeader {
                name: "././@LongLink".into(),
                linkname: String::new(),
                typeflag: flag,
                size: data_len,
                mtime: h.mtime,
                devminor: 0,
            };
            out.extend_from_slice(&header_block(&long)?);
            out.extend_from_slice(value.as_bytes());
            out.resize(out.len() + 1 + padding_len(data_len), 0);
        }
    }
    out.extend_from_slice(&header_block(h)?);
    Ok(out)
}

/// One 512-byte ustar header block, exactly as Archive::Tar::Stream 0.06
/// packs it (names longer than 100 bytes are cut, as `pack a100` does).
pub fn header_block(h: &EntryHeader) -> Result<[u8; BLOCK], TarError> {
    let mut b = [0u8; BLOCK];
    put_str(&mut b[0..100], h.name.as_bytes());
    put_octal(&mut b[100..108], 0o777, &h.name, "mode")?;
    put_octal(&mut b[108..116], 0, &h.name, "uid")?;
    put_octal(&mut b[116..124], 0, &h.name, "gid")?;
    put_octal(&mut b[124..136], h.size, &h.name, "size")?;
    put_octal(&mut b[136..148], h.mtime, &h.name, "mtime")?;
    b[148..156].copy_from_slice(b"        ");
    b[156] = h.typeflag;
    put_str(&mut b[157..257], h.linkname.as_bytes());
    b[257..265].copy_from_slice(b"ustar\x0000");
    put_octal(&mut b[329..337], 0, &h.name, "devmajor")?;
    put_octal(&mut b[337..345], h.devminor, &h.name, "devminor")?;
    let sum = checksum(&b);
    let text = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(text.as_bytes());
    Ok(b)
}

fn put_str(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Octal with a NUL when it fits (the Perl form), octal filling the field
/// when only that fits, GNU base-256 beyond.
fn put_octal(field: &mut [u8], value: u64, name: &str, what: &'static str) -> Result<(), TarError> {
    let width = field.len();
    let text = format!("{value:0w$o}", w = width - 1);
    if text.len() < width {
        field[..text.len()].copy_from_slice(text.as_bytes());
        field[width - 1] = 0;
        return Ok(());
    }
    if text.len() == width {
        field.copy_from_slice(text.as_bytes());
        return Ok(());
    }
    put_base256(field, value).ok_or_else(|| TarError::FieldTooLarge {
        name: name.to_string(),
        field: what,
        value,
    })
}

/// GNU base-256: first byte 0x80, the value big-endian in the rest (the
/// sign bit 0x40 of the first byte must stay clear).
fn put_base256(field: &mut [u8], value: u64) -> Option<()> {
    let payload_bits = (field.len() - 1) * 8;
    if payload_bits < 64 && value >> payload_bits != 0 {
        return None;
    }
    field.fill(0);
    field[0] = 0x80;
    let bytes = value.to_be_bytes();
    let take = (field.len() - 1).min(8);
    let dst_start = field.len() - take;
    field[dst_start..].copy_from_slice(&bytes[8 - take..]);
    Some(())
}

/// Unsigned byte sum with the checksum field read as spaces.
fn checksum(block: &[u8; BLOCK]) -> u32 {
    let all: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let field: u32 = block[148..156].iter().map(|&b| u32::from(b)).sum();
    all - field + 8 * u32::from(b' ')
}

/// Reads a numeric field: octal (stripped at the first NUL, spaces
/// trimmed) or GNU base-256.
fn get_number(field: &[u8], offset: u64, what: &'static str) -> Result<u64, TarError> {
    let bad = || TarError::BadNumber {
        offset,
        field: what,
        value: String::from_utf8_lossy(field).into_owned(),
    };
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(bad());
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256).ok_or_else(bad)? | u64::from(b);
        }
        return Ok(v);
    }
    let text = until_nul(field);
    let text = std::str::from_utf8(text).map_err(|_| bad())?.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| bad())
}

fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn get_string(field: &[u8], offset: u64, what: &'static str) -> Result<String, TarError> {
    String::from_utf8(until_nul(field).to_vec()).map_err(|_| TarError::NotUtf8 {
        offset,
        field: what,
    })
}

/// Decodes one header block at stream `offset`. `None` for a block whose
/// first byte is NUL: the end of the archive. Both the 32-bit checksum (0.06,
/// GNU) and the 16-bit one (0.05) are accepted; magic is ignored.
pub fn decode_header_block(
    block: &[u8; BLOCK],
    offset: u64,
) -> Result<Option<EntryHeader>, TarError> {
    if block[0] == 0 {
        return Ok(None);
    }
    let stored_text = until_nul(&block[148..156]);
    let computed = checksum(block);
    let stored = get_number(&block[148..156], offset, "chksum").ok();
    if stored != Some(u64::from(computed)) && stored != Some(u64::from(computed & 0xffff)) {
        return Err(TarError::Checksum {
            offset,
            stored: String::from_utf8_lossy(stored_text).into_owned(),
            computed,
        });
    }
    Ok(Some(EntryHeader {
        name: get_string(&block[0..100], offset, "name")?,
        linkname: get_string(&block[157..257], offset, "linkname")?,
        typeflag: block[156],
        size: get_number(&block[124..136], offset, "size")?,
        mtime: get_number(&block[136..148], offset, "mtime")?,
        devminor: get_number(&block[337..345], offset, "devminor")?,
    }))
}

/// One entry as found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub header: EntryHeader,
    /// Position of the entry's first block (the first L/K block if any):
    /// the offset the state db records.
    pub offset: u64,
    /// Position of the main header block.
    pub header_offset: u64,
    /// Position of the first body byte.
    pub data_offset: u64,
}

/// Upper bound for a GNU long name: more is a corrupt stream, not a name.
const MAX_LONG_NAME: u64 = 64 * 1024;

/// Walks the entries of an uncompressed tar stream. After [`next_entry`]
/// the caller may read the body with [`read_body`] or [`body_reader`]; an
/// unread body is skipped by the next call.
///
/// [`next_entry`]: TarReader::next_entry
/// [`read_body`]: TarReader::read_body
/// [`body_reader`]: TarReader::body_reader
pub struct TarReader<R: Read> {
    inner: R,
    pos: u64,
    /// Body bytes of the current entry not yet read, then its padding.
    body_left: u64,
    pad_left: u64,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        Self::starting_at(inner, 0)
    }

    /// A reader whose first byte is at stream offset `pos`.
    pub fn starting_at(inner: R, pos: u64) -> Self {
        TarReader {
            inner,
            pos,
            body_left: 0,
            pad_left: 0,
        }
    }

    /// Stream offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next entry, or `None` at a clean end: EOF on a block boundary or a
    /// zero block.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        self.skip_rest()?;
        let offset = self.pos;
        let mut long_name = None;
        let mut long_link = None;
        loop {
            let header_offset = self.pos;
            let Some(block) = self.read_block()? else {
                if long_name.is_some() || long_link.is_some() {
                    return Err(self.truncated("entry after a long-name block"));
                }
                return Ok(None);
            };
            let Some(mut header) = decode_header_block(&block, header_offset)? else {
                return Ok(None);
            };
            match header.typeflag {
                b'L' => long_name = Some(self.read_long(header.size, header_offset)?),
                b'K' => long_link = Some(self.read_long(header.size, header_offset)?),
                _ => {
                    if let Some(n) = long_name {
                        header.name = n;
                    }
                    if let Some(l) = long_link {
                        header.linkname = l;
                    }
                    self.body_left = header.size;
                    self.pad_left = padded(header.size) - header.size;
                    return Ok(Some(Entry {
                        header,
                        offset,
                        header_offset,
                        data_offset: self.pos,
                    }));
                }
            }
        }
    }

    /// Reads the whole body of the current entry into memory.
    pub fn read_body(&mut self) -> Result<Vec<u8>, TarError> {
        let mut out = Vec::new();
        if let Err(e) = self.body_reader().read_to_end(&mut out) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                self.truncated("entry body")
            } else {
                self.io_err(e)
            });
        }
        if self.body_left != 0 {
            return Err(self.truncated("entry body"));
        }
        Ok(out)
    }

    /// A reader over the rest of the current body; it ends early with
    /// `UnexpectedEof` if the stream is truncated.
    pub fn body_reader(&mut self) -> BodyReader<'_, R> {
        BodyReader { tar: self }
    }

    /// The rest of the current body as a reader of its own.
    pub fn into_body(self) -> io::Take<R> {
        self.inner.take(self.body_left)
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.body_left + self.pad_left;
        if n == 0 {
            return Ok(());
        }
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
            .map_err(|e| self.io_err(e))?;
        self.pos += copied;
        self.body_left = 0;
        self.pad_left = 0;
        if copied != n {
            return Err(self.truncated("entry body"));
        }
        Ok(())
    }

    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarError> {
        let mut block = [0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        if filled < BLOCK {
            self.pos += filled as u64;
            return Err(self.truncated("header block"));
        }
        self.pos += BLOCK as u64;
        Ok(Some(block))
    }

    fn read_long(&mut self, size: u64, offset: u64) -> Result<String, TarError> {
        if size > MAX_LONG_NAME {
            return Err(TarError::LongNameTooLong { offset, size });
        }
        let mut data = vec![0u8; padded(size) as usize];
        self.inner.read_exact(&mut data).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.truncated("long-name data")
            } else {
                self.io_err(e)
            }
        })?;
        self.pos += data.len() as u64;
        data.truncate(size as usize);
        while data.last() == Some(&0) {
            data.pop();
        }
        String::from_utf8(data).map_err(|_| TarError::NotUtf8 {
            offset,
            field: "long name",
        })
    }

    fn truncated(&self, what: &'static str) -> TarError {
        TarError::Truncated {
            offset: self.pos,
            what,
        }
    }

    fn io_err(&self, source: io::Error) -> TarError {
        TarError::Io {
            offset: self.pos,
            source,
        }
    }
}

/// The body of the current entry of a [`TarReader`].
pub struct BodyReader<'a, R: Read> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for BodyReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.tar.body_left;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tar entry body truncated",
            ));
        }
        self.tar.body_left -= n as u64;
        self.tar.pos += n as u64;
        Ok(n)
    }
}

/// What an entry name means in a backup store (spec §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKey {
    /// `files/<sha1>`: a message, named by its GUID.
    File(Guid),
    /// `files/<anything else>`, e.g. the legacy `files/02…` names.
    LegacyFile(String),
    /// `meta/<name>` (also the legacy `annot/`, `sieve/` types).
    Meta { kind: String, name: String },
    /// `folders/<uniqueid>/cyrus.<name>`.
    FolderFile { uniqueid: String, name: String },
    /// `imap/<name>/`, with the name as written in the tar (still encoded).
    Imap { tar_name: String },
    /// Anything else: kept, never interpreted.
    Other(String),
}

impl EntryKey {
    /// Classifies a tar name the way the Perl state's regexes do.
    pub fn parse(name: &str) -> EntryKey {
        if let Some(rest) = name.strip_prefix("files/") {
            let first = rest.split('/').next().unwrap_or("");
            return match first.parse::<Guid>() {
                Ok(g) if first.bytes().all(|b| !b.is_ascii_uppercase()) => EntryKey::File(g),
                _ => EntryKey::LegacyFile(first.to_string()),
            };
        }
        if let Some(rest) = name.strip_prefix("folders/") {
            if let Some((uid, file)) = rest.split_once('/') {
                if let Some(n) = file.strip_prefix("cyrus.") {
                    if !uid.is_empty() {
                        return EntryKey::FolderFile {
                            uniqueid: uid.to_string(),
                            name: n.to_string(),
                        };
                    }
                }
            }
            return EntryKey::Other(name.to_string());
        }
        if let Some(rest) = name.strip_prefix("imap/") {
            let n = rest.split('/').next().unwrap_or("");
            if !n.is_empty() {
                return EntryKey::Imap {
                    tar_name: n.to_string(),
                };
            }
            return EntryKey::Other(name.to_string());
        }
        for kind in ["meta", "annot", "sieve"] {
            if let Some(rest) = name.strip_prefix(kind).and_then(|r| r.strip_prefix('/')) {
                let n = rest.split('/').next().unwrap_or("");
                if !n.is_empty() {
                    return EntryKey::Meta {
                        kind: kind.to_string(),
                        name: n.to_string(),
                    };
                }
            }
        }
        EntryKey::Other(name.to_string())
    }
}

/// Tar name of a message.
pub fn file_name(guid: &Guid) -> String {
    format!("files/{guid}")
}

/// Tar name of a user meta file (`seen`, `sub`).
pub fn meta_name(name: &str) -> String {
    format!("meta/{name}")
}

/// Tar name of a folder's `cyrus.<name>` file.
pub fn folder_file_name(uniqueid: &str, name: &str) -> String {
    format!("folders/{uniqueid}/cyrus.{name}")
}

/// Tar name of the link for folder `name` (an IMAP name, unencoded).
pub fn imap_name(name: &str) -> String {
    format!("imap/{}/", encode_folder_name(name))
}

/// The uniqueid a link points at; `None` for a deletion marker. The legacy
/// `folders/<uniqueid>` form is accepted.
pub fn link_target(linkname: &str) -> Option<&str> {
    let t = linkname.strip_prefix("folders/").unwrap_or(linkname);
    (!t.is_empty()).then_some(t)
}

/// Makes a folder name safe for the Perl `imap/([^/]+)` key: `/` becomes
/// `%2F`, and a `%` that would otherwise start `%2F`/`%25` becomes `%25`.
/// Any name without `/` and without those two sequences is unchanged, so
/// every name the Perl client could store reads back as itself.
pub fn encode_folder_name(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.char_indices() {
        match c {
            '/' => out.push_str("%2F"),
            '%' if is_escape(b.get(i + 1..i + 3)) => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

fn is_escape(next: Option<&[u8]>) -> bool {
    matches!(next, Some([b'2', b'F' | b'f' | b'5']))
}

/// Inverse of [`encode_folder_name`].
pub fn decode_folder_name(tar_name: &str) -> String {
    let b = tar_name.as_bytes();
    let mut out = String::with_capacity(tar_name.len());
    let mut i = 0;
    while i < b.len() {
        match b.get(i..i + 3) {
            Some([b'%', b'2', b'F' | b'f']) => {
                out.push('/');
                i += 3;
            }
            Some([b'%', b'2', b'5']) => {
                out.push('%');
                i += 3;
            }
            _ => {
                let ch = tar_name[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(h: &EntryHeader) -> Entry {
        let mut bytes = encode_header(h).unwrap();
        bytes.resize(bytes.len() + h.size as usize + padding_len(h.size), 0);
        let mut r = TarReader::new(&bytes[..]);
        let e = r.next_entry().unwrap().unwrap();
        assert!(r.next_entry().unwrap().is_none());
        e
    }

    #[test]
    fn a_short_entry_is_one_block_with_the_perl_constants() {
        let h = EntryHeader::file(
            "meta/sub",
            "414c12ea171b1cc0d0ebc27371c2c03dded65046",
            66,
            1795660353,
            10051912,
        );
        let b = encode_header(&h).unwrap();
        assert_eq!(b.len(), BLOCK);
        assert_eq!(&b[100..108], b"0000777\0");
        assert_eq!(&b[124..136], b"00000000102\0");
        assert_eq!(&b[257..265], b"ustar\x0000");
        assert_eq!(&b[337..345], format!("{:08o}", 10051912).as_bytes());
        assert_eq!(b[154..156], *b"\0 ");
        assert_eq!(roundtrip(&h).header, h);
    }

    #[test]
    fn long_names_get_an_l_entry_and_the_offset_is_the_first_block() {
        let name = format!("imap/{}/", "x".repeat(120));
        let h = EntryHeader::link(&name, "some-uniqueid", 5);
        let e = roundtrip(&h);
        assert_eq!(e.header.name, name);
        assert_eq!(e.offset, 0);
        assert_eq!(e.header_offset, 1024);
        assert_eq!(h.stream_len(), 1536);
    }

    #[test]
    fn long_linknames_get_a_k_entry() {
        let h = EntryHeader::link("imap/a/", &"t".repeat(300), 5);
        assert_eq!(roundtrip(&h).header, h);
    }

    #[test]
    fn big_inodes_and_sizes_round_trip_exactly() {
        for inode in [
            (1u64 << 21) - 1,
            1 << 21,
            (1 << 24) - 1,
            1 << 24,
            1 << 40,
            (1 << 56) - 1,
        ] {
            let h = EntryHeader::file("files/x", "", 0, 1, inode);
            assert_eq!(roundtrip(&h).header.devminor, inode);
        }
        let h = EntryHeader::file("files/x", "", 0, 1 << 40, 1);
        assert_eq!(roundtrip(&h).header.mtime, 1 << 40);
        let h = EntryHeader::file("files/x", "", 0, 0, 1u64 << 60);
        assert!(matches!(
            encode_header(&h),
            Err(TarError::FieldTooLarge { .. })
        ));
    }

    #[test]
    fn the_16_bit_checksum_of_version_005_is_accepted() {
        let h = EntryHeader::file("meta/sub", "", 0, 0, 0);
        let mut b: [u8; BLOCK] = header_block(&h).unwrap();
        let sum = checksum(&b) & 0xffff;
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert!(decode_header_block(&b, 0).unwrap().is_some());
        b[148..156].copy_from_slice(b"000001\0 ");
        assert!(matches!(
            decode_header_block(&b, 7),
            Err(TarError::Checksum { offset: 7, .. })
        ));
    }

    #[test]
    fn truncated_header_and_body_are_typed_errors() {
        let h = EntryHeader::file("files/x", "", 1000, 0, 0);
        let bytes = encode_header(&h).unwrap();
        let mut r = TarReader::new(&bytes[..100]);
        assert!(matches!(
            r.next_entry(),
            Err(TarError::Truncated { offset: 100, .. })
        ));
        let mut r = TarReader::new(&bytes[..]);
        r.next_entry().unwrap();
        assert!(matches!(r.read_body(), Err(TarError::Truncated { .. })));
    }

    #[test]
    fn entry_keys_follow_the_perl_regexes() {
        let g = "b7ed6e137fcf82ff937612f65d33d19029b20aeb";
        assert_eq!(
            EntryKey::parse(&format!("files/{g}")),
            EntryKey::File(g.parse().unwrap())
        );
        assert!(matches!(
            EntryKey::parse("files/02abc"),
            EntryKey::LegacyFile(_)
        ));
        assert_eq!(
            EntryKey::parse("folders/U1/cyrus.index"),
            EntryKey::FolderFile {
                uniqueid: "U1".into(),
                name: "index".into()
            }
        );
        assert_eq!(
            EntryKey::parse("imap/INBOX.a/"),
            EntryKey::Imap {
                tar_name: "INBOX.a".into()
            }
        );
        assert_eq!(
            EntryKey::parse("meta/seen"),
            EntryKey::Meta {
                kind: "meta".into(),
                name: "seen".into()
            }
        );
        assert_eq!(link_target("folders/U1"), Some("U1"));
        assert_eq!(link_target(""), None);
    }

    #[test]
    fn folder_names_with_slashes_are_encoded_bijectively() {
        for n in [
            "INBOX",
            "a/b",
            "100%",
            "%2F",
            "%/",
            "%2/",
            "%25",
            "x%2f/y",
            "Trips 2024",
            "é/ü",
        ] {
            let e = encode_folder_name(n);
            assert!(!e.contains('/'), "{e}");
            assert_eq!(decode_folder_name(&e), n, "{n} -> {e}");
        }
        assert_eq!(encode_folder_name("INBOX.Trips 2024"), "INBOX.Trips 2024");
        assert_eq!(encode_folder_name("100%"), "100%");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            let mut r = TarReader::new(&data[..]);
            for _ in 0..16 {
                match r.next_entry() {
                    Ok(Some(_)) => { let _ = r.read_body(); }
                    _ => break,
                }
            }
        }

        #[test]
        fn arbitrary_headers_round_trip(name in "[a-z/.]{1,250}", link in "[a-z0-9-]{0,150}",
                                        size in 0u64..5000, mtime in proptest::num::u64::ANY,
                                        inode in 0u64..(1u64 << 56)) {
            let mtime = mtime >> 8;
            let h = EntryHeader::file(&name, &link, size, mtime, inode);
            proptest::prop_assert_eq!(roundtrip(&h).header, h);
        }

        #[test]
        fn folder_name_encoding_round_trips(n in "[a-zA-Z0-9%/2F5 .]{0,40}") {
            let e = encode_folder_name(&n);
            proptest::prop_assert!(!e.contains('/'));
            proptest::prop_assert_eq!(decode_folder_name(&e), n);
        }
    }
}
