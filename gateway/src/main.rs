//! The `coopgate` binary. Everything it does is in [`coopgate::cli`].

// A proxy allocates and frees many small buffers per request; mimalloc does that
// measurably cheaper than the system allocator (see bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    coopgate::cli::main()
}
