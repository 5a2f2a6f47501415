//! What an exec'd worker starts with besides its fds: its environment, and the file its
//! command names on `$PATH`.
//!
//! Both are settled in the master before the fork (see [`super::spawn`]): the environment
//! becomes `NAME=value\0` buffers for `envp`, with a slot of [`PID_DIGITS`] + 1 NUL bytes
//! for a variable whose value is the child's pid, filled in by the child; and the command
//! is looked up the way `execvp` would, but here, so that "not found" or "not executable"
//! is an error the master can report, not a child that exits 127 and is respawned forever.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::sys::PID_DIGITS;

/// The search path when `$PATH` is unset (glibc's `confstr(_CS_PATH)`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// A change to the inherited environment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Set(OsString),
    Remove,
    /// The child's own pid, written between fork and exec.
    Pid,
}

/// The child's environment, built for `envp`.
#[derive(Debug)]
pub(super) struct Built {
    /// One `NAME=value\0` buffer per variable.
    pub(super) buffers: Vec<Vec<u8>>,
    /// For each pid variable: the index of its buffer, and where its digits go in it.
    pub(super) pid_slots: Vec<(usize, usize)>,
}

/// The child's environment: the master's, with changes applied in order (the last change
/// to a name wins).
#[derive(Debug, Clone, Default)]
pub(super) struct Environment {
    changes: Vec<(OsString, Change)>,
}

impl Environment {
    pub(super) fn set(&mut self, name: OsString, value: OsString) {
        self.change(name, Change::Set(value));
    }

    pub(super) fn remove(&mut self, name: OsString) {
        self.change(name, Change::Remove);
    }

    pub(super) fn set_to_pid(&mut self, name: OsString) {
        self.change(name, Change::Pid);
    }

    fn change(&mut self, name: OsString, change: Change) {
        self.changes.retain(|(n, _)| *n != name);
        self.changes.push((name, change));
    }

    /// The `$PATH` the child will have, which is where its command is looked up.
    pub(super) fn path_override(&self) -> Option<OsString> {
        match self.changes.iter().find(|(n, _)| n == "PATH") {
            Some((_, Change::Set(path))) => Some(path.clone()),
            Some(_) => None,
            None => std::env::var_os("PATH"),
        }
    }

    /// The environment as `envp` will hold it.
    pub(super) fn build(&self, program: &str) -> io::Result<Built> {
        let mut vars: Vec<(OsString, Change)> = std::env::vars_os()
            .map(|(n, v)| (n, Change::Set(v)))
            .collect();
        for (name, change) in &self.changes {
            if name.is_empty() || name.as_bytes().contains(&b'=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot run {program}: bad variable name {name:?}"),
                ));
            }
            vars.retain(|(n, _)| n != name);
            if *change != Change::Remove {
                vars.push((name.clone(), change.clone()));
            }
        }
        let mut buffers = Vec::with_capacity(vars.len());
        let mut pid_slots = Vec::new();
        for (name, value) in vars {
            let mut buf = name.into_vec();
            buf.push(b'=');
            let pid = value == Change::Pid;
            if let Change::Set(v) = value {
                buf.extend_from_slice(v.as_bytes());
            }
            if buf.contains(&0) {
                return Err(nul_error(program));
            }
            if pid {
                pid_slots.push((buffers.len(), buf.len()));
                buf.resize(buf.len() + PID_DIGITS, 0);
            }
            buf.push(0);
            buffers.push(buf);
        }
        Ok(Built { buffers, pid_slots })
    }
}

/// The file `command` names: itself if it holds a `/`, else the first executable file of
/// that name in a directory of `path` (an empty entry is the current directory, as for
/// `execvp`). Errors say why in the shell's words.
pub(super) fn resolve(command: &OsStr, path: Option<OsString>) -> io::Result<CString> {
    let name = command.to_string_lossy();
    if command.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot run an empty command",
        ));
    }
    let found = if command.as_bytes().contains(&b'/') {
        let file = Path::new(command);
        match std::fs::metadata(file) {
            Err(e) => return Err(cannot_run(&name, e)),
            Ok(m) if m.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("cannot run {name}: Is a directory"),
                ))
            }
            Ok(_) if !executable(file) => {
                return Err(cannot_run(
                    &name,
                    io::Error::from_raw_os_error(libc::EACCES),
                ))
            }
            Ok(_) => file.to_path_buf(),
        }
    } else {
        search(command, &path.unwrap_or_else(|| DEFAULT_PATH.into()), &name)?
    };
    c_string(found.as_os_str().as_bytes(), &name)
}

