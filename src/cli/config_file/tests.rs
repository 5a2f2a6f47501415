use super::*;
use clap::Parser;

/// What `herd ARGS…` becomes with `toml` as its config file.
fn expanded(toml: &str, args: &[&str]) -> Result<Vec<String>, String> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let matches = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .unwrap();
    let (name, given) = matches.subcommand().unwrap();
    let file = File::parse("herd.toml".into(), toml.into())?;
    let expanded = file.apply(args, name, given)?;
    Ok(expanded
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect())
}

#[test]
fn the_file_goes_before_the_command_line_and_loses_what_it_gives() {
    let toml = "[serve]\nlisten = [\"a:1\", \"b:2\"]\nworkers = 3\n";
    assert_eq!(
        expanded(toml, &["herd", "serve", "--app", "bench"]).unwrap(),
        [
            "herd",
            "serve",
            "--listen=a:1",
            "--listen=b:2",
            "--workers=3",
            "--app",
            "bench"
        ]
    );
    assert_eq!(
        expanded(toml, &["herd", "serve", "-l", "c:3", "-w", "1"]).unwrap(),
        ["herd", "serve", "-l", "c:3", "-w", "1"]
    );
}

#[test]
fn the_files_command_comes_last_unless_the_command_line_has_one() {
    let toml = "[run]\ncommand = [\"node\", \"--inspect\", \"app.js\"]\nlog-timestamps = true\n\
                log-file = \"-x.log\"\nenv = { A = 1, B = \"x=y\" }\n";
    let flags = [
        "--log-timestamps",
        "--log-file=-x.log",
        "--env=A=1",
        "--env=B=x=y",
    ];
    let with = |tail: &[&str]| -> Vec<String> {
        ["herd", "run"]
            .iter()
            .chain(&flags)
            .chain(tail)
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(
        expanded(toml, &["herd", "run"]).unwrap(),
        with(&["--", "node", "--inspect", "app.js"])
    );
    assert_eq!(
        expanded(toml, &["herd", "run", "--"]).unwrap(),
        with(&["--", "node", "--inspect", "app.js"])
    );
    assert_eq!(
        expanded(toml, &["herd", "run", "python3", "x.py"]).unwrap(),
        with(&["python3", "x.py"])
    );
    assert_eq!(
        expanded(toml, &["herd", "run", "--", "python3", "--env", "x"]).unwrap(),
        with(&["--", "python3", "--env", "x"])
    );
    // A switch set to false is left out, as a flag not given.
    let off = expanded("[run]\nlog-timestamps = false\n", &["herd", "run"]).unwrap();
    assert_eq!(off, ["herd", "run"]);
}

#[test]
fn typos_find_their_key() {
    let keys = ["workers", "max-restarts", "restart-window", "listen"];
    let guess = |wrong| did_you_mean(wrong, keys.iter().copied());
    assert_eq!(guess("worker"), Some("workers"));
    assert_eq!(guess("max_restarts"), Some("max-restarts"));
    assert_eq!(guess("Max-Restarts"), Some("max-restarts"));
    assert_eq!(guess("listne"), Some("listen"));
    assert_eq!(guess("threads"), None);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

/// The README's example file, the one `scripts/herd.service` reads: every table parses
/// as its subcommand's flags, and its pid file is the unit's PIDFile=.
#[test]
fn the_readme_example_is_a_valid_file_for_the_systemd_unit() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("```toml\n# /etc/herd/herd.toml")
        .expect("the README's example file")
        + "```toml\n".len();
    let toml = &readme[start..start + readme[start..].find("```").unwrap()];
    for name in TABLES {
        let args = expanded(toml, &["herd", name]).unwrap();
        if let Err(e) = Cli::try_parse_from(&args) {
            panic!("[{name}]: {args:?}: {e}");
        }
        if *name == "serve" {
            assert!(args.contains(&"--pid-file=/run/herd/herd.pid".to_string()));
        }
    }
    let unit = include_str!("../../../scripts/herd.service");
    assert!(unit
        .lines()
        .any(|l| l == "ExecStart=/usr/local/bin/herd --config /etc/herd/herd.toml serve"));
    assert!(unit.lines().any(|l| l == "PIDFile=/run/herd/herd.pid"));
}
