//! Plugin calls in a child process, so that a plugin that crashes, exits or hangs fails the
//! job it was given instead of ending the `dmlbench` process that asked.
//!
//! The parent runs `dmlbench-plugin-job`, the program installed beside `dmlbench`, when it was
//! built from the same sources (it starts without LibTorch, which a `tch` build of `dmlbench`
//! loads when it starts), or else its own program again with a hidden command
//! (`dmlbench plugin-job`), and writes the job on the child's stdin as JSON: tasks, each naming a library, a plugin, and what
//! to do (create an instance with given options, or run the conformance suite). The child loads
//! only those libraries, does the tasks in order, and answers on stdout, one message per line, each line starting
//! with [`REPLY_PREFIX`]; its last message is `Done`. The parent reads the answers as they come
//! and keeps the tail of everything else the child writes (stderr, and stdout that is not an
//! answer), so however the child ends, it ends in a clear result:
//!
//! - a signal (`SIGSEGV` in a plugin), a non-zero exit code, or an exit before `Done` (a plugin
//!   that calls `exit(0)`) is a failure that names the plugin, how its process ended and the
//!   last lines it wrote;
//! - a child that makes no progress for the timeout is killed, and that is a failure too: the
//!   timeout restarts with every answer, so for the conformance suite it bounds each check;
//! - only a child that said `Done` and exited with code 0 succeeded.
//!
//! Training needs none of this: every cell already runs in a process of its own.
//!
//! The child is found from the running executable, so only the `dmlbench` binary can use these
//! functions; another program that calls them gets a failed job, since nothing answers.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use dmlbench_abi::Status;

use serde::{Deserialize, Serialize};

use super::check::{CheckEvent, CheckOutcome, run_suite};
use super::handle::{CreateOptions, LossHandle, MinerHandle, PluginError};
use super::library::{self, PluginInfo, PluginKind};

/// The hidden command of `dmlbench` that runs a job in the child.
pub const JOB_COMMAND: &str = "plugin-job";

/// The program of its own that runs jobs, installed beside `dmlbench`.
pub const JOB_PROGRAM: &str = "dmlbench-plugin-job";

/// The argument that asks [`JOB_PROGRAM`] for [`BUILD_SOURCES`] instead of a job.
pub const SOURCES_QUERY: &str = "--sources";

/// An identity of the sources this host was built from (see `build.rs`): `dmlbench` and a
/// [`JOB_PROGRAM`] that report the same one run the same plugin-job code.
pub const BUILD_SOURCES: &str = env!("DMLBENCH_HOST_SOURCES");

/// How long a plugin's `create` may take in a child before it is killed, unless
/// `--create-timeout` or `DMLBENCH_CREATE_TIMEOUT` says otherwise. Creating an instance parses
/// a configuration and allocates parameters: milliseconds for every plugin that ships.
pub const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one conformance check may take before its process is killed, unless `--timeout`
/// or `DMLBENCH_CHECK_TIMEOUT` says otherwise. The checks use batches of at most 24 rows of 8
/// values; the whole suite of every plugin that ships takes well under a second.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// What starts every answer line of the child; anything else it writes is output to show.
pub const REPLY_PREFIX: &str = "dmlbench-plugin-job: ";

/// The most bytes of a child's other output kept while it runs: its tail explains a crash.
const OUTPUT_KEPT: usize = 64 << 10;

/// The most lines of a child's output quoted in a failure.
const OUTPUT_LINES: usize = 12;

/// An answer line longer than this is not an answer (the longest real one is a check outcome
/// of a few KB).
const LINE_LIMIT: u64 = 1 << 20;

/// How long the parent still reads a child's pipes after it exited (something it started may
/// hold them open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A timeout that is not a positive number of seconds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecondsError {
    /// Not a number.
    #[error("'{0}' is not a number of seconds")]
    NotANumber(String),
    /// Zero, negative or NaN.
    #[error("the timeout must be positive, got {0}")]
    NotPositive(String),
    /// More than a `Duration` holds.
    #[error("'{0}' seconds is too long")]
    TooLong(String),
}

/// Seconds as given on the command line or in an environment variable: a positive number,
/// fractions allowed.
pub fn parse_seconds(text: &str) -> Result<Duration, SecondsError> {
    let seconds: f64 = text.trim().parse().map_err(|_| SecondsError::NotANumber(text.to_string()))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(SecondsError::NotPositive(text.to_string()));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| SecondsError::TooLong(text.to_string()))
}

