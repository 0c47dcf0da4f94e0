//! The `nfbench` binary: everything lives in the library; this only hands the command line to it.

fn main() -> std::process::ExitCode {
    nfbench::kernels::configure_cpu_runtime();
    nfbench::cli::main()
}
