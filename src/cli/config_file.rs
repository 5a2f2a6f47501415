//! `herd --config herd.toml serve|proxy|run`: the subcommand's table of a TOML file, turned
//! into that subcommand's flags before clap parses them, so that the clap definitions stay
//! the one place that knows every setting's name, type, default and check.
//!
//! ```toml
//! [serve]
//! listen = ["0.0.0.0:80"]     # --listen, repeatable: an array (or one string)
//! workers = 4                 # --workers 4
//! shutdown-timeout = "2.5s"   # a duration: seconds or a number with a unit
//!
//! [run]
//! map-port = { 3000 = 0 }     # --map-port 3000=0: a FROM=TO flag also takes a table
//! log-timestamps = true       # a switch: true or false
//! command = ["node", "app.js"]
//! env = { NODE_ENV = "production" }   # --env NODE_ENV=production
//! ```
//!
//! - **Keys** are the flags' long names exactly as `--help` spells them (`max-restarts`; a
//!   `max_restarts` is an unknown key, with a "did you mean"), and `command` for `herd run`'s
//!   program and arguments. One spelling, so a file can be checked against `--help` by eye.
//! - **Tables**: `[serve]`, `[proxy]`, `[run]`; one file can hold all three, and each
//!   subcommand reads its own. Any other table, and a missing table for the subcommand run,
//!   is an error.
//! - **Values** are checked here, each by its own flag's value parser, so that a bad one is
//!   reported as `herd.toml:7: policy: unknown policy 'fastest' (…)`: the file, the line of
//!   the key and the key (exit 2, like every usage error).
//! - **Overrides**: the file's settings become arguments placed before the command line's,
//!   and a setting the command line also gives is left out, so the command line *replaces*
//!   it; for a repeatable flag (`--listen`, `--env`, `--target`) it replaces the file's whole
//!   list rather than adding to it. The combined arguments are then parsed by clap like any
//!   command line, so `required`, `requires` and the defaults hold for the file as for flags.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use toml::{Spanned, Value};

use super::Cli;

/// The subcommands a file has a table for.
const TABLES: &[&str] = &["serve", "proxy", "run"];

/// `args` (the whole command line, program name first) with the settings of the file named by
/// `--config` put in; `args` unchanged when there is no `--config`. The error is one line
/// naming the file (and the line and key, when one is at fault).
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    // A first parse that forgives everything (missing required flags, bad values), only to
    // learn the file, the subcommand and which settings the command line gives. Help and
    // version requests fail even here: the real parse answers them, without the file.
    let Ok(matches) = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&args)
    else {
        return Ok(args);
    };
    let Some(path) = matches.get_one::<std::path::PathBuf>("config") else {
        return Ok(args);
    };
    let Some((name, given)) = matches.subcommand() else {
        return Ok(args);
    };
    if !TABLES.contains(&name) {
        return Err(format!(
            "--config: herd {name} takes no config file (only serve, proxy and run do)"
        ));
    }
    File::read(path)?.apply(args, name, given)
}

