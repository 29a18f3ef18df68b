//! What dutnet keeps outside its own memory.
pub mod paths;
pub mod private;
pub mod runtime;

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

/// Writes `contents` to `path` atomically and durably, mode 0600: a
/// temporary file beside it, fsync, rename, fsync of the directory (the
/// rename is only durable once the directory entry is on disk). Creates the
/// directory (0700) when missing. Every file dutnet rewrites goes through
/// here: the lease files, the runtime changes.
pub fn atomic_write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    private::create_dir(&dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = private::open_file(
        &tmp,
        OpenOptions::new().write(true).create(true).truncate(true),
    )?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    File::open(&dir)?.sync_all()
}

/// fsyncs the directory holding `path`, so that creating, renaming or
/// removing `path` survives a crash. Best effort: a directory that cannot be
/// opened has nothing to sync.
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}