/// `2 s`, `0.5 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// What the child is asked: tasks, done in order.
#[derive(Serialize, Deserialize)]
struct Request {
    tasks: Vec<Task>,
}

/// One job on one plugin (for [`Job::Load`], on one library: `kind` and `id` are not used).
#[derive(Clone, Serialize, Deserialize)]
struct Task {
    library: PathBuf,
    crate_dir: Option<PathBuf>,
    kind: PluginKind,
    id: String,
    job: Job,
}

#[derive(Clone, Serialize, Deserialize)]
enum Job {
    /// Load the library and read its descriptors.
    Load,
    /// Create an instance and destroy it.
    Create(CreateOptions),
    /// Run the conformance suite.
    Check,
}

/// One answer of the child.
#[derive(Serialize, Deserialize)]
enum Reply {
    /// A check is about to call the plugin.
    Started(String),
    /// A check ended.
    Finished(CheckOutcome),
    /// The library loaded and its descriptors were read.
    Loaded,
    /// `create` returned an instance.
    Created,
    /// `create` returned this status and message.
    Refused { status: i32, message: String },
    /// The child could not load the library or find the plugin in it.
    Unavailable(String),
    /// Every task is over; nothing follows.
    Done,
}

impl Task {
    fn new(info: &PluginInfo, job: Job) -> Self {
        Task {
            library: info.source.library.clone(),
            crate_dir: info.source.crate_dir.clone(),
            kind: info.kind,
            id: info.id.clone(),
            job,
        }
    }
}

/// A plugin job whose process failed: it crashed, exited early or timed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    /// `loss:ID` or `miner:ID`.
    pub plugin: String,
    /// What the child was doing (`create`, or a check's name).
    pub operation: String,
    /// How its process ended: `crashed (signal 11, SIGSEGV)`, `exited with code 3`, ...
    pub how: String,
    /// The last lines the process wrote, capped and with control characters escaped; empty
    /// when it wrote nothing.
    pub output: String,
}

impl fmt::Display for ChildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: its process {}", self.plugin, self.operation, self.how)?;
        if self.output.is_empty() {
            write!(f, " (it wrote nothing)")
        } else {
            write!(f, "; its last output:\n{}", self.output)
        }
    }
}

impl std::error::Error for ChildFailure {}

