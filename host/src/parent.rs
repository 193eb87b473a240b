//! Child processes that end with the `dmlbench` that started them.
//!
//! dmlbench runs cells and plugin jobs in child processes of its own binary. Killing the
//! parent (Ctrl-C in a terminal, a scheduler's SIGKILL) must not leave them running: an
//! orphaned cell would go on training and hold its lock, an orphaned plugin job would spin.
//! The parent names itself to the child ([`make_child`]); the child, first thing, arranges to
//! end when that parent does ([`follow_parent`]).

use std::process::Command;

/// The environment variable that tells a child process its parent's PID.
const PARENT_PID: &str = "DMLBENCH_PARENT_PID";

/// Marks `command` as a child of this process, for [`follow_parent`] in the child.
pub fn make_child(command: &mut Command) {
    command.env(PARENT_PID, std::process::id().to_string());
}

/// Makes this process, when [`make_child`] started it, end when its parent does. On Linux the
/// kernel sends SIGKILL when the parent dies; elsewhere a thread checks every second. Does
/// nothing in a process started otherwise.
pub fn follow_parent() {
    let Some(parent) = std::env::var(PARENT_PID).ok().and_then(|p| p.parse::<u32>().ok()) else { return };
    #[cfg(unix)]
    {
        #[cfg(target_os = "linux")]
        // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal for this process.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // SAFETY: getppid has no preconditions.
        let current_parent = || unsafe { libc::getppid() } as u32;
        // The parent may have died before the signal was armed.
        if current_parent() != parent {
            eprintln!("the dmlbench process that started this one has ended; stopping");
            std::process::exit(1);
        }
        #[cfg(not(target_os = "linux"))]
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if current_parent() != parent {
                    std::process::exit(1);
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = parent;
}
