//! A child process of the demo: its own process group, output to a log file, stopped by signals,
//! always reaped.
//!
//! Own process group: Ctrl-C in a terminal signals the whole foreground group; with the children
//! outside it, only the demo gets SIGINT and stops them in order (headway first, then the pods),
//! instead of everyone dying at once in no order. Parent-death signal (Linux): if the demo itself
//! is killed with SIGKILL, the kernel sends SIGTERM to every child, so none is left behind.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use libc::{SIGINT, SIGKILL, SIGTERM};

pub struct Process {
    /// For messages: `headway`, `service1 pod 127.0.0.11:8080`.
    pub name: String,
    pub log: PathBuf,
    child: Child,
    /// Set once reaped: the pid is not ours any more and must not be signalled.
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `program` with `args` and extra `env`, stdin closed, stdout and stderr into `log`
    /// (truncated).
    pub fn spawn(
        name: String,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log: PathBuf,
    ) -> io::Result<Process> {
        let out = File::create(&log)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", log.display())))?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", program.display())))?;
        Ok(Process {
            name,
            log,
            child,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once it has exited (and is reaped); checks without blocking.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends `signal` unless it has already been reaped.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.exited().is_some() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) has no memory effects; `pid` is our child and not yet reaped, so it
        // cannot be another process's pid.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Sends `signal`, waits up to `grace` for the exit, then SIGKILL and waits for it.
    pub async fn stop(&mut self, signal: libc::c_int, grace: Duration) -> ExitStatus {
        self.signal(signal);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() >= deadline {
                return self.kill();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and reap (blocks: the kernel ends a killed process at once).
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => {
                self.status = Some(status);
                status
            }
            // Only if it was reaped elsewhere, which nothing here does.
            Err(_) => std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL),
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

/// A process must never outlive its handle: a panic or an early return still kills and reaps it.
impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// How a process ended, for messages: `exit 0`, `SIGTERM`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(libc::SIGTERM)) => "SIGTERM".to_owned(),
        (None, Some(libc::SIGINT)) => "SIGINT".to_owned(),
        (None, Some(libc::SIGKILL)) => "SIGKILL".to_owned(),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown".to_owned(),
    }
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    // Taken before the fork: in the child, getppid() must still be this process.
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls, allocating nothing (last_os_error/from_raw_os_error do not).
    // PR_SET_PDEATHSIG fires when the *thread* that forked exits: the demo forks from its main
    // thread only (a current-thread runtime), which lives as long as the process.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come, so give up.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wait_for_log(process: &Process, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while process.log_tail(1) != line {
            assert!(
                Instant::now() < deadline,
                "{} never logged {line:?}",
                process.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn stop_signals_waits_and_reaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleeper = Process::spawn(
            "sleeper".into(),
            Path::new("sh"),
            &["-c", "echo started; exec sleep 30"],
            &[],
            dir.path().join("sleeper.log"),
        )
        .unwrap();
        let pid = sleeper.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        wait_for_log(&sleeper, "started").await;
        let status = sleeper.stop(SIGTERM, Duration::from_secs(5)).await;
        assert_eq!(describe(status), "SIGTERM");
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
        assert_eq!(sleeper.log_tail(5), "started");
        sleeper.signal(SIGKILL); // a no-op once reaped
    }

    #[tokio::test]
    async fn a_process_ignoring_its_signal_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let mut stubborn = Process::spawn(
            "stubborn".into(),
            Path::new("sh"),
            &[
                "-c",
                "trap '' TERM; echo ready; while true; do sleep 0.05; done",
            ],
            &[],
            dir.path().join("stubborn.log"),
        )
        .unwrap();
        wait_for_log(&stubborn, "ready").await; // its trap is set
        let status = stubborn.stop(SIGTERM, Duration::from_millis(200)).await;
        assert_eq!(describe(status), "SIGKILL");
    }

    #[test]
    fn dropping_a_process_kills_and_reaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let sleeper = Process::spawn(
            "sleeper".into(),
            Path::new("sleep"),
            &["30"],
            &[],
            dir.path().join("sleeper.log"),
        )
        .unwrap();
        let pid = sleeper.pid();
        drop(sleeper);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