/// Why a plugin could not be created in a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// `create` ran and returned an error status.
    Refused(PluginError),
    /// The child crashed, exited early, timed out or could not load the plugin.
    Child(ChildFailure),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Refused(e) => e.fmt(f),
            CreateError::Child(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CreateError {}

/// Creates (and destroys) an instance of each plugin with its options, in order, in as few
/// child processes as it takes (see [`run_in_order`]). `timeout` bounds each `create`.
pub fn create_all_in_child(jobs: &[(&PluginInfo, CreateOptions)], timeout: Duration) -> Vec<Result<(), CreateError>> {
    let tasks: Vec<Task> = jobs.iter().map(|(info, options)| Task::new(info, Job::Create(options.clone()))).collect();
    let ends = run_in_order(&tasks, timeout, |reply| {
        matches!(reply, Reply::Created | Reply::Refused { .. } | Reply::Unavailable(_))
    });
    ends.into_iter()
        .zip(jobs)
        .map(|(end, (info, _))| match end {
            TaskEnd::Answered(Reply::Unavailable(reason)) => {
                Err(child_failure(info, format!("could not load the plugin: {reason}"), String::new()))
            }
            TaskEnd::Answered(Reply::Refused { status, message }) => Err(CreateError::Refused(PluginError {
                plugin: info.qualified_id(),
                operation: "create",
                status: Status(status),
                message,
            })),
            TaskEnd::Answered(_) => Ok(()),
            TaskEnd::Failed(ending) => {
                let how = if ending.timed_out {
                    format!("{}; allow longer with --create-timeout or DMLBENCH_CREATE_TIMEOUT", ending.how)
                } else {
                    ending.how
                };
                Err(child_failure(info, how, ending.output))
            }
        })
        .collect()
}

/// Loads each library in a child process first, in order: `None` for a library whose loading
/// ended normally (loaded, or refused with a reason the process could report), or how its
/// process ended when loading it crashed, exited or hung. Only the `dmlbench` binary can run
/// this (see the module documentation).
pub fn load_all_in_child(libraries: &[(PathBuf, Option<PathBuf>)], timeout: Duration) -> Vec<Option<String>> {
    let tasks: Vec<Task> = libraries
        .iter()
        .map(|(library, crate_dir)| Task {
            library: library.clone(),
            crate_dir: crate_dir.clone(),
            kind: PluginKind::Loss,
            id: String::new(),
            job: Job::Load,
        })
        .collect();
    run_in_order(&tasks, timeout, |reply| matches!(reply, Reply::Loaded | Reply::Unavailable(_)))
        .into_iter()
        .map(|end| match end {
            TaskEnd::Answered(_) => None,
            TaskEnd::Failed(ending) if ending.output.is_empty() => {
                Some(format!("loading it in a test process: the process {}", ending.how))
            }
            TaskEnd::Failed(ending) => Some(format!(
                "loading it in a test process: the process {}; its last output:\n{}",
                ending.how, ending.output
            )),
        })
        .collect()
}

/// How one of several tasks ended.
enum TaskEnd {
    /// Its answer.
    Answered(Reply),
    /// Its process ended (crashed, exited, timed out) before answering.
    Failed(Ending),
}

/// Runs `tasks` in order in as few child processes as it takes: one, unless a task ends its
/// process, which then fails that task, and the tasks after it go on in a new process. (The
/// `dmlbench` binary takes a while to start, most of all when it links LibTorch, so a batch
/// of plugins does not start one process each.) `is_answer` says which reply concludes a task;
/// `timeout` bounds each.
fn run_in_order(tasks: &[Task], timeout: Duration, is_answer: fn(&Reply) -> bool) -> Vec<TaskEnd> {
    let mut ends = Vec::with_capacity(tasks.len());
    while ends.len() < tasks.len() {
        let remaining = &tasks[ends.len()..];
        let mut answers = Vec::new();
        let ending = run_job(&Request { tasks: remaining.to_vec() }, timeout, |reply| {
            if is_answer(&reply) {
                answers.push(reply);
            }
        });
        let answered = answers.len();
        ends.extend(answers.into_iter().map(TaskEnd::Answered));
        if ending.succeeded {
            // A child that exits cleanly has answered every task; one that did not is broken.
            while ends.len() < tasks.len() {
                let how = "ended without answering".to_string();
                ends.push(TaskEnd::Failed(Ending {
                    succeeded: false,
                    timed_out: false,
                    how,
                    output: ending.output.clone(),
                }));
            }
        } else if answered < remaining.len() {
            // The task under way when the process ended is the one at fault.
            ends.push(TaskEnd::Failed(ending));
        } else if let Some(last) = ends.last_mut() {
            // Every task answered, then the process failed on its way out (unloading): the last
            // one is blamed, as the one that ran last, unless its answer was already a refusal.
            if !matches!(last, TaskEnd::Answered(Reply::Refused { .. } | Reply::Unavailable(_))) {
                *last = TaskEnd::Failed(ending);
            }
        }
    }
    ends
}

fn child_failure(info: &PluginInfo, how: String, output: String) -> CreateError {
    CreateError::Child(ChildFailure { plugin: info.qualified_id(), operation: "create".into(), how, output })
}

/// Runs the conformance suite on `info` in a child process and returns every outcome. When
/// the child fails, the check it was running fails with how its process ended, and the checks
/// after it do not run; the outcomes before it are kept. `timeout` bounds each check.
pub fn check_in_child(info: &PluginInfo, timeout: Duration) -> Vec<CheckOutcome> {
    let plugin = info.qualified_id();
    let mut outcomes = Vec::new();
    let mut running: Option<String> = None;
    let mut unavailable = None;
    let ending = run_job(&Request { tasks: vec![Task::new(info, Job::Check)] }, timeout, |reply| match reply {
        Reply::Started(check) => running = Some(check),
        Reply::Finished(outcome) => {
            running = None;
            // The child speaks for this plugin only.
            outcomes.push(CheckOutcome { plugin: plugin.clone(), ..outcome });
        }
        Reply::Unavailable(reason) => unavailable = Some(reason),
        _ => {}
    });
    let fail = |check: String, detail: String| CheckOutcome { plugin: plugin.clone(), check, passed: false, detail };
    if let Some(reason) = unavailable {
        outcomes
            .push(fail("conformance suite".into(), format!("the check's process could not load the plugin: {reason}")));
        return outcomes;
    }
    if ending.succeeded && running.is_none() && !outcomes.is_empty() {
        return outcomes;
    }
    let (check, when) = match (running, outcomes.last()) {
        (Some(check), _) => (check, "; the remaining checks of this plugin did not run".to_string()),
        (None, Some(last)) => ("conformance suite".to_string(), format!(" after the check '{}'", last.check)),
        (None, None) => ("conformance suite".to_string(), " before the first check".to_string()),
    };
    let how = if ending.succeeded {
        "ended without reporting every check".to_string()
    } else if ending.timed_out {
        format!("{} (allow longer with --timeout or DMLBENCH_CHECK_TIMEOUT)", ending.how)
    } else {
        ending.how.clone()
    };
    let output = if ending.output.is_empty() {
        " It wrote nothing.".to_string()
    } else {
        format!(" Its last output:\n{}", ending.output)
    };
    outcomes.push(fail(check, format!("the check's process {how}{when}.{output}")));
    outcomes
}

/// How a job's process ended.
struct Ending {
    /// It answered `Done` and exited with code 0.
    succeeded: bool,
    /// It was killed for making no progress within the timeout.
    timed_out: bool,
    /// How it ended when it did not succeed, e.g. `crashed (signal 11, SIGSEGV)`.
    how: String,
    /// The tail of its output, capped and escaped; empty when there was none.
    output: String,
}

/// What the reader threads pass on.
enum Event {
    Reply(Reply),
    Output(Vec<u8>),
    Closed,
}

/// The program a job runs in, and its arguments.
struct JobProgram {
    path: PathBuf,
    args: &'static [&'static str],
}

