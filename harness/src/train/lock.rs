//! One owner per cell: a lock file beside the record, `<cell>.lock`.
//!
//! The process that trains a cell holds its lock; a second `dmlbench run` on the same results
//! directory (another terminal, a requeued cluster task, a run started while an orphaned cell
//! still trains) finds the cell owned and leaves it alone, saying by whom.
//!
//! The lock is a small JSON file (host, PID, start and heartbeat times) created with
//! `O_CREAT | O_EXCL`, which network file systems honour where `flock` is often not
//! propagated between hosts. The owner rewrites its heartbeat every [`HEARTBEAT`]. A lock is
//! stale, and is taken over, when its owner is a process of this host that no longer exists,
//! or when its heartbeat is older than [`stale_after`] (10 minutes by default,
//! `DMLBENCH_LOCK_STALE_S` to change it): on another host, silence is the only sign of death.
//! Taking over goes through a second exclusive file, `<cell>.lock.takeover`, so that of two
//! processes finding the same stale lock only one replaces it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::environment::host_name;
use super::periodic::Periodic;
use super::{unix_seconds, with_suffix};

/// How often the owner renews its lock.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// How long without a heartbeat before a lock (of a process on another host, or one whose
/// PID cannot be checked) counts as abandoned.
pub fn stale_after() -> Duration {
    let seconds = std::env::var("DMLBENCH_LOCK_STALE_S").ok().and_then(|s| s.parse::<f64>().ok());
    seconds.filter(|s| s.is_finite() && *s > 0.0).map_or(Duration::from_secs(600), Duration::from_secs_f64)
}

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// When the lock was taken (Unix seconds).
    pub started_unix_s: u64,
    /// The owner's last sign of life (Unix seconds).
    pub heartbeat_unix_s: u64,
    /// The Slurm task the owner ran in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_task: Option<SlurmTask>,
}

/// A Slurm task incarnation: `JOB_TASK` (or the job id outside an array) and how often it was
/// requeued. Slurm runs one incarnation of a task at a time and ends it before requeuing, so a
/// lock left by an earlier incarnation of the same task belongs to a dead process, even on
/// another node, and the requeued task takes it over at once instead of after the stale time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmTask {
    /// `SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID`, or `SLURM_JOB_ID`.
    pub id: String,
    /// `SLURM_RESTART_COUNT` (0 before the first requeue).
    pub restart: u32,
}

impl SlurmTask {
    /// The task this process runs in, from Slurm's environment.
    pub fn current() -> Option<SlurmTask> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let id = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
            (Some(job), Some(task)) => format!("{job}_{task}"),
            _ => var("SLURM_JOB_ID")?,
        };
        let restart = var("SLURM_RESTART_COUNT").and_then(|r| r.parse().ok()).unwrap_or(0);
        Some(SlurmTask { id, restart })
    }
}

