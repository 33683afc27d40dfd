//! The writer's lock: `flock` on `<dir>/.lock`, held for the life of a
//! writable [`UserStore`](super::UserStore). The Perl tools never take it
//! (spec §7), so it only orders our own writers.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::{At, Result, StoreError};

/// What a second writer does when the store is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// Return [`StoreError::Locked`] at once.
    #[default]
    Fail,
    /// Block until the holder lets go.
    Wait,
}

/// Held exclusive lock; released on drop.
pub struct StoreLock {
    _flock: Flock<File>,
}

impl StoreLock {
    pub fn acquire(dir: &Path, mode: LockMode) -> Result<StoreLock> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        let arg = match mode {
            LockMode::Fail => FlockArg::LockExclusiveNonblock,
            LockMode::Wait => FlockArg::LockExclusive,
        };
        loop {
            match Flock::lock(file.try_clone().at(&path)?, arg) {
                Ok(flock) => return Ok(StoreLock { _flock: flock }),
                Err((_, Errno::EINTR)) => continue,
                Err((_, Errno::EWOULDBLOCK)) => return Err(StoreError::Locked(dir.to_path_buf())),
                Err((_, e)) => {
                    return Err(StoreError::Io {
                        path,
                        source: e.into(),
                    })
                }
            }
        }
    }
}