/// `dmlbench-plugin-job` beside `exe` when it was built from the same sources
/// ([`SOURCES_QUERY`]), since it starts without the deep learning engine `dmlbench` links;
/// otherwise `exe` itself with the hidden command. The answer is the same for the whole process.
fn job_program(exe: &Path) -> JobProgram {
    static SIBLING: OnceLock<Option<PathBuf>> = OnceLock::new();
    match SIBLING.get_or_init(|| matching_job_program(exe, SOURCES_TIMEOUT)) {
        Some(path) => JobProgram { path: path.clone(), args: &[] },
        // `--no-build` comes first: a program other than dmlbench (a test harness) rejects it
        // at once instead of doing something else with the arguments.
        None => JobProgram { path: exe.to_path_buf(), args: &["--no-build", JOB_COMMAND] },
    }
}

/// How long [`JOB_PROGRAM`] may take to say what it was built from; one that takes longer is
/// not used (it answers in milliseconds).
const SOURCES_TIMEOUT: Duration = Duration::from_secs(5);

/// [`JOB_PROGRAM`] in the directory of `exe`, if it is there and reports this build's sources
/// within `timeout`.
fn matching_job_program(exe: &Path, timeout: Duration) -> Option<PathBuf> {
    let path = exe.with_file_name(format!("{JOB_PROGRAM}{}", std::env::consts::EXE_SUFFIX));
    let mut child = Command::new(&path)
        .arg(SOURCES_QUERY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    // The answer is one short line, already in the pipe.
    let mut answer = Vec::new();
    child.stdout.take()?.take(256).read_to_end(&mut answer).ok()?;
    (status.success() && answer.trim_ascii() == BUILD_SOURCES.as_bytes()).then_some(path)
}

/// Runs `request` in a child, giving `on_reply` every answer but `Done` as it comes.
fn run_job(request: &Request, timeout: Duration, mut on_reply: impl FnMut(Reply)) -> Ending {
    let not_started = |how: String| Ending { succeeded: false, timed_out: false, how, output: String::new() };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return not_started(format!("could not be started: the dmlbench executable cannot be located: {e}")),
    };
    let program = job_program(&exe);
    let mut command = Command::new(&program.path);
    crate::parent::make_child(&mut command);
    let spawned =
        command.args(program.args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return not_started(format!("could not be started ({}): {e}", program.path.display())),
    };
    let text = serde_json::to_string(request).expect("a job request serialises");
    if let Some(mut stdin) = child.stdin.take() {
        // A child that died at once cannot read it; how it ended is reported below.
        let _ = stdin.write_all(text.as_bytes());
    }
    let (sender, events) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_sender = sender.clone();
    std::thread::spawn(move || read_answers(stdout, &out_sender));
    std::thread::spawn(move || read_output(stderr, &sender));

    let mut output = OutputTail::default();
    let mut done = false;
    let mut open_pipes = 2;
    // A timeout too long to add to the clock means no timeout.
    let deadline_after = |timeout: Duration| Instant::now().checked_add(timeout);
    let mut deadline = deadline_after(timeout);
    let mut ended: Option<(Option<ExitStatus>, Instant)> = None;
    let mut timed_out = false;
    loop {
        if let Some((_, at)) = ended
            && (open_pipes == 0 || Instant::now() >= at + DRAIN_GRACE)
        {
            break;
        }
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(Event::Reply(Reply::Done)) => done = true,
            Ok(Event::Reply(reply)) => {
                deadline = deadline_after(timeout);
                on_reply(reply);
            }
            Ok(Event::Output(bytes)) => output.push(&bytes),
            Ok(Event::Closed) => open_pipes -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open_pipes = 0,
        }
        if ended.is_none() {
            match child.try_wait() {
                Ok(Some(status)) => ended = Some((Some(status), Instant::now())),
                Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    let _ = child.kill();
                    timed_out = true;
                    ended = Some((child.wait().ok(), Instant::now()));
                }
                Ok(None) => {}
                Err(_) => ended = Some((None, Instant::now())),
            }
        }
    }
    let status = ended.and_then(|(status, _)| status);
    let succeeded = !timed_out && done && status.is_some_and(|s| s.success());
    let how = if timed_out {
        format!("timed out: it made no progress for {} and was killed", seconds(timeout))
    } else {
        match status {
            Some(s) if s.success() && !done => {
                "exited with code 0 before it finished (a plugin that calls exit() ends the process)".to_string()
            }
            Some(s) => crate::errors::describe_exit(&s),
            None => "ended in a way that could not be determined".to_string(),
        }
    };
    Ending { succeeded, timed_out, how, output: output.tail() }
}

