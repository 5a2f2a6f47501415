//! Privilege drop: workers run as an unprivileged user while the master keeps root.
//!
//! The master binds (a port below 1024 needs root or `CAP_NET_BIND_SERVICE`) and accepts;
//! the workers, which run the application code and parse untrusted input, switch to
//! `--user`/`--group` right after the fork, before they serve anything. The names are
//! resolved once in the master ([`Credentials::resolve`], which reads `/etc/passwd` and
//! `/etc/group`); the child only makes the three system calls, in the only order that works:
//! supplementary groups and the group first (both need root), the user last.
//!
//! A worker that cannot switch must not serve as root: [`Credentials::apply`] fails, the
//! worker exits with [`EXIT_CONFIG`], and the master stops with a clear error instead of
//! respawning a worker that can never start.

use std::ffi::CString;
use std::io;

use nix::unistd::{Gid, Group, Uid, User};

/// Exit code (sysexits' `EX_CONFIG`) of a worker that cannot run with the configuration it
/// was given (it could not drop privileges). The master does not respawn it: it stops and
/// reports the error, since every new worker would fail the same way.
pub const EXIT_CONFIG: i32 = 78;

/// Who workers run as, resolved from names in the master.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user's name, for messages.
    pub user: String,
    /// The user id to switch to.
    pub uid: Uid,
    /// The group id to switch to (`--group`, else the user's primary group).
    pub gid: Gid,
    /// Supplementary groups: the user's, from `/etc/group` (`initgroups` semantics).
    pub groups: Vec<Gid>,
}

impl Credentials {
    /// Looks up `user` (and `group`, default the user's primary group). An unknown name is
    /// an error, as is a master that is not root but asked to become someone else.
    pub fn resolve(user: &str, group: Option<&str>) -> io::Result<Credentials> {
        let entry = User::from_name(user)
            .map_err(|e| io::Error::other(format!("--user {user}: {e}")))?
            .ok_or_else(|| io::Error::other(format!("--user {user}: no such user")))?;
        let gid = match group {
            None => entry.gid,
            Some(name) => {
                Group::from_name(name)
                    .map_err(|e| io::Error::other(format!("--group {name}: {e}")))?
                    .ok_or_else(|| io::Error::other(format!("--group {name}: no such group")))?
                    .gid
            }
        };
        let cname =
            CString::new(user).map_err(|_| io::Error::other(format!("--user {user}: bad name")))?;
        let groups = nix::unistd::getgrouplist(&cname, gid)
            .map_err(|e| io::Error::other(format!("--user {user}: groups: {e}")))?;
        let me = Uid::effective();
        if !me.is_root() && me != entry.uid {
            return Err(io::Error::other(format!(
                "--user {user}: the master runs as uid {me}, not root, and cannot switch \
                 workers to uid {} (start herd as root, or drop --user)",
                entry.uid
            )));
        }
        Ok(Credentials {
            user: user.to_string(),
            uid: entry.uid,
            gid,
            groups,
        })
    }

    /// Switches this (freshly forked, single-threaded) process to the credentials, then
    /// checks that it took: real, effective and saved ids all changed, and root cannot be
    /// regained.
    pub fn apply(&self) -> io::Result<()> {
        let fail = |what: &str, e: nix::Error| {
            io::Error::other(format!(
                "cannot switch to user {} (uid {}, gid {}): {what}: {e}",
                self.user, self.uid, self.gid
            ))
        };
        nix::unistd::setgroups(&self.groups).map_err(|e| fail("setgroups", e))?;
        nix::unistd::setgid(self.gid).map_err(|e| fail("setgid", e))?;
        nix::unistd::setuid(self.uid).map_err(|e| fail("setuid", e))?;
        let ids = nix::unistd::getresuid().map_err(|e| fail("getresuid", e))?;
        if ids.real != self.uid || ids.effective != self.uid || ids.saved != self.uid {
            return Err(fail("ids did not change", nix::Error::EPERM));
        }
        if !self.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(fail("root could be regained", nix::Error::EPERM));
        }
        Ok(())
    }
}
