//! `cargo xtask setup`: install what is missing, and only that.
//!
//! Building dutnet's eBPF programs needs the nightly toolchain's rust-src (for
//! `-Z build-std=core`) and bpf-linker. bpf-linker must be built against an
//! LLVM it can load: the machine has no system LLVM of the right version, but
//! the nightly toolchain ships its own libLLVM, so bpf-linker is built against
//! that one (LLVM_PREFIX pointing at a folder of symlinks).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// The eBPF build's toolchain (aya-build's default).
pub const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests, the demo and the benchmark use, and what
/// building dutnet needs: `test` and `demo` install them before they build.
const PACKAGES: &[&str] = &[
    // dutnet links libpcap (`dutnet capture`: the live capture and the
    // filter compiler); the build needs its headers and libpcap.so.
    "libpcap-dev",
    // libfuzzer-sys compiles libFuzzer (C++) for `cargo xtask fuzz`.
    "g++",
    "iproute2",
    "iputils-ping",
    "procps",
    "nftables",
    "isc-dhcp-client",
    "udhcpc",
    "dnsutils",
    "dnsmasq-base",
    "iperf3",
    "tcpdump",
    "ethtool",
    "traceroute",
    "netcat-openbsd",
    // `dutnet flows` on the nft datapath names a conntrack command; the
    // test runs it.
    "conntrack",
    // The scanning-DUT test (flow_pressure.rs).
    "nmap",
    // The TFTP client of tests/tftp.rs (`curl tftp://`, --tftp-blksize).
    "curl",
    // tests/metrics.rs parses the /metrics exposition with the official
    // Python client's OpenMetrics parser.
    "python3-prometheus-client",
    // The venv of jumpstarter's own packages (tests/jumpstarter.rs).
    "python3-venv",
    // The real NTP client of tests/ntp.rs (`ntpdig`).
    "ntpsec-ntpdate",
];
/// Installed when the distribution packages it; nothing depends on it.
const OPTIONAL_PACKAGES: &[&str] = &["bpftool"];

pub fn run() -> Result<()> {
    install_debian_packages()?;
    install_rust_src()?;
    install_bpf_linker()?;
    install_jumpstarter()?;
    eprintln!("setup: everything is installed");
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_get(args: &[&str]) -> Command {
    let mut command = if run::is_root() {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    };
    command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
    command
}

fn install_debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    let optional: Vec<&str> = OPTIONAL_PACKAGES
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() && optional.is_empty() {
        return Ok(());
    }
    run::checked(&mut apt_get(&["update", "-qq"])).context(
        "apt-get update failed: setup needs root (or passwordless sudo) and the Debian mirror",
    )?;
    if !missing.is_empty() {
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        run::checked(&mut apt_get(&args))?;
    }
    for package in optional {
        if !run::succeeds(&mut apt_get(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            package,
        ])) {
            eprintln!("setup: optional package {package} is not available here; skipping it");
        }
    }
    Ok(())
}

fn rustup() -> Command {
    Command::new("rustup")
}

