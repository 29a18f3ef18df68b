//! Making sure dutnet's pins have a bpffs to live on.
use std::{ffi::CString, io, os::unix::ffi::OsStrExt as _, path::Path};

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

/// True when `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = cstring(path)?;
    // SAFETY: statfs is plain data; zeroed is a valid initial value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid out pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type == BPF_FS_MAGIC)
}

/// Mounts a bpffs at `mount_point` unless one is already there.
///
/// Systemd mounts one at /sys/fs/bpf on most hosts; minimal hosts, containers
/// and `ip netns exec` (which gives a private /sys) have none.
pub fn ensure_mounted(mount_point: &Path) -> io::Result<()> {
    std::fs::create_dir_all(mount_point)?;
    if is_bpffs(mount_point)? {
        return Ok(());
    }
    let target = cstring(mount_point)?;
    // SAFETY: all arguments are valid NUL-terminated strings.
    let ret = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}
