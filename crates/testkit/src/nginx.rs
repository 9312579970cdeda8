//! A real nginx as an upstream, started on loopback with its own config and temp directories.
//! Stopped the way nginx expects, so its worker processes exit with the master.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx; stopped when dropped.
pub struct Nginx {
    /// Its address.
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGTERM is nginx's fast shutdown: the master stops its workers, reaps them, then exits.
    /// (SIGKILL on the master alone left every worker running, orphaned, on its port.) Should the
    /// master not be gone in 10 s, its whole process group — it leads one — is killed.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                _ => return,
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> &'static str {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is not installed: run scripts/test.sh, which installs it")
}

/// Picks a free loopback port (nginx cannot report a port-0 binding back to us). A clash with
/// another process in the instant between is retried by `start`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

impl Nginx {
    /// Starts nginx with `server_body` inside its `server {}` block (after `listen`); `{www}` in
    /// it stands for the directory returned by `www()`.
    pub fn start(server_body: &str) -> Nginx {
        Self::start_listening("", server_body)
    }

    /// As `start`, with `listen_options` after the listen address (`ssl`, `ssl http2`): the
    /// server body then names its `ssl_certificate` files.
    pub fn start_listening(listen_options: &str, server_body: &str) -> Nginx {
        for _ in 0..5 {
            if let Some(n) = Self::try_start(listen_options, server_body) {
                return n;
            }
        }
        panic!("nginx did not start; see its error log in the test output");
    }

    fn try_start(listen_options: &str, server_body: &str) -> Option<Nginx> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let server_body = server_body.replace("{www}", &format!("{d}/www"));
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             keepalive_requests 100000;\n\
             server {{\n    listen 127.0.0.1:{port} {listen_options};\n{server_body}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        std::fs::create_dir_all(dir.path().join("www")).expect("www dir");
        let child = Command::new(nginx_binary())
            // Its own process group, so a master that will not stop is killed with its workers.
            .process_group(0)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        let mut n = Nginx {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        };
        // Readiness: the port accepts connections (or nginx exits, e.g. the port was taken).
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(n.addr).is_ok() {
                return Some(n);
            }
            if let Ok(Some(_)) = n.child.try_wait() {
                return None;
            }
            // Polling a readiness condition, not waiting for a guess: each try is cheap.
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The directory `{www}` names in the server body.
    pub fn www(&self) -> std::path::PathBuf {
        self._dir.path().join("www")
    }
}
