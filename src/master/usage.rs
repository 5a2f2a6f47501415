//! What a worker's processes use, read from `/proc`: the resident memory and CPU time of a
//! worker's **process tree** — its own process and every descendant still running.
//!
//! An exec'd worker is often not one process: a shell wrapper runs the server as its
//! child, gunicorn forks its own workers, a Node app spawns helpers. `--max-worker-rss`
//! and the admin endpoint's `rss_bytes` / `cpu_seconds` count all of them, as PM2 and
//! `ps` totals do. The tree is found by parent pid: the kernel here does not offer
//! `/proc/PID/task/TID/children` on every build, so one scan of `/proc/*/stat` reads every
//! process's parent, memory and CPU at once ([`ProcTable::read`]), and a worker's usage is
//! the sum over its descendants in that table.
//!
//! Two rules of the numbers:
//! * **RSS is summed.** Pages shared by a parent and its forked children (gunicorn's
//!   preloaded app) are counted once per process, so the sum overstates what the tree
//!   would free by exiting; it is the figure `ps` shows, and the one a limit should watch,
//!   since a leak in any process of the tree raises it.
//! * **CPU includes the dead.** A process's own user + system time, plus what its children
//!   that it has already waited for used (`cutime`/`cstime`): a worker that forks short
//!   jobs keeps their CPU in its total.
//!
//! A descendant that escapes its parent (double-forks, `setsid` and its parent exits) is
//! reparented to init and no longer counted: herd does not make itself a subreaper, since
//! that would make the master reap processes that are not its workers.

use std::collections::HashMap;
use std::time::Duration;

/// One process, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    ppid: i32,
    /// Resident pages.
    rss_pages: u64,
    /// utime + stime + cutime + cstime, in clock ticks.
    cpu_ticks: u64,
}

/// What a process tree uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Resident memory, summed over the tree's processes.
    pub rss_bytes: u64,
    /// CPU time (user + system), the tree's and its reaped children's.
    pub cpu: Duration,
    /// Processes in the tree (the worker itself included).
    pub processes: u32,
}

/// Every process on the machine at one moment, by pid.
#[derive(Debug, Default)]
pub struct ProcTable {
    procs: HashMap<i32, ProcStat>,
    children: HashMap<i32, Vec<i32>>,
    page_size: u64,
    ticks_per_second: u64,
}

impl ProcTable {
    /// Scans `/proc`. Processes that exit during the scan are missing from it, never an
    /// error; an unreadable `/proc` gives an empty table.
    pub fn read() -> ProcTable {
        let mut table = ProcTable {
            page_size: sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096),
            ticks_per_second: sysconf(nix::unistd::SysconfVar::CLK_TCK, 100),
            ..ProcTable::default()
        };
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return table;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue; // gone already
            };
            if let Some(stat) = parse_stat(&text) {
                table.children.entry(stat.ppid).or_default().push(pid);
                table.procs.insert(pid, stat);
            }
        }
        table
    }

    /// What `root` and its descendants use; `None` if `root` is not running.
    pub fn tree_usage(&self, root: i32) -> Option<Usage> {
        self.procs.get(&root)?;
        let (mut pages, mut ticks, mut processes) = (0u64, 0u64, 0u32);
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            let Some(p) = self.procs.get(&pid) else {
                continue;
            };
            pages += p.rss_pages;
            ticks += p.cpu_ticks;
            processes += 1;
            // A pid is in one parent's list only, so the walk cannot loop.
            stack.extend(self.children.get(&pid).into_iter().flatten());
        }
        Some(Usage {
            rss_bytes: pages * self.page_size,
            cpu: Duration::from_millis(ticks * 1000 / self.ticks_per_second.max(1)),
            processes,
        })
    }
}

fn sysconf(var: nix::unistd::SysconfVar, fallback: u64) -> u64 {
    match nix::unistd::sysconf(var) {
        Ok(Some(v)) if v > 0 => v as u64,
        _ => fallback,
    }
}

/// The fields of `/proc/PID/stat` herd needs. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Fields 3.. of proc(5): state is index 0, so field N is at index N - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        ppid: fields.get(4 - 3)?.parse().ok()?,
        rss_pages: field(24)?,
        cpu_ticks: field(14)? + field(15)? + field(16)? + field(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    30 12 5 3 20 0 1 0 1234 10000000 250 18446744073709551615";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.rss_pages, 250);
        assert_eq!(stat.cpu_ticks, 30 + 12 + 5 + 3);
        assert!(parse_stat("4242 (truncated").is_none());
        assert!(parse_stat("4242 (x) S 1 2").is_none());
    }

    #[test]
    fn a_tree_counts_the_process_and_its_live_descendants() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        // The child is in a table read after it started; its parent is this process.
        let table = ProcTable::read();
        let alone = table.tree_usage(pid).expect("the child is running");
        assert_eq!(alone.processes, 1);
        assert!(alone.rss_bytes > 0);
        let tree = table.tree_usage(me).expect("this process is running");
        assert!(tree.processes >= 2, "{tree:?}");
        assert!(tree.rss_bytes >= alone.rss_bytes);
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(ProcTable::read().tree_usage(pid).is_none());
    }
}
