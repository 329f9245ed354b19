//! The parser worker the fuzzer runs its inputs in, so that a crash kills it and not the
//! fuzzer.

fn main() -> std::process::ExitCode {
    zhiku_sandbox::worker_program()
}
