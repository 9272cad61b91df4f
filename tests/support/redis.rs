//! Redis and webdis for the distributed rate-limit tests, on free loopback ports.

use super::{http, kill, spawn_kept, TempDir};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct RedisStack {
    pub redis_port: u16,
    pub webdis_port: u16,
    redis_pid: Option<i32>,
    webdis_pid: Option<i32>,
    dir: TempDir,
    /// webdis runs the shipped ACL (anonymous commands refused).
    acl: bool,
}

fn which(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed (make test installs redis-server and webdis)");
}

impl RedisStack {
    pub fn start() -> Self {
        Self::start_with_acl(None)
    }

    /// With `credentials` (`user:password`), webdis runs the ACL of `examples/webdis/webdis.json`:
    /// every command disabled, EVALSHA and EVAL enabled for those credentials only.
    pub fn start_with_acl(credentials: Option<&str>) -> Self {
        let dir = TempDir::new("redis");
        let [redis_port, webdis_port] = super::free_ports::<2>();
        let mut stack = RedisStack {
            redis_port,
            webdis_port,
            redis_pid: None,
            webdis_pid: None,
            dir,
            acl: credentials.is_some(),
        };
        stack.start_redis();
        let mut config = serde_json::json!({
            "redis_host": "127.0.0.1", "redis_port": stack.redis_port, "redis_auth": null,
            "http_host": "127.0.0.1", "http_port": stack.webdis_port, "threads": 2,
            "daemonize": false, "database": 0, "verbosity": 3,
            "logfile": stack.dir.0.join("webdis.log").display().to_string(),
        });
        if let Some(credentials) = credentials {
            let shipped: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(super::repo_root().join("examples/webdis/webdis.json"))
                    .unwrap(),
            )
            .unwrap();
            let mut acl = shipped["acl"].clone();
            acl[1]["http_basic_auth"] = serde_json::json!(credentials);
            config["acl"] = acl;
        }
        let path = stack.dir.0.join("webdis.json");
        std::fs::write(&path, config.to_string()).unwrap();
        stack.start_webdis();
        stack.wait_ready();
        stack
    }

    /// Starts webdis with the configuration written at creation (again, after `stop_webdis`).
    pub fn start_webdis(&mut self) {
        let path = self.dir.0.join("webdis.json");
        let log = self.dir.0.join("webdis.out");
        self.webdis_pid = Some(spawn_kept(
            &which("webdis"),
            &[path.display().to_string()],
            &log,
        ));
    }

    pub fn stop_webdis(&mut self) {
        if let Some(pid) = self.webdis_pid.take() {
            kill(pid);
        }
    }

    pub fn start_redis(&mut self) {
        let args: Vec<String> = [
            "--port",
            &self.redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "local",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = self.dir.0.join("redis.log");
        self.redis_pid = Some(spawn_kept(&which("redis-server"), &args, &log));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.redis_port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    pub fn stop_redis(&mut self) {
        if let Some(pid) = self.redis_pid.take() {
            kill(pid);
        }
    }

    /// Waits until webdis answers a command through Redis.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let req = b"GET /PING HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n";
            if let Ok(resp) = http::send(self.webdis_port, req) {
                let up = (resp.status == 200 && resp.text().contains("PONG"))
                    || (self.acl && resp.status == 403);
                if up {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("webdis did not become ready");
    }

    /// Runs a command with redis-cli (used to make Redis slow: DEBUG SLEEP).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(which("redis-cli"))
            .args(["-p", &self.redis_port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisStack {
    fn drop(&mut self) {
        for pid in [self.redis_pid.take(), self.webdis_pid.take()]
            .into_iter()
            .flatten()
        {
            kill(pid);
        }
    }
}
