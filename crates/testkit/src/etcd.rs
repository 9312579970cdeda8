//! A real single-member etcd for etcd discovery, started on loopback on free ports with its data
//! in a temp dir that outlives `stop`/`start`, so a restart keeps the keys.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) etcd; killed and reaped when dropped.
pub struct Etcd {
    /// Its client URL, `http://127.0.0.1:PORT`.
    pub url: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

impl Etcd {
    /// Starts etcd and waits until it reports itself healthy.
    pub fn start() -> Etcd {
        for _ in 0..5 {
            let client_port = free_port();
            let mut etcd = Etcd {
                url: format!("http://127.0.0.1:{client_port}"),
                client_port,
                peer_port: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("temp dir"),
            };
            if etcd.try_start() {
                return etcd;
            }
        }
        panic!("etcd did not start; see its log in the test output");
    }

    /// Kills etcd (as a crash would) and reaps it. Its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.try_start(), "etcd did not restart on {}", self.url);
    }

    fn try_start(&mut self) -> bool {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(binary())
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.url))
            .arg(format!("--advertise-client-urls={}", self.url))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=error")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        // Readiness: `/health` says so (the port opens before the member can serve).
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.healthy() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            // Polling a readiness condition; each try is cheap.
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut body = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut body).is_ok()
            && body.contains("\"health\":\"true\"")
    }
}

fn binary() -> &'static str {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("etcd is not installed: run scripts/test.sh, which installs it")
}
