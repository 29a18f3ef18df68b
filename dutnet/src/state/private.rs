//! Files only root may read, and the directories that hold them.
//!
//! Lease files name every DUT's MAC address and host name, the undo journal
//! and the runtime changes describe the host and the lab: dutnet creates its
//! files 0600 and its directories 0700, whatever the umask, and takes group
//! and other access away from those an earlier (older) dutnet left.
use std::{
    fs::{self, DirBuilder, File, OpenOptions, Permissions},
    io,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

/// The mode of every file dutnet writes.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory dutnet creates.
pub const DIR_MODE: u32 = 0o700;
/// How deep [`tighten_tree`] looks: `state/networks/<name>/leases` is
/// three levels below the state directory.
const TREE_DEPTH: usize = 4;

/// Creates `dir` 0700 with any missing parent (each 0700 too); an existing
/// directory keeps its mode (a configured directory may be shared).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// [`create_dir`], then makes `dir` itself 0700: for directories that are
/// dutnet's own by definition (the state and run directories).
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    create_dir(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Takes group and other access away from an existing file; a missing one
/// is fine.
pub fn restrict_file(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => restrict(path, &meta),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Takes group and other access away from `root` and everything below it
/// (not following symbolic links, at most [`TREE_DEPTH`] levels): what an
/// older dutnet created with the umask's modes. A missing `root` is fine.
pub fn tighten_tree(root: &Path) -> io::Result<()> {
    tighten(root, TREE_DEPTH)
}

fn tighten(path: &Path, depth: usize) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        restrict(path, &meta)?;
        if depth > 0 {
            for entry in fs::read_dir(path)? {
                tighten(&entry?.path(), depth - 1)?;
            }
        }
    } else if meta.is_file() {
        restrict(path, &meta)?;
    }
    Ok(())
}

fn restrict(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(mode & !0o077))
}

/// Opens `path` for writing, created 0600; a file that exists (a temporary
/// file a crash left, a pid file) is made 0600 too and kept.
pub fn open_file(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options.mode(FILE_MODE).open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dutnet-private-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn written_files_and_created_directories_are_private() {
        let dir = temp_dir("write");
        let file = dir.join("a").join("b").join("leases");
        super::super::atomic_write(&file, b"one").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"one");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.join("a")), 0o700);
        assert_eq!(mode(&dir.join("a").join("b")), 0o700);
        // A world-readable file is replaced by a private one.
        fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        super::super::atomic_write(&file, b"two").unwrap();
        assert_eq!(mode(&file), 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_an_older_dutnet_left_is_tightened() {
        let dir = temp_dir("tighten");
        let nested = dir.join("networks").join("lab");
        fs::create_dir_all(&nested).unwrap();
        fs::write(nested.join("leases"), b"x").unwrap();
        fs::write(dir.join("undo.journal"), b"x").unwrap();
        for path in [&dir, &dir.join("networks"), &nested] {
            fs::set_permissions(path, Permissions::from_mode(0o755)).unwrap();
        }
        for path in [nested.join("leases"), dir.join("undo.journal")] {
            fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        }
        tighten_tree(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("networks")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&nested.join("leases")), 0o600);
        assert_eq!(mode(&dir.join("undo.journal")), 0o600);
        tighten_tree(&dir.join("missing")).unwrap();
        restrict_file(&dir.join("missing")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
