//! A real dnsmasq as the DNS server that DNS discovery asks, started on loopback on a free port
//! with its own temp dir. A and AAAA records come from a hosts file, which dnsmasq reads again on
//! SIGHUP (`set_hosts`); SRV records are command-line options, which it reads only at start
//! (`restart` with other records).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq; killed and reaped when dropped.
pub struct Dnsmasq {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    child: Child,
    srv: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on loopback. A clash in the instant between is retried.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp port");
        let port = udp.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Dnsmasq {
    /// Starts dnsmasq answering `hosts` (lines of `/etc/hosts` format) and the SRV records in
    /// `srv`, each as dnsmasq's `--srv-host` value: `_http._tcp.name,target,port,priority,weight`.
    /// Every answer has a TTL of one second.
    pub fn start(hosts: &str, srv: &[&str]) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hosts"), hosts).expect("write hosts");
        let srv: Vec<String> = srv.iter().map(|s| s.to_string()).collect();
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(&dir.path().join("hosts"), port, &srv) {
                return Dnsmasq {
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    child,
                    srv,
                    dir,
                };
            }
        }
        panic!("dnsmasq did not start; see its log in the test output");
    }

    /// Replaces the hosts file and makes dnsmasq read it again (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        let path = self.dir.path().join("hosts");
        std::fs::write(&path, hosts).expect("write hosts");
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP dnsmasq failed");
    }

    /// Restarts dnsmasq on the same port with other SRV records (dnsmasq reads them only at start).
    pub fn restart_with_srv(&mut self, srv: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.srv = srv.iter().map(|s| s.to_string()).collect();
        let hosts = self.dir.path().join("hosts");
        self.child = spawn(&hosts, self.addr.port(), &self.srv)
            .unwrap_or_else(|| panic!("dnsmasq did not restart on {}", self.addr));
    }
}

fn spawn(hosts: &Path, port: u16, srv: &[String]) -> Option<Child> {
    let mut cmd = Command::new(binary());
    cmd.arg("--no-daemon")
        .arg(format!("--port={port}"))
        .arg("--listen-address=127.0.0.1")
        .arg("--bind-interfaces")
        .arg("--no-resolv")
        .arg("--no-hosts")
        .arg("--conf-file=/dev/null")
        .arg("--pid-file=")
        .arg(format!("--addn-hosts={}", hosts.display()))
        .arg("--local-ttl=1")
        // Its log goes beside the hosts file, out of the test output.
        .arg(format!(
            "--log-facility={}",
            hosts.with_file_name("dnsmasq.log").display()
        ));
    // dnsmasq started as root drops to an unprivileged user that could not read the temp dir
    // again on SIGHUP; stay the user that created it.
    if let Some(user) = current_user() {
        cmd.arg(format!("--user={user}"));
    }
    for s in srv {
        cmd.arg(format!("--srv-host={s}"));
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dnsmasq");
    // Readiness: the TCP side of the DNS port accepts (it opens with the UDP side).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        // Polling a readiness condition; each try is cheap.
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn current_user() -> Option<String> {
    let out = Command::new("id").arg("-un").output().ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}

fn binary() -> &'static str {
    [
        "/usr/sbin/dnsmasq",
        "/usr/bin/dnsmasq",
        "/usr/local/sbin/dnsmasq",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("dnsmasq is not installed: run scripts/test.sh, which installs it")
}
