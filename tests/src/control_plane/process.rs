//! A child process of the control plane: its output in a log file, stopped on drop (SIGTERM,
//! then SIGKILL after a bound), with a watchdog shell that kills it if the test process dies
//! without unwinding.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::{Deadline, Error};
use crate::openbao_dev::spawn_watchdog;

/// One running child process.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
    watchdog: Option<Child>,
    stop_timeout: Duration,
}

impl Process {
    /// Starts `command` with stdout and stderr into `<dir>/<name>.log` (appended, so a restarted
    /// process keeps the earlier lines).
    pub fn spawn(
        mut command: Command,
        dir: &Path,
        name: &str,
        stop_timeout: Duration,
    ) -> Result<Self, Error> {
        let log = dir.join(format!("{name}.log"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|error| Error::io(format!("open {}", log.display()), error))?;
        let stderr = file
            .try_clone()
            .map_err(|error| Error::io("clone a log handle", error))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|error| Error::io(format!("spawn {name}"), error))?;
        let watchdog = spawn_watchdog(&format!("kill -KILL {} 2>/dev/null", child.id()));
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            exit: None,
            watchdog: Some(watchdog),
            stop_timeout,
        })
    }

    /// The process's name in logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Fails when the process has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        match self.try_exit() {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log_tail: self.log_tail(30),
            }),
        }
    }

    /// SIGTERM, then SIGKILL when it has not exited within the stop timeout.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Some(status);
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Deadline::after(self.stop_timeout);
        while !deadline.passed() {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
        self.exit
    }

    /// SIGKILL at once (a crash).
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// The whole log.
    pub fn log(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}
