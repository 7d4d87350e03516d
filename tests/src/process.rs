//! Running the real `coopgate` command line as a process: the program Cargo
//! built for this package, started with a clean environment, its stderr read
//! line by line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Where Cargo put the `coopgate-under-test` binary of this package: beside
/// the `deps/` folder holding the running test binary. (Cargo tells only
/// integration tests that path, as `CARGO_BIN_EXE_coopgate-under-test`, not
/// the library they use; a test that has it may compare.)
pub fn program() -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test.parent().and_then(Path::parent).expect("a test binary sits in target/<profile>/deps");
    let program = profile.join(format!("coopgate-under-test{}", std::env::consts::EXE_SUFFIX));
    assert!(program.is_file(), "no coopgate-under-test at {} (built with `cargo test`?)", program.display());
    program
}

/// The coopgate command line, built by Cargo for this package.
pub fn coopgate() -> Command {
    let mut cmd = Command::new(program());
    // Tests must not inherit overrides from the developer's shell.
    for (k, _) in std::env::vars() {
        if k.starts_with("COOPGATE__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A coopgate process, killed when dropped; its stderr lines arrive on a channel.
pub struct Process {
    /// The child.
    pub child: Child,
    /// Lines the process wrote to stderr.
    pub stderr: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `coopgate ARGS` with stdout discarded and stderr captured.
    pub fn start(args: &[&str]) -> Process {
        Self::start_with(coopgate().args(args))
    }

    /// [`Process::start`] in folder `dir`, where relative paths of its config
    /// (the default store, `coopgate-data/…`) land instead of the checkout.
    pub fn start_in(dir: &Path, args: &[&str]) -> Process {
        Self::start_with(coopgate().current_dir(dir).args(args))
    }

    fn start_with(cmd: &mut Command) -> Process {
        let mut child =
            cmd.env("NO_COLOR", "1").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("coopgate starts");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, stderr: rx }
    }

    /// Waits for a stderr line containing `needle` and returns it; panics with
    /// everything seen if the process ends first.
    pub fn wait_for_line(&self, needle: &str) -> String {
        self.wait_for_line_after(needle).0
    }

    /// [`Process::wait_for_line`], with the lines printed before it.
    pub fn wait_for_line_after(&self, needle: &str) -> (String, Vec<String>) {
        let mut seen = Vec::new();
        for line in self.stderr.iter() {
            if line.contains(needle) {
                return (line, seen);
            }
            seen.push(line);
        }
        panic!("coopgate ended before printing {needle:?}; it printed:\n{}", seen.join("\n"));
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY is not needed: libc::kill through the safe `kill` command instead.
        let status =
            Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().expect("kill runs");
        assert!(status.success());
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `coopgate serve` on `config_text` (written into `dir`) and waits until it listens.
/// The config must listen on 127.0.0.1:0; the actual address is read from the log.
pub fn serve(dir: &Path, config_text: &str) -> (Process, std::net::SocketAddr) {
    let path = dir.join("coopgate.toml");
    std::fs::write(&path, config_text).expect("write config");
    let process = Process::start_in(dir, &["serve", "--config", path.to_str().expect("utf-8 path")]);
    let addr = listening_addr(&process);
    (process, addr)
}

/// The address a starting `coopgate serve` says it listens on, once it does.
fn listening_addr(process: &Process) -> std::net::SocketAddr {
    let line = process.wait_for_line("coopgate listening");
    line.split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr in {line:?}"))
}

/// [`serve`] under a descriptor limit of `soft` (raised by coopgate up to
/// `hard`): running out of descriptors without opening tens of thousands.
pub fn serve_with_descriptors(dir: &Path, config_text: &str, soft: u64, hard: u64) -> (Process, std::net::SocketAddr) {
    let path = dir.join("coopgate.toml");
    std::fs::write(&path, config_text).expect("write config");
    // The shell's ulimit sets the limits, then becomes coopgate (same pid).
    let mut cmd = Command::new("sh");
    // Soft first: a hard limit below the soft one is refused.
    cmd.args(["-c", "ulimit -S -n \"$1\" && ulimit -H -n \"$2\" && shift 2 && exec \"$@\"", "sh"])
        .args([soft.to_string(), hard.to_string()])
        .arg(program())
        .args(["serve", "--config", path.to_str().expect("utf-8 path")])
        .current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("COOPGATE__") {
            cmd.env_remove(k);
        }
    }
    let process = Process::start_with(&mut cmd);
    let addr = listening_addr(&process);
    (process, addr)
}
