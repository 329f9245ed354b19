//! A standalone parser worker, for this crate's tests and for programs that embed the
//! pool without the `zhiku` binary (which serves the same protocol as `zhiku parse-worker`).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match zhiku_sandbox::worker_main(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zhiku-parse-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
