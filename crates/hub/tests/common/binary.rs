//! The real `lockstep-hub` binary as a child process, for the tests that
//! need the process itself: its flags, its ready line and log, `kill -9`,
//! a restart on the same data folder and port. Every wait is bounded and
//! waits on the event (the ready line, a log line, the exit), never a sleep.
//! Output is read all along: a full pipe would block the hub's logging.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::WAIT;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_lockstep-hub");

/// How long a start (to the ready line) or a stop may take: a debug build
/// opening its database and secret store is slower than one request.
pub const START_WAIT: std::time::Duration = WAIT.saturating_mul(4);

/// What the binary prints first on stdout once it serves.
const READY_PREFIX: &str = "Lockstep hub ready at ";

/// A free loopback port, for a hub that must come back on the same one
/// after a restart, as the installed hub does (4747), so that apps
/// reconnect to their endpoints.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client without connection pooling: after a restart on the same
/// port a pooled keep-alive connection would point at the dead process.
pub fn unpooled_client() -> reqwest::Client {
    lockstep_hub::tls::http_client()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `lockstep-hub` with its arguments, before it runs.
pub struct HubCommand {
    command: Command,
    data_dir: Option<PathBuf>,
    log: Log,
}

/// Where the hub's stderr (its log) goes.
enum Log {
    /// Read line by line: [`HubProcess::stderr_line`], `log_to_end`.
    Read,
    File(PathBuf),
    Discarded,
}

impl HubCommand {
    /// The binary with `--data-dir data_dir` (put last, so that it also
    /// follows a subcommand's arguments), `RUST_LOG` unset, stdin closed.
    pub fn new(data_dir: &Path) -> HubCommand {
        let mut command = HubCommand::without_data_dir();
        command.data_dir = Some(data_dir.to_path_buf());
        command
    }

    /// The binary with only the arguments given (`--help`, a data folder
    /// in the arguments, or none at all).
    pub fn without_data_dir() -> HubCommand {
        let mut command = Command::new(BIN);
        command.env_remove("RUST_LOG").stdin(Stdio::null());
        HubCommand {
            command,
            data_dir: None,
            log: Log::Read,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> HubCommand {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> HubCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> HubCommand {
        self.command.env(key, value);
        self
    }

    /// Its stderr (the log) goes to the file `path` instead of
    /// [`HubProcess::stderr_line`]: for tests that measure or keep the log.
    pub fn stderr_to(mut self, path: &Path) -> HubCommand {
        self.log = Log::File(path.to_path_buf());
        self
    }

    /// Its stderr (the log) goes nowhere: for tests that never read it.
    pub fn discard_log(mut self) -> HubCommand {
        self.log = Log::Discarded;
        self
    }

    fn spawn(mut self) -> Child {
        if let Some(dir) = &self.data_dir {
            self.command.arg("--data-dir").arg(dir);
        }
        let stderr = match &self.log {
            Log::Read => Stdio::piped(),
            Log::File(path) => {
                Stdio::from(std::fs::File::create(path).expect("create the log file"))
            }
            Log::Discarded => Stdio::null(),
        };
        self.command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lockstep-hub")
    }

    /// Starts the hub and waits for its ready line; panics (with its log)
    /// if it exits first.
    pub async fn start(self) -> HubProcess {
        match self.start_or_exit().await {
            Ok(hub) => {
                assert!(
                    hub.hub_url.starts_with("http") && hub.hub_url.ends_with("/fhircast/STU3"),
                    "unexpected ready line {:?}",
                    hub.ready
                );
                hub
            }
            Err((status, log)) => {
                panic!("lockstep-hub exited with {status} before it was ready:\n{log}")
            }
        }
    }

    /// Starts the hub: the running hub once it prints its ready line, or
    /// its exit status and log if it exits first.
    pub async fn start_or_exit(self) -> Result<HubProcess, (ExitStatus, String)> {
        let stderr_file = match &self.log {
            Log::File(path) => Some(path.clone()),
            _ => None,
        };
        let mut child = self.spawn();
        let mut stdout = lines_of(child.stdout.take().unwrap());
        let stderr = match child.stderr.take() {
            Some(pipe) => lines_of(pipe),
            None => mpsc::unbounded_channel().1,
        };
        let first = tokio::time::timeout(START_WAIT, stdout.recv())
            .await
            .expect("lockstep-hub is ready or exits in time");
        let mut hub = HubProcess {
            child,
            ready: String::new(),
            hub_url: String::new(),
            stdout,
            stderr,
            stderr_file,
        };
        match first {
            Some(line) => {
                hub.hub_url = line.strip_prefix(READY_PREFIX).unwrap_or("").to_owned();
                hub.ready = line;
                Ok(hub)
            }
            None => {
                let status = hub.exited().await;
                Err((status, hub.log_to_end().await))
            }
        }
    }

    /// Runs the binary to its exit (bounded); its output.
    pub async fn output(self) -> Output {
        let child = self.spawn();
        tokio::time::timeout(START_WAIT, child.wait_with_output())
            .await
            .expect("lockstep-hub exits in time")
            .expect("its output")
    }
}

/// Reads `pipe` line by line, as it comes, into a channel that ends when
/// the pipe closes (the process exited).
fn lines_of(pipe: impl AsyncRead + Unpin + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut lines = BufReader::new(pipe).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    rx
}

/// A running `lockstep-hub`; killed if the test ends (or fails) first.
pub struct HubProcess {
    pub child: Child,
    /// Its first stdout line: `Lockstep hub ready at {hub.url}`.
    pub ready: String,
    /// `hub.url` from the ready line (`http://ADDR/fhircast/STU3`).
    pub hub_url: String,
    /// Stdout after the ready line, line by line.
    stdout: mpsc::UnboundedReceiver<String>,
    /// Stderr (its log), line by line, unless it goes to a file.
    stderr: mpsc::UnboundedReceiver<String>,
    stderr_file: Option<PathBuf>,
}

impl HubProcess {
    /// The hub with `--listen 127.0.0.1:0` (any free port), the data folder
    /// `data_dir` and then `args`, started to its ready line.
    pub async fn start(data_dir: &Path, args: &[&str]) -> HubProcess {
        HubCommand::new(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .start()
            .await
    }

    /// The hub's origin, `http://ADDR`.
    pub fn base_url(&self) -> String {
        self.hub_url.trim_end_matches("/fhircast/STU3").to_owned()
    }

    /// The address it listens on, `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        let base = self.base_url();
        let (_, addr) = base.split_once("://").expect("a URL");
        addr.to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Sends `signal` (`-TERM`, `-9`, …) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Waits (bounded) for the process to exit; its status.
    pub async fn exited(&mut self) -> ExitStatus {
        tokio::time::timeout(START_WAIT, self.child.wait())
            .await
            .expect("lockstep-hub exits in time")
            .expect("wait for lockstep-hub")
    }

    /// SIGTERM, as a service manager or a logout stops it, and its exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.exited().await
    }

    /// SIGTERM, and asserts a clean exit (0).
    pub async fn stop(&mut self) {
        let status = self.terminate().await;
        assert!(status.success(), "the hub stopped with {status}");
    }

    /// SIGKILL: no shutdown path runs. Returns once the process is gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill lockstep-hub");
    }

    /// The next stdout line after the ready line; `None` once stdout closed.
    pub async fn stdout_line(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, self.stdout.recv())
            .await
            .expect("a stdout line or its end in time")
    }

    /// Waits for a stderr (log) line containing `needle`.
    pub async fn stderr_line(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(WAIT, self.stderr.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {needle:?} in time"))
                .unwrap_or_else(|| panic!("the log ended without {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Its log (stderr, or the file it went to) to the end; call once the
    /// process has exited.
    pub async fn log_to_end(&mut self) -> String {
        if let Some(path) = &self.stderr_file {
            return std::fs::read_to_string(path).unwrap_or_default();
        }
        rest_of(&mut self.stderr).await
    }

    /// Its stdout after the ready line, then its log, to the end; call once
    /// the process has exited.
    pub async fn output_to_end(&mut self) -> String {
        let mut text = format!("{}\n", self.ready);
        text.push_str(&rest_of(&mut self.stdout).await);
        text.push_str(&self.log_to_end().await);
        text
    }
}

/// The lines still to come on `lines`, to its end (bounded), one per line.
async fn rest_of(lines: &mut mpsc::UnboundedReceiver<String>) -> String {
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.recv().await {
            text.push_str(&line);
            text.push('\n');
        }
    })
    .await
    .expect("the output ends in time");
    text
}

/// Runs the real `lockstep-hub` binary with `args` to its exit (bounded),
/// RUST_LOG unset; returns its output.
pub async fn run_to_exit(args: &[&str]) -> Output {
    HubCommand::without_data_dir().args(args).output().await
}

/// `lockstep-hub apps add NAME` with the file store in `data_dir`: the
/// printed (client_id, client_secret).
pub fn apps_add(data_dir: &Path, name: &str) -> (String, String) {
    let out = std::process::Command::new(BIN)
        .args(["apps", "add", name, "--secret-store", "file", "--data-dir"])
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run lockstep-hub apps add");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "apps add failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        printed_field(&stdout, "client_id:"),
        printed_field(&stdout, "client_secret:"),
    )
}

/// What the CLI printed after `label` (e.g. `client_id:`) on a line.
pub fn printed_field(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label} in {stdout}"))
}
