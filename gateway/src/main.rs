fn main() -> std::process::ExitCode { coopgate::cli::main() }
