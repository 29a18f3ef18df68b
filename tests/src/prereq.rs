//! Prerequisites: a missing one fails the test with the command that installs it.

/// Panics with an install hint unless `program` is on PATH.
pub fn require(program: &str, debian_package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "`{program}` is not installed: run `cargo xtask setup` (or `apt-get install -y {debian_package}`)"
    );
}

/// Panics unless the tests run as root (namespaces, BPF and netlink need it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests need root: run them through `cargo xtask test`, which runs the test binaries as root"
    );
}
