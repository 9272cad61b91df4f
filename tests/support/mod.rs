//! End-to-end harness: starts a real Envoy (from the virtualenv the Makefile makes) with the
//! built `.wasm` on free loopback ports, and talks raw HTTP/1.1 to it so tests control every byte.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod http;
pub mod idp;
pub mod kong;
pub mod recorder;
pub mod redis;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn envoy_bin() -> PathBuf {
    let bin = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    assert!(
        bin.exists(),
        "Envoy not found at {} (run `make test`, which installs it)",
        bin.display()
    );
    bin
}

/// The filter the tests load: `make build`'s, or `API_WARDEN_WASM` (`make dist` runs the
/// authentication suite on its optimised build that way).
pub fn wasm_path() -> PathBuf {
    let wasm = std::env::var_os("API_WARDEN_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/release/api_warden.wasm"));
    assert!(
        wasm.exists(),
        "{} missing (run `make build`)",
        wasm.display()
    );
    wasm
}

/// The demo plugin configuration embedded in `envoy/envoy.yaml`.
pub fn demo_config() -> serde_json::Value {
    let yaml = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    let (start, end, _) = config_block(&yaml);
    let json: String = yaml
        .lines()
        .skip(start)
        .take(end - start)
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&json).unwrap()
}

/// Line range of the plugin configuration's JSON block, and its indentation.
fn config_block(yaml: &str) -> (usize, usize, usize) {
    let lines: Vec<&str> = yaml.lines().collect();
    let marker = lines
        .iter()
        .position(|l| l.trim() == "\"@type\": type.googleapis.com/google.protobuf.StringValue")
        .expect("plugin configuration in envoy.yaml");
    assert_eq!(lines[marker + 1].trim(), "value: |");
    let start = marker + 2;
    let indent = lines[start].len() - lines[start].trim_start().len();
    let end = (start..lines.len())
        .find(|&i| {
            let l = lines[i];
            !l.trim().is_empty() && l.len() - l.trim_start().len() < indent
        })
        .unwrap_or(lines.len());
    (start, end, indent)
}

fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports, never handed out twice in this test process: a port
/// taken and released can come back from the kernel at once, and tests start servers in
/// parallel.
pub fn free_ports<const N: usize>() -> [u16; N] {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < N {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
        held.push(listener);
    }
    std::array::from_fn(|i| ports[i])
}

pub struct Envoy {
    pub port: u16,
    pub admin: u16,
    pid: i32,
    pub log: PathBuf,
    _dir: TempDir,
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "api-warden-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (free_port() as u128)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Envoy {
    /// Starts Envoy with `envoy/envoy.yaml`, its ports moved to free ones and the plugin
    /// configuration replaced by `config`.
    pub fn start(config: &serde_json::Value, concurrency: u32) -> Envoy {
        Self::start_with(config, concurrency, &[])
    }

    /// Starts Envoy with extra STATIC clusters on loopback (`name`, port), e.g. webdis.
    pub fn start_with(
        config: &serde_json::Value,
        concurrency: u32,
        clusters: &[(&str, u16)],
    ) -> Envoy {
        Self::try_start_with(config, concurrency, clusters)
            .unwrap_or_else(|log| panic!("Envoy did not become ready:\n{log}"))
    }

    /// Like `start`, but returns Envoy's log when it does not come up (for bad-config tests).
    pub fn try_start(config: &serde_json::Value, concurrency: u32) -> Result<Envoy, String> {
        Self::try_start_with(config, concurrency, &[])
    }

    pub fn try_start_with(
        config: &serde_json::Value,
        concurrency: u32,
        clusters: &[(&str, u16)],
    ) -> Result<Envoy, String> {
        Self::try_start_edited(config, concurrency, clusters, &|yaml| yaml)
    }