impl Owner {
    /// This process, now.
    fn me() -> Owner {
        Owner {
            host: host_name(),
            pid: std::process::id(),
            started_unix_s: unix_seconds(),
            heartbeat_unix_s: unix_seconds(),
            slurm_task: SlurmTask::current(),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let age = unix_seconds().saturating_sub(self.heartbeat_unix_s);
        write!(f, "process {} on {} (last heartbeat {age} s ago)", self.pid, self.host)
    }
}

/// The outcome of trying to take a cell's lock.
#[derive(Debug)]
pub enum Acquired {
    /// This process owns the cell until the lock is dropped.
    Owned(CellLock),
    /// Another live process owns it.
    Busy(Owner),
}

/// A held lock: renewed in the background, removed when dropped.
#[derive(Debug)]
pub struct CellLock {
    path: PathBuf,
    owner: Owner,
    heartbeat: Option<Periodic>,
}

impl CellLock {
    /// Who this lock says owns the cell (this process).
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
}

impl Drop for CellLock {
    fn drop(&mut self) {
        // The heartbeat ends first, so that it cannot write the lock again after its removal.
        drop(self.heartbeat.take());
        // Remove it only if it is still ours: a process that was suspended past the stale
        // time may have been taken over.
        if read_owner(&self.path).is_some_and(|o| o.pid == self.owner.pid && o.host == self.owner.host) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The lock file of the record at `record`: the same name with `.lock` appended.
pub fn lock_path(record: &Path) -> PathBuf {
    with_suffix(record, ".lock")
}

/// The live owner of the lock at `path`, if any (a stale or missing lock has none).
pub fn live_owner(path: &Path) -> Option<Owner> {
    read_owner(path).filter(|owner| !is_stale(owner))
}

/// Takes the lock at `path` for this process, unless a live owner holds it.
pub fn acquire(path: &Path) -> anyhow::Result<Acquired> {
    let me = Owner::me();
    // Two rounds: the second follows the removal of a stale lock.
    for _ in 0..2 {
        if create_exclusive(path, &me)? {
            return Ok(Acquired::Owned(hold(path.to_path_buf(), me)));
        }
        match read_owner(path) {
            Some(owner) if !is_stale(&owner) => return Ok(Acquired::Busy(owner)),
            // Unreadable: being written right now, or garbage left by a crash. Its age decides.
            None if !file_is_stale(path) => return Ok(Acquired::Busy(unknown_owner(path))),
            seen => {
                if !take_over(path, seen.as_ref())? {
                    return Ok(Acquired::Busy(read_owner(path).unwrap_or_else(|| unknown_owner(path))));
                }
            }
        }
    }
    Ok(Acquired::Busy(read_owner(path).unwrap_or_else(|| unknown_owner(path))))
}

/// Removes the stale lock at `path` (still the one read as `seen`), holding the takeover
/// file meanwhile. `false` when another process is taking it over or renewed it.
fn take_over(path: &Path, seen: Option<&Owner>) -> anyhow::Result<bool> {
    let guard = with_suffix(path, ".takeover");
    let placeholder = Owner::me();
    let mut created = create_exclusive(&guard, &placeholder)?;
    if !created {
        // A taker killed mid-way leaves its guard behind: it is cleared as a lock would be,
        // at once when its process (on this host) is gone, else after the stale time, and the
        // takeover tried again.
        let left = read_owner(&guard);
        let abandoned = left.as_ref().map_or_else(|| file_is_stale(&guard), is_stale);
        if abandoned && read_owner(&guard) == left {
            let _ = std::fs::remove_file(&guard);
            created = create_exclusive(&guard, &placeholder)?;
        }
    }
    if !created {
        return Ok(false);
    }
    let still_stale = read_owner(path).as_ref() == seen;
    if still_stale {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = std::fs::remove_file(&guard);
                return Err(e).with_context(|| format!("removing the stale lock {}", path.display()));
            }
        }
    }
    let _ = std::fs::remove_file(&guard);
    Ok(still_stale)
}

/// Creates `path` with `owner` in it, failing (`false`) if it exists.
fn create_exclusive(path: &Path, owner: &Owner) -> anyhow::Result<bool> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut file) => {
            let json = serde_json::to_vec(owner).expect("an owner serialises");
            file.write_all(&json)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating the lock {}", path.display())),
    }
}

/// Starts renewing the lock at `path` every [`HEARTBEAT`].
fn hold(path: PathBuf, owner: Owner) -> CellLock {
    let heartbeat = {
        let (path, owner) = (path.clone(), owner.clone());
        Periodic::start("cell-lock", HEARTBEAT, move || {
            renew(&path, &owner);
            ControlFlow::Continue(())
        })
    };
    CellLock { path, owner, heartbeat: Some(heartbeat) }
}

/// Rewrites the heartbeat (by rename, so readers never see half a file), unless the lock
/// has been taken over meanwhile.
fn renew(path: &Path, owner: &Owner) {
    if !read_owner(path).is_some_and(|o| o.pid == owner.pid && o.host == owner.host) {
        eprintln!(
            "warning: the lock {} is no longer this process's; another process may train this cell",
            path.display()
        );
        return;
    }
    let fresh = Owner { heartbeat_unix_s: unix_seconds(), ..owner.clone() };
    let temporary = with_suffix(path, &format!(".{}.tmp", std::process::id()));
    let written = std::fs::write(&temporary, serde_json::to_vec(&fresh).expect("an owner serialises"))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        eprintln!("warning: cannot renew the lock {}: {e}", path.display());
    }
}

