//! Reading entries back: by offset (random access: seek in a plain tar,
//! inflate from one gzip member on in a `.tar.gz`) or by streaming the
//! whole file in order.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::error::{At, Result, StoreError};
use crate::formats::backup_tar::{Entry, TarReader};
use crate::formats::gzip_members::{member_reader, MemberInfo};

/// The data file as an uncompressed stream starting at `offset`. With
/// `members` known only the member holding `offset` (and any after it that
/// the caller reads on into) is inflated; without, the stream is inflated
/// from the start and skipped forward.
pub fn stream_at(
    path: &Path,
    gz: bool,
    members: &[MemberInfo],
    offset: u64,
) -> Result<Box<dyn Read>> {
    let mut file = File::open(path).at(path)?;
    if !gz {
        file.seek(SeekFrom::Start(offset)).at(path)?;
        return Ok(Box::new(BufReader::new(file)));
    }
    let member = members.iter().rev().find(|m| {
        m.uncompressed_offset <= offset && offset < m.uncompressed_offset + m.uncompressed_len
    });
    let (coff, uoff) = member.map_or((0, 0), |m| (m.compressed_offset, m.uncompressed_offset));
    let mut r: Box<dyn Read> = if member.is_some() {
        Box::new(member_reader(file, coff).at(path)?)
    } else {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    };
    let skip = offset - uoff;
    let skipped = io::copy(&mut (&mut r).take(skip), &mut io::sink()).at(path)?;
    if skipped != skip {
        return Err(StoreError::NoEntryAt {
            path: path.to_path_buf(),
            offset,
        });
    }
    Ok(r)
}

/// The entry whose first block is at `offset`, with a reader over its body.
pub fn entry_at(
    path: &Path,
    gz: bool,
    members: &[MemberInfo],
    offset: u64,
) -> Result<(Entry, TarReader<Box<dyn Read>>)> {
    let stream = stream_at(path, gz, members, offset)?;
    let mut tar = TarReader::starting_at(stream, offset);
    match tar.next_entry().at(path)? {
        Some(e) => Ok((e, tar)),
        None => Err(StoreError::NoEntryAt {
            path: path.to_path_buf(),
            offset,
        }),
    }
}

/// The whole uncompressed stream from offset 0.
pub fn stream_all(path: &Path, gz: bool) -> Result<TarReader<Box<dyn Read>>> {
    let file = File::open(path).at(path)?;
    let r: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            64 * 1024,
            file,
        )))
    } else {
        Box::new(BufReader::with_capacity(64 * 1024, file))
    };
    Ok(TarReader::new(r))
}

/// The data file `name` in `dir`, following the metadir link the Perl
/// client makes (`backupdata-… -> ../../data/<user>/backupdata-…`). A copy
/// that lost the symlink keeps its target as the file's text (git without
/// symlink support does this); such a stub is followed too when its text
/// is a relative path to an existing file of the same name.
pub fn resolve_data_path(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let Ok(md) = std::fs::symlink_metadata(&path) else {
        return path;
    };
    if !md.is_file() || md.len() > 4096 {
        return path;
    }
    let Ok(text) = std::fs::read(&path) else {
        return path;
    };
    let Ok(text) = std::str::from_utf8(&text) else {
        return path;
    };
    let target = dir.join(text.trim_end());
    let same_name = Path::new(text.trim_end())
        .file_name()
        .is_some_and(|n| n == name);
    if same_name && target.is_file() && target != path {
        return target;
    }
    path
}
