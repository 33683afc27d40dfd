//! Crash recovery on a writable open (spec §4.4, DESIGN.md §4.5): the data
//! file may be longer than the committed `status.size` (a torn append: cut
//! it back) but never shorter (damage: report, never wipe, unlike Perl).

use std::fs::OpenOptions;
use std::path::Path;

use super::error::{At, Result, StoreError};

/// What recovery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    Clean,
    Truncated { from: u64, to: u64 },
}

/// Brings the data file back to `committed` bytes. A missing file counts
/// as empty.
pub fn recover_data_file(path: &Path, committed: u64) -> Result<Recovery> {
    let actual = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    if actual < committed {
        return Err(StoreError::DataFileShorter {
            path: path.to_path_buf(),
            expected: committed,
            actual,
        });
    }
    if actual == committed {
        return Ok(Recovery::Clean);
    }
    let f = OpenOptions::new().write(true).open(path).at(path)?;
    f.set_len(committed).at(path)?;
    f.sync_all().at(path)?;
    Ok(Recovery::Truncated {
        from: actual,
        to: committed,
    })
}