fn install_rust_src() -> Result<()> {
    let installed =
        run::stdout(rustup().args(["component", "list", "--installed", "--toolchain", NIGHTLY]));
    match installed {
        Ok(list) if list.lines().any(|l| l.starts_with("rust-src")) => Ok(()),
        Ok(_) => {
            run::checked(rustup().args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
        }
        Err(e) => bail!(
            "the {NIGHTLY} toolchain is missing ({e}); install it with `rustup toolchain install {NIGHTLY} --component rust-src`"
        ),
    }
}

/// jumpstarter's packages, pinned by `xtask/jumpstarter/requirements.txt`,
/// in a venv of their own: the compatibility tests import them.
fn install_jumpstarter() -> Result<()> {
    let root = run::workspace_root()?;
    let requirements = root.join("xtask/jumpstarter/requirements.txt");
    let venv = root.join(JUMPSTARTER_VENV);
    let stamp = venv.join("requirements.txt");
    let wanted =
        std::fs::read(&requirements).with_context(|| format!("read {}", requirements.display()))?;
    if !std::fs::read(&stamp).is_ok_and(|had| had == wanted) {
        let _ = std::fs::remove_dir_all(&venv);
        run::checked(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
            "creating the jumpstarter venv failed (Debian: apt-get install python3-venv)",
        )?;
        // `python -m pip`, not `bin/pip`: the script's first line names the
        // venv's path at creation, so a copied target dir would install
        // into the original's venv.
        run::checked(
            Command::new(venv.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements),
        )
        .context("installing jumpstarter's packages from PyPI failed")?;
        std::fs::write(&stamp, wanted).with_context(|| format!("write {}", stamp.display()))?;
    }
    link_dutnet_driver(&root, &venv)
}

/// Makes `integrations/jumpstarter` (the dutnet-backed driver package)
/// importable in the venv, as `pip install -e` would but without a build
/// backend to fetch: a `.pth` file naming the source folder, so the tests
/// always run the working tree's driver. Written on every setup (it names
/// this checkout).
fn link_dutnet_driver(root: &Path, venv: &Path) -> Result<()> {
    let lib = venv.join("lib");
    let python = std::fs::read_dir(&lib)
        .with_context(|| format!("read {}", lib.display()))?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .with_context(|| {
            format!(
                "no python3.* in {}: remove the venv and run setup again",
                lib.display()
            )
        })?;
    let pth = python
        .path()
        .join("site-packages/jumpstarter-driver-dutnet.pth");
    let source = root.join("integrations/jumpstarter");
    std::fs::write(&pth, format!("{}\n", source.display()))
        .with_context(|| format!("write {}", pth.display()))
}

/// cargo-fuzz, pinned, under `target/tools` (built on first use by `cargo
/// xtask fuzz`; the fuzz targets need the nightly toolchain, which setup
/// installs for the eBPF build already).
pub fn cargo_fuzz() -> Result<PathBuf> {
    const VERSION: &str = "0.13.2";
    let root = run::workspace_root()?.join("target/tools/cargo-fuzz");
    let binary = root.join("bin/cargo-fuzz");
    let installed =
        run::stdout(Command::new(&binary).arg("--version")).is_ok_and(|v| v.contains(VERSION));
    if !installed {
        run::checked(
            run::cargo()
                .args([
                    "install",
                    "cargo-fuzz",
                    "--locked",
                    "--version",
                    VERSION,
                    "--root",
                ])
                .arg(&root),
        )
        .context("installing cargo-fuzz from crates.io failed")?;
    }
    Ok(binary)
}

/// Where [`install_jumpstarter`] puts the venv, from the workspace root.
pub const JUMPSTARTER_VENV: &str = "target/tools/jumpstarter-venv";

fn install_bpf_linker() -> Result<()> {
    // aya-build runs bpf-linker through `rustup run nightly`, exactly like this.
    if run::succeeds(rustup().args(["run", NIGHTLY, "bpf-linker", "--version"])) {
        return Ok(());
    }
    let sysroot = PathBuf::from(
        run::stdout(rustup().args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?.trim(),
    );
    let lib_dir = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("read {}", lib_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}: is the nightly toolchain complete?",
                lib_dir.display()
            )
        })?;
    // "libLLVM.so.22.1-rust-1.97.0-nightly" -> LLVM 22 -> feature llvm-22.
    let major = libllvm
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    // A stable folder (not under target/, which `cargo clean` removes): the
    // linker keeps it as its library run path.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let prefix = cargo_home.join("dutnet-llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for link in ["libLLVM.so", libllvm.as_str()] {
        let path = prefix_lib.join(link);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(lib_dir.join(&libllvm), &path)
            .with_context(|| format!("symlink {}", path.display()))?;
    }
    run::checked(
        run::cargo()
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ]),
    )
    .context("building bpf-linker against the nightly toolchain's LLVM failed")
}