fn read_owner(path: &Path) -> Option<Owner> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A lock whose owner is a dead process of this host, or silent for longer than the stale time.
fn is_stale(owner: &Owner) -> bool {
    if owner.host == host_name() && !process_alive(owner.pid) {
        return true;
    }
    if is_earlier_incarnation(owner, SlurmTask::current().as_ref()) {
        return true;
    }
    unix_seconds().saturating_sub(owner.heartbeat_unix_s) as f64 > stale_after().as_secs_f64()
}

/// Whether `owner` ran in an earlier incarnation of the Slurm task `current` (see
/// [`SlurmTask`]).
fn is_earlier_incarnation(owner: &Owner, current: Option<&SlurmTask>) -> bool {
    match (&owner.slurm_task, current) {
        (Some(theirs), Some(mine)) => theirs.id == mine.id && theirs.restart < mine.restart,
        _ => false,
    }
}

/// Whether the file at `path` was last written longer ago than the stale time.
fn file_is_stale(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > stale_after())
}

fn unknown_owner(path: &Path) -> Owner {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Owner {
        host: "an unknown host".into(),
        pid: 0,
        started_unix_s: modified,
        heartbeat_unix_s: modified,
        slurm_task: None,
    }
}

/// Whether process `pid` of this host is running. On Linux a zombie (killed, not yet reaped:
/// common in containers whose first process reaps nothing) counts as gone.
#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks whether the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    // Without a cheap check, only the heartbeat says a process is gone.
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PID of a child that has exited: it names no live process (reused PIDs are rare).
    fn exited_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    fn write_owner(path: &Path, owner: &Owner) {
        std::fs::write(path, serde_json::to_vec(owner).unwrap()).unwrap();
    }

    #[test]
    fn a_held_lock_keeps_others_out_and_is_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.ron.lock");
        let Acquired::Owned(lock) = acquire(&path).unwrap() else { panic!("a free lock is taken") };
        assert_eq!(read_owner(&path).as_ref(), Some(lock.owner()));
        // The same process asking again (as a second run would) finds it busy: it is alive.
        match acquire(&path).unwrap() {
            Acquired::Busy(owner) => assert_eq!(owner.pid, std::process::id()),
            Acquired::Owned(_) => panic!("a held lock was taken twice"),
        }
        drop(lock);
        assert!(!path.exists(), "the lock is removed on release");
        assert!(matches!(acquire(&path).unwrap(), Acquired::Owned(_)));
    }

    #[test]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.ron.lock");
        let pid = exited_pid();
        write_owner(&path, &Owner { pid, ..Owner::me() });
        let Acquired::Owned(lock) = acquire(&path).unwrap() else { panic!("a dead owner's lock is taken over") };
        assert_eq!(lock.owner().pid, std::process::id());
        assert!(!with_suffix(&path, ".takeover").exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_lock_of_a_killed_but_unreaped_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.ron.lock");
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        write_owner(&path, &Owner { pid, ..Owner::me() });
        assert!(matches!(acquire(&path).unwrap(), Acquired::Busy(_)), "a running owner keeps its lock");
        child.kill().unwrap();
        // Not waited for yet: a zombie, as a cell whose run was killed becomes.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_alive(pid) {
            assert!(std::time::Instant::now() < deadline, "a killed process still counts as alive");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(matches!(acquire(&path).unwrap(), Acquired::Owned(_)));
        child.wait().unwrap();
    }

    #[test]
    fn a_silent_lock_of_another_host_is_taken_over_only_after_the_stale_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.ron.lock");
        let recent = Owner {
            host: "elsewhere".into(),
            pid: 1,
            started_unix_s: unix_seconds(),
            heartbeat_unix_s: unix_seconds() - 60,
            slurm_task: None,
        };
        write_owner(&path, &recent);
        match acquire(&path).unwrap() {
            Acquired::Busy(owner) => {
                assert_eq!(owner, recent);
                assert!(owner.to_string().contains("process 1 on elsewhere"), "{owner}");
            }
            Acquired::Owned(_) => panic!("a live owner on another host was overridden"),
        }
        let silent = Owner { heartbeat_unix_s: unix_seconds() - 3600, ..recent };
        write_owner(&path, &silent);
        assert!(matches!(acquire(&path).unwrap(), Acquired::Owned(_)), "an hour of silence is stale");
    }

    #[test]
    fn a_requeued_slurm_task_takes_over_its_earlier_incarnations_lock_at_once() {
        let task = |id: &str, restart| Some(SlurmTask { id: id.into(), restart });
        // A fresh heartbeat on another host: only the task identity can say it is dead.
        let owner = Owner {
            host: "node7".into(),
            pid: 1,
            started_unix_s: unix_seconds(),
            heartbeat_unix_s: unix_seconds(),
            slurm_task: task("41_3", 0),
        };
        assert!(is_earlier_incarnation(&owner, task("41_3", 1).as_ref()));
        assert!(!is_earlier_incarnation(&owner, task("41_3", 0).as_ref()), "the same incarnation");
        assert!(!is_earlier_incarnation(&owner, task("41_4", 1).as_ref()), "another task");
        assert!(!is_earlier_incarnation(&owner, task("42_3", 1).as_ref()), "another job");
        assert!(!is_earlier_incarnation(&owner, None), "outside Slurm");
        let outside = Owner { slurm_task: None, ..owner.clone() };
        assert!(!is_earlier_incarnation(&outside, task("41_3", 1).as_ref()));
        // Written without a task (older dmlbench, or outside Slurm), the lock reads back as such.
        let json = r#"{"host":"h","pid":2,"started_unix_s":0,"heartbeat_unix_s":0}"#;
        assert_eq!(serde_json::from_str::<Owner>(json).unwrap().slurm_task, None);
    }

    #[test]
    fn a_takeover_guard_left_by_a_dead_process_does_not_block_the_cell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.ron.lock");
        let pid = exited_pid();
        // The lock's owner and a taker that was killed while holding the guard are both gone.
        write_owner(&path, &Owner { pid, ..Owner::me() });
        write_owner(&with_suffix(&path, ".takeover"), &Owner { pid, ..Owner::me() });
        let Acquired::Owned(lock) = acquire(&path).unwrap() else { panic!("an abandoned guard blocked the cell") };
        assert_eq!(lock.owner().pid, std::process::id());
        assert!(!with_suffix(&path, ".takeover").exists());
    }

    #[test]
    fn a_takeover_in_progress_elsewhere_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.ron.lock");
        let silent =
            Owner { host: "elsewhere".into(), pid: 1, started_unix_s: 0, heartbeat_unix_s: 0, slurm_task: None };
        write_owner(&path, &silent);
        std::fs::write(with_suffix(&path, ".takeover"), b"{}").unwrap();
        assert!(
            matches!(acquire(&path).unwrap(), Acquired::Busy(_)),
            "only the holder of the takeover file replaces the lock"
        );
        assert_eq!(read_owner(&path), Some(silent));
    }

    #[test]
    fn of_many_threads_racing_for_one_lock_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cell.ron.lock");
        // A stale lock, so that the racers also race through the takeover.
        write_owner(
            &path,
            &Owner { host: "elsewhere".into(), pid: 1, started_unix_s: 0, heartbeat_unix_s: 0, slurm_task: None },
        );
        let barrier = std::sync::Barrier::new(8);
        let winners: Vec<CellLock> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        match acquire(&path).unwrap() {
                            Acquired::Owned(lock) => Some(lock),
                            Acquired::Busy(_) => None,
                        }
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(winners.len(), 1);
    }

    #[test]
    fn the_lock_file_sits_beside_the_record() {
        assert_eq!(lock_path(Path::new("/r/exp/ce-seed0.ron")), Path::new("/r/exp/ce-seed0.ron.lock"));
    }
}