fn search(command: &OsStr, path: &OsStr, name: &str) -> io::Result<PathBuf> {
    let mut denied = false;
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(command);
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            if executable(&candidate) {
                return Ok(candidate);
            }
            denied = true; // execvp goes on looking, and reports EACCES if nothing else runs
        }
    }
    Err(if denied {
        cannot_run(name, io::Error::from_raw_os_error(libc::EACCES))
    } else {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot run {name}: command not found"),
        )
    })
}

/// `cannot run NAME: <the errno's description>`, keeping the error's kind.
fn cannot_run(name: &str, e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(errno) => nix::errno::Errno::from_raw(errno).desc().to_string(),
        None => e.to_string(),
    };
    io::Error::new(e.kind(), format!("cannot run {name}: {why}"))
}

/// A NUL-terminated copy of `bytes`; a NUL inside is an error naming the program.
pub(super) fn c_string(bytes: &[u8], program: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| nul_error(program))
}

/// The error for an argument, a variable or a path that holds a NUL byte.
pub(super) fn nul_error(program: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("cannot run {program}: an argument or variable contains a NUL byte"),
    )
}

/// Whether `path` names a file this process may execute (for errors in the parent).
pub(super) fn executable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(env: &Environment) -> Vec<Vec<u8>> {
        env.build("test").unwrap().buffers
    }

    #[test]
    fn changes_apply_over_the_inherited_environment_and_the_last_one_wins() {
        let mut env = Environment::default();
        env.set("HERD_ENV_TEST_A".into(), "1".into());
        env.set("HERD_ENV_TEST_A".into(), "2".into());
        env.set("HERD_ENV_TEST_B".into(), "x".into());
        env.remove("HERD_ENV_TEST_B".into());
        env.remove("PATH".into());
        let bufs = built(&env);
        assert!(bufs.contains(&b"HERD_ENV_TEST_A=2\0".to_vec()));
        assert!(!bufs.iter().any(|b| b.starts_with(b"HERD_ENV_TEST_B=")));
        assert!(!bufs.iter().any(|b| b.starts_with(b"PATH=")));
        assert_eq!(
            bufs.iter()
                .filter(|b| b.starts_with(b"HERD_ENV_TEST_A="))
                .count(),
            1
        );
        assert!(bufs.iter().all(|b| b.ends_with(&[0])));
    }

    #[test]
    fn a_pid_variable_gets_a_slot_of_nuls_after_its_name() {
        let mut env = Environment::default();
        env.set_to_pid("LISTEN_PID".into());
        let Built {
            buffers: bufs,
            pid_slots: slots,
        } = env.build("test").unwrap();
        assert_eq!(slots.len(), 1);
        let (i, at) = slots[0];
        assert_eq!(&bufs[i][..at], b"LISTEN_PID=");
        assert_eq!(bufs[i].len(), at + PID_DIGITS + 1);
        assert!(bufs[i][at..].iter().all(|&b| b == 0));
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        let mut env = Environment::default();
        env.set("A=B".into(), "1".into());
        assert!(env.build("test").is_err());
        let mut env = Environment::default();
        env.set("A".into(), OsString::from_vec(b"x\0y".to_vec()));
        let err = env.build("test").unwrap_err();
        assert!(err.to_string().contains("NUL byte"), "{err}");
    }

    #[test]
    fn the_path_lookup_finds_executables_and_names_what_is_wrong() {
        let sh = resolve(OsStr::new("sh"), Some("/nonexistent:/bin:/usr/bin".into())).unwrap();
        assert!(sh.to_bytes().ends_with(b"/sh"));
        let err = resolve(OsStr::new("herd-no-such-command"), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "cannot run herd-no-such-command: command not found"
        );
        let err = resolve(OsStr::new("./herd-no-such-file"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot run ./herd-no-such-file: No such file or directory"
        );
        let err = resolve(OsStr::new("/"), None).unwrap_err();
        assert_eq!(err.to_string(), "cannot run /: Is a directory");
        assert!(resolve(OsStr::new(""), None).is_err());
    }
}
