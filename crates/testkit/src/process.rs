//! A child process under test: its stdout and stderr are read line by line into a buffer
//! tests can wait on, and it is killed when the handle is dropped.
//!
//! ```text
//! child ── stdout ──> reader task ──┐
//!       └─ stderr ──> reader task ──┴─> watch::Sender<Captured { lines, closed_streams }>
//!                                          │ each change wakes
//!                          wait_for_line / wait_for_listen_addr (bounded by a timeout,
//!                          and failing early once both streams are closed)
//! ```

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// Lines kept per process; older ones are dropped so a chatty long test cannot exhaust
/// memory. Waits only look at what is kept.
const MAX_LINES: usize = 20_000;

/// Lines quoted in an error message.
const QUOTED_LINES: usize = 40;

/// How long [`Process::wait_exit`] waits, after the exit, for the last lines.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// The prefix of the line binaries print first on stdout to report a bound address
/// (`listening on 127.0.0.1:PORT`).
const LISTENING_PREFIX: &str = "listening on ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }
}

/// One line of output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
}

#[derive(Debug, Default)]
struct Captured {
    lines: VecDeque<Line>,
    /// Streams that reached end of file: at 2 no more lines will come.
    closed_streams: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program}: no line matching {wanted} within {timeout:?}; output:\n{output}")]
    LineTimeout {
        program: String,
        wanted: String,
        timeout: Duration,
        output: String,
    },
    #[error("{program} closed its output without a line matching {wanted}; output:\n{output}")]
    OutputClosed {
        program: String,
        wanted: String,
        output: String,
    },
    #[error("{program}: {line:?} does not carry a socket address")]
    BadAddress { program: String, line: String },
    #[error("{program} has already been waited for")]
    NotRunning { program: String },
    #[error("cannot send {signal} to {program}: {source}")]
    Signal {
        program: String,
        signal: Signal,
        #[source]
        source: nix::Error,
    },
    #[error("waiting for {program} failed: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} still running {timeout:?} after being asked to stop; output:\n{output}")]
    ExitTimeout {
        program: String,
        timeout: Duration,
        output: String,
    },
}

/// A running child process. Killed (SIGKILL) when dropped, so a failing test leaves no
/// process behind.
#[derive(Debug)]
pub struct Process {
    program: String,
    child: Child,
    captured: Arc<watch::Sender<Captured>>,
}

