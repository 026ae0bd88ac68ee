//! The `tollgate` proxy binary. Everything lives in [`tollgate::proxy`].

// mimalloc: fewer cycles per allocation than glibc's malloc on the request
// path, and less fragmentation with thousands of streams (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tollgate::proxy::cli::main()
}
