//! The `eddy` binary: see [`eddy::run`].

fn main() -> std::process::ExitCode {
    eddy::run()
}