/// Reads the child's stdout: answers, and other lines as output.
fn read_answers(stdout: impl Read, events: &mpsc::Sender<Event>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(LINE_LIMIT).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        // A plugin may have written to stdout without a line break just before an answer.
        let reply = text
            .find(REPLY_PREFIX)
            .and_then(|at| serde_json::from_str::<Reply>(text[at + REPLY_PREFIX.len()..].trim()).ok());
        let event = match reply {
            Some(reply) => Event::Reply(reply),
            None => Event::Output(line),
        };
        if events.send(event).is_err() {
            return;
        }
    }
    let _ = events.send(Event::Closed);
}

/// Reads the child's stderr as output.
fn read_output(mut stderr: impl Read, events: &mpsc::Sender<Event>) {
    let mut buffer = [0u8; 8192];
    loop {
        match stderr.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if events.send(Event::Output(buffer[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
    let _ = events.send(Event::Closed);
}

/// The last [`OUTPUT_KEPT`] bytes of a child's output, however much it writes.
#[derive(Default)]
struct OutputTail(Vec<u8>);

impl OutputTail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > 2 * OUTPUT_KEPT {
            self.0.drain(..self.0.len() - OUTPUT_KEPT);
        }
    }

    /// The last lines, without Rust backtrace frames (they would push a panic's message out),
    /// capped, with control characters escaped, so that a plugin's output cannot move the
    /// cursor or recolour a terminal when it is shown.
    fn tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.0);
        let lines: Vec<&str> =
            text.lines().map(str::trim_end).filter(|l| !l.is_empty() && !crate::errors::is_backtrace_line(l)).collect();
        let last = lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n");
        dmlbench_abi::escape_terminal(&crate::errors::cap_message_tail(&last))
    }
}

/// The child's side: reads a job on stdin, does it, answers on stdout. The exit code is 0 when
/// the job was done (whatever its result), 2 when the request could not be read.
pub fn serve() -> ExitCode {
    crate::parent::follow_parent();
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("error: cannot read the plugin job: {e}");
        return ExitCode::from(2);
    }
    let request: Request = match serde_json::from_str(&input) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("error: not a plugin job ({e}); this command is run by dmlbench itself");
            return ExitCode::from(2);
        }
    };
    for task in request.tasks {
        if let Job::Load = task.job {
            reply(&match library::load(&task.library, task.crate_dir.as_deref()) {
                Ok(_) => Reply::Loaded,
                Err(error) => Reply::Unavailable(crate::errors::describe(&error)),
            });
            continue;
        }
        match library::load(&task.library, task.crate_dir.as_deref()) {
            Err(error) => {
                reply(&Reply::Unavailable(format!("{}: {}", task.library.display(), crate::errors::describe(&error))))
            }
            Ok(plugins) => match plugins.iter().find(|p| p.kind == task.kind && p.id == task.id) {
                None => reply(&Reply::Unavailable(format!(
                    "{} no longer holds the {} '{}'",
                    task.library.display(),
                    task.kind,
                    task.id
                ))),
                Some(info) => serve_job(info, task.job),
            },
        }
    }
    reply(&Reply::Done);
    ExitCode::SUCCESS
}