impl Process {
    /// Starts `program` with `args`, stdin closed, stdout and stderr captured.
    pub fn spawn<I, S>(program: impl AsRef<OsStr>, args: I) -> Result<Self, ProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn_command(command)
    }

    /// Starts a prepared command (to set its environment or working folder: the test
    /// process's own environment is never changed). Stdio and kill-on-drop are set here.
    pub fn spawn_command(mut command: Command) -> Result<Self, ProcessError> {
        let program = display_name(command.as_std().get_program());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let captured = Arc::new(watch::Sender::new(Captured::default()));
        let mut open = 0;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(read_lines(
                stdout,
                Stream::Stdout,
                program.clone(),
                captured.clone(),
            ));
            open += 1;
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(read_lines(
                stderr,
                Stream::Stderr,
                program.clone(),
                captured.clone(),
            ));
            open += 1;
        }
        // A stream we could not take counts as already closed.
        captured.send_modify(|c| c.closed_streams += 2 - open);
        Ok(Self {
            program,
            child,
            captured,
        })
    }

    /// The process id, while it has not been waited for.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Every line kept so far, both streams interleaved in arrival order.
    pub fn lines(&self) -> Vec<Line> {
        self.captured.borrow().lines.iter().cloned().collect()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stream_lines(Stream::Stdout)
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stream_lines(Stream::Stderr)
    }

    fn stream_lines(&self, stream: Stream) -> Vec<String> {
        let captured = self.captured.borrow();
        captured
            .lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.clone())
            .collect()
    }

    /// Waits for a line on either stream containing `pattern`, seen before or after this
    /// call, and returns it. Fails at `timeout`, or earlier once the process has closed
    /// both streams (it exited) without printing one.
    pub async fn wait_for_line(
        &self,
        pattern: &str,
        timeout: Duration,
    ) -> Result<String, ProcessError> {
        self.wait_for(&format!("{pattern:?}"), timeout, |line| {
            line.text.contains(pattern).then(|| line.text.clone())
        })
        .await
    }

    /// Waits for `listening on ADDR` on stdout (what portico binaries print first when
    /// they have bound) and returns ADDR.
    pub async fn wait_for_listen_addr(
        &self,
        timeout: Duration,
    ) -> Result<SocketAddr, ProcessError> {
        let line = self
            .wait_for(
                &format!("{LISTENING_PREFIX:?} on stdout"),
                timeout,
                |line| {
                    (line.stream == Stream::Stdout && line.text.starts_with(LISTENING_PREFIX))
                        .then(|| line.text.clone())
                },
            )
            .await?;
        line[LISTENING_PREFIX.len()..]
            .split_whitespace()
            .next()
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| ProcessError::BadAddress {
                program: self.program.clone(),
                line,
            })
    }

    async fn wait_for<T>(
        &self,
        wanted: &str,
        timeout: Duration,
        mut matches: impl FnMut(&Line) -> Option<T>,
    ) -> Result<T, ProcessError> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.captured.subscribe();
        loop {
            {
                let captured = changes.borrow_and_update();
                if let Some(found) = captured.lines.iter().find_map(&mut matches) {
                    return Ok(found);
                }
                if captured.closed_streams >= 2 {
                    return Err(ProcessError::OutputClosed {
                        program: self.program.clone(),
                        wanted: wanted.to_owned(),
                        output: quote(&captured.lines),
                    });
                }
            }
            // The sender lives in `self`, so `changed` only ends by a change or the
            // deadline.
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(ProcessError::LineTimeout {
                    program: self.program.clone(),
                    wanted: wanted.to_owned(),
                    timeout,
                    output: self.output(),
                });
            }
        }
    }

    /// The last lines of output, one per line prefixed with the stream, for messages.
    pub fn output(&self) -> String {
        quote(&self.captured.borrow().lines)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        let pid = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| ProcessError::NotRunning {
                program: self.program.clone(),
            })?;
        kill(Pid::from_raw(pid), signal).map_err(|source| ProcessError::Signal {
            program: self.program.clone(),
            signal,
            source,
        })
    }

    /// SIGINT, as Ctrl-C in a terminal.
    pub fn interrupt(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGINT)
    }

    /// SIGTERM, as Kubernetes stopping a pod.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGTERM)
    }

    /// Waits until the process has closed stdout and stderr and every line is in the
    /// buffer (normally: it exited), for at most `timeout`.
    pub async fn wait_output_closed(&self, timeout: Duration) -> Result<(), ProcessError> {
        let mut changes = self.captured.subscribe();
        let closed = changes.wait_for(|c| c.closed_streams >= 2);
        match tokio::time::timeout(timeout, closed).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ProcessError::LineTimeout {
                program: self.program.clone(),
                wanted: "the end of output".to_owned(),
                timeout,
                output: self.output(),
            }),
        }
    }

    /// Waits for the process to exit, for at most `timeout`; on timeout it keeps running.
    /// After the exit it also gives the output readers [`OUTPUT_DRAIN`] to take the last
    /// lines, so [`Process::lines`] is complete unless a grandchild still holds the pipes.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => {
                if self.wait_output_closed(OUTPUT_DRAIN).await.is_err() {
                    tracing::debug!(program = %self.program, "output still open after exit");
                }
                Ok(status)
            }
            Ok(Err(source)) => Err(ProcessError::Wait {
                program: self.program.clone(),
                source,
            }),
            Err(_) => Err(ProcessError::ExitTimeout {
                program: self.program.clone(),
                timeout,
                output: self.output(),
            }),
        }
    }

    /// Sends SIGINT and waits up to `timeout` for a clean exit. If the process is still
    /// there after that it is killed and the timeout is reported.
    pub async fn stop(mut self, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        self.interrupt()?;
        let result = self.wait_exit(timeout).await;
        if result.is_err() {
            self.kill().await;
        }
        result
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::debug!(program = %self.program, %error, "kill failed");
        }
    }
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    which: Stream,
    program: String,
    captured: Arc<watch::Sender<Captured>>,
) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(text)) => {
                // Shown by the test harness when the test fails.
                eprintln!("[{program} {which}] {text}");
                captured.send_modify(|c| {
                    if c.lines.len() == MAX_LINES {
                        c.lines.pop_front();
                    }
                    c.lines.push_back(Line {
                        stream: which,
                        text,
                    });
                });
            }
            Ok(None) => break,
            Err(error) => {
                // Not UTF-8 or the pipe failed: nothing more can be read as lines.
                eprintln!("[{program} {which}] <unreadable: {error}>");
                break;
            }
        }
    }
    captured.send_modify(|c| c.closed_streams += 1);
}

fn quote(lines: &VecDeque<Line>) -> String {
    let skip = lines.len().saturating_sub(QUOTED_LINES);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("  ... {skip} earlier lines\n"));
    }
    for line in lines.iter().skip(skip) {
        out.push_str(&format!("  [{}] {}\n", line.stream, line.text));
    }
    if out.is_empty() {
        out.push_str("  (no output)\n");
    }
    out
}

fn display_name(program: &OsStr) -> String {
    std::path::Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}
