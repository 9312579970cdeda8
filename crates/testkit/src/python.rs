//! Test harness (outside the request flow): a Python peer process (a gRPC server written with
//! grpcio, say) that binds port 0, prints the port on its first line and runs until its stdin
//! closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running Python peer; stopped (stdin closed, then killed and reaped) when dropped.
pub struct PythonPeer {
    child: Child,
    /// The port the script printed.
    pub port: u16,
}

impl PythonPeer {
    /// Runs `script` with `python3 -c` and waits for the port it prints first.
    pub fn start(script: &str) -> PythonPeer {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs grpcio)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the peer prints its port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("no port from the Python peer (is grpcio installed?): {line:?}")
        });
        PythonPeer { child, port }
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