/// Where the subcommand's name is in `args`: after the program name and `--config PATH` (or
/// `--config=PATH`), the only things that can come before it.
fn subcommand_index(args: &[OsString], name: &str) -> Option<usize> {
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        if arg == name {
            return Some(i);
        } else if arg == "--config" {
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// A config file as read: its text (to turn offsets into lines) and its tables, keys and
/// values with their places in the text.
struct File {
    /// The path as the user wrote it, to start every message with.
    path: String,
    text: String,
    tables: BTreeMap<Spanned<String>, Spanned<Table>>,
}

/// One `[subcommand]` table: each key with its value.
struct Table(BTreeMap<Spanned<String>, Spanned<Value>>);

impl File {
    fn read(path: &Path) -> Result<File, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        File::parse(shown, text)
    }

    /// The file at `path` (as it is to be named) whose contents are `text`.
    fn parse(path: String, text: String) -> Result<File, String> {
        let mut file = File {
            path,
            text,
            tables: BTreeMap::new(),
        };
        match toml::from_str(&file.text) {
            Ok(tables) => {
                file.tables = tables;
                Ok(file)
            }
            Err(e) => {
                // toml's messages are one line but for a few that add a hint on the next.
                let message = e.message().trim().replace('\n', "; ");
                Err(match e.span() {
                    Some(span) => file.at(span.start, message),
                    None => format!("{}: {message}", file.path),
                })
            }
        }
    }

    /// `args` with the settings of table `name` put in, for subcommand `name`; `given` is
    /// what the command line alone gives that subcommand.
    fn apply(
        &self,
        args: Vec<OsString>,
        name: &str,
        given: &ArgMatches,
    ) -> Result<Vec<OsString>, String> {
        let Some(at) = subcommand_index(&args, name) else {
            return Ok(args);
        };
        let settings = settings(self, name, self.table(name)?, given)?;
        let (before, after) = args.split_at(at + 1);
        let mut expanded: Vec<OsString> = before.to_vec();
        expanded.extend(settings.flags);
        expanded.extend(after.iter().cloned());
        if let Some(command) = settings.command {
            // There only when the command line has no command of its own (it is left out
            // otherwise): after the command line's `--`, or after one added here.
            if !after.iter().any(|a| a == "--") {
                expanded.push("--".into());
            }
            expanded.extend(command);
        }
        Ok(expanded)
    }

    /// The table of subcommand `name`, after checking that every table is one herd knows.
    fn table(&self, name: &str) -> Result<&Table, String> {
        for table in self.tables.keys() {
            if !TABLES.contains(&table.as_ref().as_str()) {
                let hint = did_you_mean(table.as_ref(), TABLES.iter().copied())
                    .map(|t| format!(" (did you mean [{t}]?)"))
                    .unwrap_or_else(|| " (expected [serve], [proxy] or [run])".to_string());
                return Err(self.at(
                    table.span().start,
                    format!("unknown table [{}]{hint}", table.as_ref()),
                ));
            }
        }
        self.tables
            .iter()
            .find(|(table, _)| table.as_ref() == name)
            .map(|(_, table)| table.as_ref())
            .ok_or_else(|| format!("{}: no [{name}] table", self.path))
    }

    /// `message`, prefixed with the file and the line of byte `offset`.
    fn at(&self, offset: usize, message: impl fmt::Display) -> String {
        let line = self.text.as_bytes()[..offset.min(self.text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("{}:{line}: {message}", self.path)
    }
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Table, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = Table;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // What a top-level `workers = 4`, outside any table, is told.
                f.write_str("a table: every setting goes under [serve], [proxy] or [run]")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Table, A::Error> {
                let mut entries = BTreeMap::new();
                while let Some((key, value)) = map.next_entry()? {
                    entries.insert(key, value);
                }
                Ok(Table(entries))
            }
        }
        deserializer.deserialize_map(TableVisitor)
    }
}

/// What a table becomes: arguments for before the command line's, and `herd run`'s command.
struct Settings {
    flags: Vec<OsString>,
    command: Option<Vec<OsString>>,
}

/// The arguments `table` stands for, for subcommand `name`; `given` is what the command
/// line gives, whose settings win.
fn settings(
    file: &File,
    name: &str,
    table: &Table,
    given: &ArgMatches,
) -> Result<Settings, String> {
    let cli = Cli::command();
    let subcommand = cli
        .find_subcommand(name)
        .expect("TABLES names subcommands of Cli");
    let mut entries: Vec<_> = table.0.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut settings = Settings {
        flags: Vec::new(),
        command: None,
    };
    for (key, value) in entries {
        let at =
            |message: String| file.at(key.span().start, format!("{}: {message}", key.as_ref()));
        let Some(arg) = subcommand
            .get_arguments()
            .find(|arg| key_of(arg) == Some(key.as_ref().as_str()))
        else {
            let hint = did_you_mean(key.as_ref(), subcommand.get_arguments().filter_map(key_of))
                .map(|k| format!(" (did you mean '{k}'?)"))
                .unwrap_or_default();
            return Err(file.at(
                key.span().start,
                format!("unknown key '{}' in [{name}]{hint}", key.as_ref()),
            ));
        };
        let values = values(arg, value.as_ref()).map_err(at)?;
        for v in &values {
            check(arg, v).map_err(|e| at(describe(&e)))?;
        }
        // Checked even when the command line replaces it: a bad file is bad either way.
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let long = arg.get_long();
        match (long, arg.get_action()) {
            (None, _) => settings.command = Some(values.into_iter().map(OsString::from).collect()),
            (Some(long), ArgAction::SetTrue | ArgAction::SetFalse) => {
                if values.first().is_some_and(|v| v == "true") {
                    settings.flags.push(format!("--{long}").into());
                }
            }
            // `--flag=value`, so that a value starting with `-` is not taken for a flag.
            (Some(long), _) => settings
                .flags
                .extend(values.iter().map(|v| format!("--{long}={v}").into())),
        }
    }
    Ok(settings)
}

/// The key that sets `arg`: its long name, or the id of a positional (`command`); `None` for
/// the flags a file cannot set (`--help`).
fn key_of(arg: &Arg) -> Option<&str> {
    match arg.get_action() {
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version => None,
        _ if arg.is_positional() => Some(arg.get_id().as_str()),
        _ => arg.get_long(),
    }
}

/// `value` as the strings the command line would give `arg`: for a switch, `true` when it is
/// on; the error says what the key takes.
fn values(arg: &Arg, value: &Value) -> Result<Vec<String>, String> {
    let found = || format!("found {}", article(value.type_str()));
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => {
            let on = matches!(arg.get_action(), ArgAction::SetTrue);
            match value {
                Value::Boolean(b) => Ok(if *b == on {
                    vec!["true".into()]
                } else {
                    vec![]
                }),
                _ => Err(format!("expected true or false, {}", found())),
            }
        }
        ArgAction::Set => {
            Ok(vec![scalar(value).map_err(|_| {
                format!("expected a string or a number, {}", found())
            })?])
        }
        ArgAction::Append => {
            let pairs = arg
                .get_value_names()
                .is_some_and(|names| names.iter().any(|n| n.contains('=')));
            let what = if arg.is_positional() {
                "an array of strings (the program and its arguments)"
            } else if pairs {
                "an array, a table or one value"
            } else {
                "an array or one value"
            };
            let expected = |why: String| format!("expected {what}, {why}");
            match value {
                Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        scalar(item).map_err(|_| {
                            expected(format!("found {} in it", article(item.type_str())))
                        })
                    })
                    .collect(),
                Value::Table(entries) if pairs => entries
                    .iter()
                    .map(|(name, item)| match item {
                        Value::Boolean(b) => Ok(format!("{name}={b}")),
                        _ => scalar(item).map(|v| format!("{name}={v}")).map_err(|_| {
                            expected(format!("found {} for '{name}'", article(item.type_str())))
                        }),
                    })
                    .collect(),
                _ => Ok(vec![scalar(value).map_err(|_| expected(found()))?]),
            }
        }
        _ => Err("cannot be set in a config file".to_string()),
    }
}

