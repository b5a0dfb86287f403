//! With feature `tch`: libtorch's folder comes from `LIBTORCH` (torch-sys reads the same
//! variable) and the binaries, tests and benches get an rpath to its `lib/`, because torch-sys
//! passes only `-L` and the libraries are not on the loader's path.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    match std::env::var("LIBTORCH") {
        Ok(dir) if !dir.is_empty() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
        }
        _ => {
            eprintln!(
                "papilla-host: feature `tch` needs LIBTORCH: run eval \"$(scripts/fetch-libtorch.sh)\" first"
            );
            std::process::exit(1);
        }
    }
}
