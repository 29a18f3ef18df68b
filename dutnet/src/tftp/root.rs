//! Opening a requested file inside `tftp_root` and nowhere else.
//!
//! `openat2(RESOLVE_BENEATH)` (Linux 5.6) lets the kernel refuse every
//! escape while it resolves the path: `..` above the root, absolute
//! symlinks, relative symlinks that climb out. Checking a canonicalized path
//! first and opening it afterwards would leave a window in which a symlink
//! could be swapped in.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::packet::ErrorCode;

/// The served directory, held open.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
}

/// Why a file is not served: the TFTP error for the client, and the reason
/// for the log.
#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    pub reason: String,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Self> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL"))?;
        // SAFETY: a NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(Self {
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens `name` for reading. A leading `/` is taken as the root (PXE
    /// configs often write absolute paths; tftpd-hpa `--secure` does the
    /// same), so `/etc/passwd` is `<root>/etc/passwd`, never the host's.
    pub fn open_file(&self, name: &str) -> Result<(File, u64), Refusal> {
        let relative = name.trim_start_matches('/');
        let refuse = |code, reason: String| Refusal { code, reason };
        if relative.is_empty() {
            return Err(refuse(ErrorCode::FileNotFound, "empty file name".into()));
        }
        let c = CString::new(relative)
            .map_err(|_| refuse(ErrorCode::AccessViolation, "NUL in file name".into()))?;
        // SAFETY: zeroed is a valid open_how (all flags off); fields set below.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        // O_NONBLOCK: a FIFO in the root must not hang the transfer at open.
        how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: valid dirfd, NUL-terminated path, `how` of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let code = match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => ErrorCode::FileNotFound,
                _ => ErrorCode::AccessViolation,
            };
            let reason = match e.raw_os_error() {
                Some(libc::EXDEV) => "path leaves the TFTP root".to_owned(),
                _ => e.to_string(),
            };
            return Err(refuse(code, reason));
        }
        // SAFETY: `fd` is a fresh descriptor we own (a syscall returns c_long).
        let file = unsafe { File::from_raw_fd(fd as libc::c_int) };
        let meta = file
            .metadata()
            .map_err(|e| refuse(ErrorCode::AccessViolation, e.to_string()))?;
        if !meta.is_file() {
            return Err(refuse(
                ErrorCode::AccessViolation,
                "not a regular file".into(),
            ));
        }
        Ok((file, meta.len()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    pub(crate) struct TempDir(std::path::PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("dutnet-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lab() -> (TempDir, Root) {
        let dir = TempDir::new("tftp-root");
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        std::fs::write(dir.path().join("boot/kernel"), b"kernel").unwrap();
        std::fs::write(dir.path().join("top"), b"top").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("out-abs")).unwrap();
        std::os::unix::fs::symlink("../../etc/hostname", dir.path().join("boot/out-rel")).unwrap();
        std::os::unix::fs::symlink("kernel", dir.path().join("boot/in")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn serves_files_beneath_the_root() {
        let (_dir, root) = lab();
        assert_eq!(root.open_file("boot/kernel").map(|f| f.1).ok(), Some(6));
        assert_eq!(root.open_file("/top").map(|f| f.1).ok(), Some(3));
        assert_eq!(root.open_file("boot/in").map(|f| f.1).ok(), Some(6));
        assert_eq!(root.open_file("boot/../top").map(|f| f.1).ok(), Some(3));
    }

    #[test]
    fn refuses_every_way_out() {
        let (_dir, root) = lab();
        for name in [
            "../etc/hostname",
            "boot/../../etc/hostname",
            "/../etc/hostname",
            "out-abs",
            "boot/out-rel",
        ] {
            let r = root.open_file(name);
            assert!(
                matches!(
                    &r,
                    Err(Refusal {
                        code: ErrorCode::AccessViolation,
                        ..
                    })
                ),
                "{name}: {r:?}"
            );
        }
        assert!(matches!(
            root.open_file("/etc/hostname"),
            Err(Refusal {
                code: ErrorCode::FileNotFound,
                ..
            })
        ));
        assert!(matches!(
            root.open_file("boot"),
            Err(Refusal {
                code: ErrorCode::AccessViolation,
                ..
            })
        ));
    }
}