/// A string or a number as its text; anything else is for the caller to explain.
fn scalar(value: &Value) -> Result<String, ()> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        _ => return Err(()),
    };
    Ok(text)
}

/// "a string", "an integer".
fn article(type_name: &str) -> String {
    let a = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{a} {type_name}")
}

/// Runs `arg`'s own value parser on `value`, as clap would on the command line.
fn check(arg: &Arg, value: &str) -> Result<(), clap::Error> {
    if value.contains('\0') {
        // No command line can carry one, and no program could be given one.
        return Err(clap::Error::raw(
            ErrorKind::ValueValidation,
            "a value cannot contain a NUL character",
        ));
    }
    // A command of one positional with the flag's parser; after `--`, `value` is taken as it is.
    let probe = clap::Command::new("herd")
        .no_binary_name(true)
        .arg(Arg::new("value").value_parser(arg.get_value_parser().clone()));
    probe
        .try_get_matches_from([OsStr::new("--"), OsStr::new(value)])
        .map(drop)
}

/// A value error of clap's, on one line and without the name of the probe's argument.
fn describe(err: &clap::Error) -> String {
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    match err.kind() {
        ErrorKind::InvalidValue => match err.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!(
                "invalid value '{value}' (expected one of: {})",
                valid.join(", ")
            ),
            _ => format!("invalid value '{value}'"),
        },
        _ => match std::error::Error::source(err) {
            // The parser's own words ("unknown policy 'fastest' (…)", "0 is not in 1..=1024")
            // name the value themselves, mostly; when not, say it.
            Some(why) if why.to_string().contains(value.as_str()) => why.to_string(),
            Some(why) => format!("invalid value '{value}': {why}"),
            None => {
                let text = err.to_string();
                let first = text.lines().next().unwrap_or_default();
                first.trim_start_matches("error: ").to_string()
            }
        },
    }
}

/// The candidate closest to `wrong` if it is close enough to be a typo of it: the same but
/// for `_` for `-` or case, or at most two edits away.
fn did_you_mean<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let normal = wrong.replace('_', "-").to_lowercase();
    candidates
        .map(|c| {
            let d = if c == normal {
                0
            } else {
                1 + edit_distance(&normal, c)
            };
            (d, c)
        })
        .filter(|&(d, _)| d <= 3)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance: insertions, deletions and substitutions of one character.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
