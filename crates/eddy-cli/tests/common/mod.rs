//! Helpers shared by the test binaries that run the real `eddy` processes (`daemons.rs`,
//! `api_schemathesis.rs`): starting a process and waiting until it listens, stopping it, a test
//! directory that can be kept for inspection. Each binary uses a part of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `eddy` binary of this build.
pub fn eddy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
}

/// A running daemon process; killed (SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    pub url: String,
    /// Every line the process printed on stdout so far.
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `eddy <what> --config <config>` and waits for its "listening on" line.
    pub fn start(what: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> Proc {
        Proc::start_with_args(what, config, log, env, &[])
    }

    /// [`Proc::start`] with more command-line arguments.
    pub fn start_with_args(what: &str, config: &Path, log: &Path, env: &[(&str, &str)], args: &[&str]) -> Proc {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut child = eddy()
            .arg(what)
            .arg("--config")
            .arg(config)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, url)) = line.split_once("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(u) => u,
            Err(_) => {
                // How it ended (an exit code says it stopped on an error, printed on stdout).
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let out = lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
                panic!(
                    "eddy {what} did not start (exit: {status:?}); its stdout:\n{out}\nits log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        Proc {
            child,
            url,
            stdout: lines,
        }
    }

    /// A process started otherwise (its stdout not read, no URL).
    pub fn spawned(child: Child) -> Proc {
        Proc {
            child,
            url: String::new(),
            stdout: Arc::default(),
        }
    }

    /// The first line printed on stdout that contains `what`.
    pub fn printed(&self, what: &str) -> Option<String> {
        let lines = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().find(|l| l.contains(what)).cloned()
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to die by itself (a crash point aborting it).
    pub fn wait_crash(self, what: &str) -> String {
        self.wait_crash_within(what, Duration::from_secs(90))
    }

    /// Waits up to `limit` for the process to exit by itself, not successfully.
    pub fn wait_crash_within(mut self, what: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(!status.success(), "{what}: exited cleanly instead of crashing");
                return status.to_string();
            }
            assert!(Instant::now() < deadline, "{what}: never reached its crash point");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "clean exit on SIGTERM: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The test's directory, deleted when the guard drops — or kept, and printed, with
/// `EDDY_TEST_KEEP=1` (data dirs and logs for inspection).
pub fn test_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().to_path_buf();
    if std::env::var_os("EDDY_TEST_KEEP").is_some() {
        eprintln!("data dirs and logs in {}", path.display());
        std::mem::forget(tmp);
        return (None, path);
    }
    (Some(tmp), path)
}