    /// Like `try_start_with`, with `edit` applied to the final Envoy configuration (a filter
    /// removed, the upstream moved), to test what a misconfigured proxy does.
    pub fn try_start_edited(
        config: &serde_json::Value,
        concurrency: u32,
        clusters: &[(&str, u16)],
        edit: &dyn Fn(String) -> String,
    ) -> Result<Envoy, String> {
        let dir = TempDir::new("envoy");
        let [port, admin, echo] = free_ports::<3>();
        let yaml = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
        let (start, end, indent) = config_block(&yaml);
        let pad = " ".repeat(indent);
        let body = serde_json::to_string_pretty(config).unwrap();
        let mut lines: Vec<String> = yaml.lines().map(str::to_string).collect();
        lines.splice(start..end, body.lines().map(|l| format!("{pad}{l}")));
        let yaml = lines
            .join("\n")
            .replace("port_value: 10000", &format!("port_value: {port}"))
            .replace("port_value: 9901", &format!("port_value: {admin}"))
            .replace("port_value: 10001", &format!("port_value: {echo}"))
            .replace(
                "filename: target/wasm32-wasip1/release/api_warden.wasm",
                &format!("filename: {}", wasm_path().display()),
            );
        let mut yaml = yaml;
        for (name, cluster_port) in clusters {
            let cluster = format!(
                "  clusters:\n  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {cluster_port} }}\n"
            );
            yaml = yaml.replacen("  clusters:\n", &cluster, 1);
        }
        let config_path = dir.0.join("envoy.yaml");
        std::fs::write(&config_path, edit(yaml)).unwrap();
        let log = dir.0.join("envoy.log");
        let mut args: Vec<String> = vec!["-c".into(), config_path.display().to_string()];
        args.extend(["--concurrency".into(), concurrency.to_string()]);
        // Logs reach the file within 200 ms, so tests can read what the filter logged.
        args.extend(["--file-flush-interval-msec", "200"].map(String::from));
        args.extend(["--disable-hot-restart", "-l", "info", "--log-path"].map(String::from));
        args.push(log.display().to_string());
        let pid = spawn_kept(&envoy_bin(), &args, &log);
        let envoy = Envoy {
            port,
            admin,
            pid,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(resp) = http::send(
                admin,
                b"GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            ) {
                if resp.status == 200 {
                    return Ok(envoy);
                }
            }
            if !alive(envoy.pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(envoy.log_text())
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn is_alive(&self) -> bool {
        alive(self.pid)
    }

    /// The rendered configuration's echo port: where the demo upstream listens.
    pub fn port_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A counter from the admin endpoint (0 when it was never incremented).
    /// Envoy's resident memory, from /proc.
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn counter(&self, name: &str) -> u64 {
        let req =
            format!("GET /stats?filter=^{name}$ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let resp = http::send(self.admin, req.as_bytes()).unwrap();
        resp.text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}: "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn admin_get(&self, path: &str) -> http::Response {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        http::send(self.admin, req.as_bytes()).unwrap()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

fn alive(pid: i32) -> bool {
    // kill(pid, 0) succeeds for a zombie too, so also look at the process state.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

/// Spawns a process from a thread that lives as long as the test process, with a parent-death
/// signal, so nothing outlives the tests even when a test panics or the run is interrupted.
pub fn spawn_kept(program: &Path, args: &[String], log: &Path) -> i32 {
    spawn_kept_with(program, args, log, libc::SIGKILL)
}

/// As [`spawn_kept`], with the signal the process gets when the test process ends: nginx needs
/// SIGTERM, since its master takes its workers down only when it can run (a SIGKILLed master
/// leaves them serving).
pub fn spawn_kept_with(program: &Path, args: &[String], log: &Path, on_exit: i32) -> i32 {
    let (tx, rx) = mpsc::channel();
    let (program, args, log) = (program.to_path_buf(), args.to_vec(), log.to_path_buf());
    std::thread::spawn(move || {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, on_exit);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        tx.send(child.id() as i32).unwrap();
        let _ = child.wait();
        // Stay alive: the parent-death signal is tied to this thread.
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap()
}

pub fn kill(pid: i32) {
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn free_port_for_tests() -> u16 {
    free_port()
}

pub fn alive_pid(pid: i32) -> bool {
    alive(pid)
}

/// An Envoy whose API listener comes from a watched file (LDS): writing the file again with
/// another plugin configuration reconfigures the filter in the running proxy.
pub struct Reloadable {
    pub envoy: Envoy,
    dir: TempDir,
    listener: serde_yaml::Value,
    version: std::cell::Cell<u32>,
}

impl Reloadable {
    pub fn start(config: &serde_json::Value, concurrency: u32) -> Reloadable {
        let dir = TempDir::new("lds");
        let lds_dir = dir.0.clone();
        let listener = std::cell::RefCell::new(serde_yaml::Value::Null);
        let envoy = Envoy::try_start_edited(config, concurrency, &[], &|yaml| {
            let mut doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
            let listeners = doc["static_resources"]["listeners"].as_sequence_mut().unwrap();
            let api = listeners.remove(0);
            let mut typed = api.clone();
            typed.as_mapping_mut().unwrap().insert(
                "@type".into(),
                "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
            );
            write_lds(&lds_dir, &typed, 1);
            *listener.borrow_mut() = typed;
            let dynamic: serde_yaml::Value = serde_yaml::from_str(&format!(
                "lds_config:\n  resource_api_version: V3\n  path_config_source:\n    path: {}\n    watched_directory: {{ path: {} }}\n",
                lds_dir.join("lds.yaml").display(),
                lds_dir.display()
            ))
            .unwrap();
            doc["dynamic_resources"] = dynamic;
            doc["node"] = serde_yaml::from_str("{ id: api-warden-test, cluster: api-warden-test }").unwrap();
            serde_yaml::to_string(&doc).unwrap()
        })
        .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
        let reloadable = Reloadable {
            envoy,
            dir,
            listener: listener.into_inner(),
            version: std::cell::Cell::new(1),
        };
        // The listener arrives through LDS after readiness: wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", reloadable.envoy.port)).is_ok() {
                return reloadable;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the LDS listener never came up:\n{}",
            reloadable.envoy.log_text()
        );
    }

    /// Replaces the filter's configuration in the running Envoy.
    pub fn reconfigure(&self, config: &serde_json::Value) {
        let mut listener = self.listener.clone();
        let filters =
            &mut listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
        let wasm = filters
            .as_sequence_mut()
            .unwrap()
            .iter_mut()
            .find(|f| f["name"] == "envoy.filters.http.wasm")
            .unwrap();
        wasm["typed_config"]["config"]["configuration"]["value"] =
            serde_yaml::Value::String(config.to_string());
        self.version.set(self.version.get() + 1);
        write_lds(&self.dir.0, &listener, self.version.get());
    }
}

/// Writes the LDS file atomically (Envoy watches the directory for a move).
fn write_lds(dir: &Path, listener: &serde_yaml::Value, version: u32) {
    let doc = serde_yaml::to_string(&serde_json::json!({
        "version_info": version.to_string(),
        "resources": [serde_json::to_value(listener).unwrap()],
    }))
    .unwrap();
    let tmp = dir.join("lds.yaml.tmp");
    std::fs::write(&tmp, doc).unwrap();
    std::fs::rename(&tmp, dir.join("lds.yaml")).unwrap();
}
