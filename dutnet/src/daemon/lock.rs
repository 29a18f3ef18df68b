//! One dutnet per state: the pid file, held under an exclusive flock, in
//! the run directory (both root's only: 0600 and 0700).
use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use crate::state::private;

/// The lock of the running daemon; released when dropped (or when the
/// process dies, however it dies).
#[derive(Debug)]
pub struct PidLock {
    _file: File,
    path: PathBuf,
}

/// Who holds the lock now.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    Pid(i32),
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("dutnet is already running here (pid {pid}); stop it with `dutnet down` first")]
    Running { pid: i32 },
    #[error("pid file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn open(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    // Created 0700 when missing; an existing run directory's mode is the
    // control server's to set (0710 for a socket group), not a lock check's.
    if let Some(dir) = path.parent() {
        private::create_dir(dir).map_err(io)?;
    }
    private::open_file(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
    .map_err(io)
}

fn try_flock(file: &File) -> bool {
    // SAFETY: flock on an open file descriptor.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn read_pid(file: &mut File) -> i32 {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    text.trim().parse().unwrap_or(0)
}

impl PidLock {
    /// Takes the lock and writes our pid, or says who holds it.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let mut file = open(path)?;
        if !try_flock(&file) {
            return Err(LockError::Running {
                pid: read_pid(&mut file),
            });
        }
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(Self {
            _file: file,
            path: path.to_owned(),
        })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who holds the lock at `path` (without taking it for longer than a check).
pub fn holder(path: &Path) -> Result<Holder, LockError> {
    if !path.exists() {
        return Ok(Holder::Nobody);
    }
    let mut file = open(path)?;
    if try_flock(&file) {
        return Ok(Holder::Nobody);
    }
    Ok(Holder::Pid(read_pid(&mut file)))
}
