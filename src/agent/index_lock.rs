//! A shared lock on `cyrus.index`, the lock Cyrus's own readers take, so that
//! the header, index and annotations we read form one consistent snapshot.
//!
//! Cyrus locks with `fcntl` record locks. Classic POSIX record locks belong
//! to the process, and closing any descriptor of the file drops them all —
//! fatal in a threaded server. Open-file-description locks (`F_OFD_SETLK`)
//! belong to the descriptor instead and conflict with Cyrus's POSIX locks
//! all the same, so they are what we take.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

/// How often a busy lock is tried again.
const RETRY: Duration = Duration::from_millis(5);

/// An open `cyrus.index` with a shared lock on the whole file; dropping it
/// (closing the descriptor) releases the lock.
#[derive(Debug)]
pub struct SharedIndexLock {
    file: File,
}

impl SharedIndexLock {
    /// Opens `path` and waits up to `patience` for a shared lock, so a
    /// writer that holds the lock for long (a repack) fails this request
    /// instead of hanging the connection.
    pub fn acquire(path: &Path, patience: Duration) -> io::Result<SharedIndexLock> {
        let file = File::open(path)?;
        let deadline = Instant::now() + patience;
        loop {
            match fcntl(&file, FcntlArg::F_OFD_SETLK(&whole_file(libc::F_RDLCK))) {
                Ok(_) => return Ok(SharedIndexLock { file }),
                Err(Errno::EAGAIN | Errno::EACCES | Errno::EINTR) if Instant::now() < deadline => {
                    std::thread::sleep(RETRY);
                }
                Err(Errno::EAGAIN | Errno::EACCES) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("{} stayed locked for {patience:?}", path.display()),
                    ))
                }
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }

    /// The locked file, to read the index itself through.
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn readers_share_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cyrus.index");
        std::fs::write(&path, b"index bytes").unwrap();
        let a = SharedIndexLock::acquire(&path, Duration::from_millis(50)).unwrap();
        let b = SharedIndexLock::acquire(&path, Duration::from_millis(50)).unwrap();
        let mut text = String::new();
        b.file().read_to_string(&mut text).unwrap();
        assert_eq!(text, "index bytes");
        drop(a);
    }

    #[test]
    fn a_writer_in_another_process_holds_readers_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cyrus.index");
        std::fs::write(&path, b"x").unwrap();
        // A child process holds a POSIX lock, as a Cyrus writer does.
        let script = format!(
            "import fcntl,time; f=open({:?},'r+'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(3)",
            path
        );
        let mut holder = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 to hold a POSIX lock");
        let mut line = [0u8; 6];
        holder
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut line)
            .unwrap();
        let started = Instant::now();
        let err = SharedIndexLock::acquire(&path, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(started.elapsed() >= Duration::from_millis(200));
        holder.kill().unwrap();
        holder.wait().unwrap();
        SharedIndexLock::acquire(&path, Duration::from_secs(2)).unwrap();
    }
}
