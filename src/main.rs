//! The `tollgate` proxy binary. Everything lives in [`tollgate::proxy`].

fn main() -> std::process::ExitCode {
    tollgate::proxy::cli::main()
}
