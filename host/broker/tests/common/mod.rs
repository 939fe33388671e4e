//! Runs the `tern` binary as a separate process on loopback.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// A free UDP port on 127.0.0.1 (bound and released; the node binds it right after).
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

pub struct NodeProcess {
    pub child: Child,
    pub data: PathBuf,
    pub addr: String,
}

impl NodeProcess {
    pub fn spawn(data: &Path, addr: &str) -> NodeProcess {
        NodeProcess::spawn_with(data, addr, &[])
    }

    /// As [`NodeProcess::spawn`], with more `serve` arguments (e.g. `--config FILE`).
    pub fn spawn_with(data: &Path, addr: &str, args: &[&str]) -> NodeProcess {
        let child = Command::new(TERN)
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", addr])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tern serve");
        let p = NodeProcess {
            child,
            data: data.to_owned(),
            addr: addr.to_owned(),
        };
        p.wait_ready();
        p
    }

    /// Wait (bounded) until the node answers `stream ls`.
    fn wait_ready(&self) {
        for _ in 0..200 {
            if self.data.join("ca.pem").exists() && self.cli(&["stream", "ls"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node at {} did not become ready", self.addr);
    }

    pub fn ca(&self) -> PathBuf {
        self.data.join("ca.pem")
    }

    /// Run a client command against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut c = Command::new(TERN)
            .args(args)
            .env("TERN_SERVER", &self.addr)
            .env("TERN_CA", self.ca())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tern");
        if let Some(input) = stdin {
            let mut s = c.stdin.take().expect("stdin");
            s.write_all(input.as_bytes()).expect("write stdin");
        }
        c.wait_with_output().expect("tern output")
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        // The node's shutdown timeout is 10 s; allow it and some margin.
        for _ in 0..400 {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.sigkill();
        panic!("node did not exit within 20 s of SIGTERM");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.sigkill();
        }
    }
}

pub fn stdout_lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(
        o.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}
