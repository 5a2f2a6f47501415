//! The `herd` binary: see `herd --help`. Everything lives in the library.

fn main() -> std::process::ExitCode {
    herd::cli::main()
}