fn serve_job(info: &PluginInfo, job: Job) {
    match job {
        Job::Create(options) => {
            let created = match info.kind {
                PluginKind::Loss => LossHandle::create(info, &options).map(drop),
                PluginKind::Miner => MinerHandle::create(info, &options).map(drop),
            };
            reply(&match created {
                Ok(()) => Reply::Created,
                Err(e) => Reply::Refused { status: e.status.0, message: e.message },
            });
        }
        Job::Load => reply(&Reply::Loaded),
        Job::Check => run_suite(info, &mut |event| match event {
            CheckEvent::Started(check) => reply(&Reply::Started(check)),
            CheckEvent::Finished(outcome) => reply(&Reply::Finished(outcome)),
        }),
    }
}

/// Writes one answer line and flushes it, so the parent has it even if the next plugin call
/// kills the process.
fn reply(reply: &Reply) {
    let text = serde_json::to_string(reply).expect("a reply serialises");
    let mut out = std::io::stdout().lock();
    // The parent may be gone; then nobody is listening and there is nothing to do.
    let _ = writeln!(out, "{REPLY_PREFIX}{text}");
    let _ = out.flush();
}

/// The message a validation error shows for a failed `create`.
pub fn describe_create_error(error: &CreateError) -> String {
    match error {
        CreateError::Refused(e) => format!("{} ({})", e.message, e.status.name()),
        CreateError::Child(failure) => failure.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `dmlbench-plugin-job` beside the executable is used only when it reports the same
    /// sources in time: one from another build, one that fails, one that hangs, or none at all
    /// leaves the jobs to the executable's own hidden command.
    #[cfg(unix)]
    #[test]
    fn the_job_program_beside_dmlbench_is_used_only_when_built_from_the_same_sources() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("dmlbench");
        let sibling = dir.path().join(JOB_PROGRAM);
        let write_sibling = |script: &str| {
            std::fs::write(&sibling, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&sibling, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let timeout = Duration::from_secs(5);
        assert_eq!(matching_job_program(&exe, timeout), None, "no program beside it");
        write_sibling(&format!("[ \"$1\" = {SOURCES_QUERY} ] && echo {BUILD_SOURCES}"));
        assert_eq!(matching_job_program(&exe, timeout), Some(sibling.clone()));
        write_sibling("echo 0123456789abcdef");
        assert_eq!(matching_job_program(&exe, timeout), None, "built from other sources");
        write_sibling(&format!("echo {BUILD_SOURCES}; exit 1"));
        assert_eq!(matching_job_program(&exe, timeout), None, "it failed");
        write_sibling(&format!("echo {BUILD_SOURCES}; exec sleep 60"));
        let started = Instant::now();
        assert_eq!(matching_job_program(&exe, Duration::from_millis(300)), None, "it hangs");
        assert!(started.elapsed() < Duration::from_secs(30), "the hanging program was not cut short");
    }

    #[test]
    fn timeouts_parse_as_positive_seconds() {
        assert_eq!(parse_seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds(" 0.5 "), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "NaN", "soon", "1e30"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_output_tail_is_bounded_and_escaped() {
        let mut tail = OutputTail::default();
        for i in 0..100_000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        tail.push(b"the end \x1b[31mred\n");
        assert!(tail.0.len() <= 2 * OUTPUT_KEPT);
        let shown = tail.tail();
        assert_eq!(shown.lines().count(), OUTPUT_LINES);
        assert!(shown.ends_with("line 99999\nthe end \\u{1b}[31mred"), "{shown}");
    }

    #[test]
    fn answers_are_found_after_stray_output() {
        let (sender, events) = mpsc::channel();
        let text = format!("hello\nno newline{REPLY_PREFIX}\"Done\"\n{REPLY_PREFIX}not json\n");
        read_answers(text.as_bytes(), &sender);
        let got: Vec<Event> = events.try_iter().collect();
        assert!(matches!(&got[0], Event::Output(b) if b == b"hello\n"));
        assert!(matches!(&got[1], Event::Reply(Reply::Done)));
        assert!(matches!(&got[2], Event::Output(_)));
        assert!(matches!(&got[3], Event::Closed));
    }
}
