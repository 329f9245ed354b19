//! A standalone parser worker, for this crate's tests and for programs that embed the
//! pool without the `zhiku` binary (which serves the same protocol as `zhiku parse-worker`).

fn main() -> std::process::ExitCode {
    zhiku_sandbox::worker_program()
}
