//! The real coopgate command line, built inside the test package so that the
//! end-to-end tests can start it as a process (see `tests/Cargo.toml`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    coopgate::cli::main()
}
