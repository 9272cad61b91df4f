//! Kong's proxy-wasm host (nginx with ngx_wasm_module) running the built filter, configured
//! from `examples/nginx/nginx.conf` with its ports, module path and plugin configuration moved.

use super::{free_port_for_tests, http, kill, repo_root, spawn_kept_with, wasm_path, TempDir};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The nginx to run: `KONG_NGINX`, else the ready build in `../shared/kong-host/`.
pub fn nginx_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KONG_NGINX") {
        return Some(PathBuf::from(path));
    }
    let shared = repo_root().join("../shared/kong-host/sbin/nginx");
    shared.exists().then_some(shared)
}

pub struct Nginx {
    pub port: u16,
    pid: i32,
    dir: TempDir,
}

impl Nginx {
    pub fn start(bin: &std::path::Path, config: &serde_json::Value, upstream: u16) -> Nginx {
        Self::try_start(bin, config, upstream)
            .unwrap_or_else(|log| panic!("nginx did not come up:\n{log}"))
    }

    pub fn try_start(
        bin: &std::path::Path,
        config: &serde_json::Value,
        upstream: u16,
    ) -> Result<Nginx, String> {
        let dir = TempDir::new("nginx");
        std::fs::create_dir_all(dir.0.join("logs")).unwrap();
        let port = free_port_for_tests();
        let example =
            std::fs::read_to_string(repo_root().join("examples/nginx/nginx.conf")).unwrap();
        let (head, rest) = example.split_once("proxy_wasm api_warden '").unwrap();
        let (_, tail) = rest.split_once("';").unwrap();
        let json = config
            .to_string()
            .replace('\\', "\\\\")
            .replace('\'', "\\'");
        let conf = format!("{head}proxy_wasm api_warden '{json}';{tail}")
            .replace(
                "listen 127.0.0.1:20080",
                &format!("listen 127.0.0.1:{port}"),
            )
            .replace("127.0.0.1:20081", &format!("127.0.0.1:{upstream}"))
            .replace(
                "module api_warden target/wasm32-wasip1/release/api_warden.wasm",
                &format!("module api_warden {}", wasm_path().display()),
            );
        let conf_path = dir.0.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let args = vec![
            "-p".to_string(),
            dir.0.display().to_string(),
            "-c".to_string(),
            conf_path.display().to_string(),
        ];
        let pid = spawn_kept_with(bin, &args, &dir.0.join("logs/stdout.log"), libc::SIGTERM);
        let nginx = Nginx { port, pid, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !super::alive_pid(pid) {
                break;
            }
            if http::send(
                port,
                b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            .is_ok()
            {
                return Ok(nginx);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(nginx.log())
    }

    pub fn log(&self) -> String {
        let read = |p: &str| std::fs::read_to_string(self.dir.0.join(p)).unwrap_or_default();
        format!("{}{}", read("logs/error.log"), read("logs/stdout.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A fast shutdown lets the master take its workers down with it; SIGKILL would leave
        // them serving.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while super::alive_pid(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(self.pid);
    }
}
