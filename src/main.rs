#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    mailvault::cli::main()
}
