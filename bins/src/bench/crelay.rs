//! The C epoll relay (`bins/c/epoll_relay.c`), the floor issue 4 measures
//! the gateway against: fepbench carries its source and compiles it at run
//! time with the machine's C compiler (`$CC`, else `cc`), so the baseline
//! needs no build step outside cargo and no binary in git.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The relay's source, as shipped in `bins/c/`.
pub const EPOLL_RELAY_C: &str = include_str!("../../c/epoll_relay.c");

/// The compiler command: `$CC` split on whitespace (so `CC="gcc -m64"`
/// works), or `cc` when `CC` is unset or blank.
pub fn compiler_command(cc_env: Option<&str>) -> Vec<String> {
    let words: Vec<String> = cc_env
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if words.is_empty() {
        vec!["cc".to_string()]
    } else {
        words
    }
}

/// Writes the source into `dir` as `epoll_relay.c` and compiles it to
/// `dir/epoll_relay` with `<compiler> -O2`. The compiler's output goes to
/// `dir/epoll_relay.build.log`. On failure the error is one line saying
/// why (no compiler, or it failed, with the first line of its complaint),
/// for the caller to report as a skipped leg.
pub fn build(dir: &Path, compiler: &[String]) -> Result<PathBuf, String> {
    let (program, flags) = compiler
        .split_first()
        .ok_or_else(|| "no C compiler command".to_string())?;
    let source = dir.join("epoll_relay.c");
    let binary = dir.join("epoll_relay");
    std::fs::write(&source, EPOLL_RELAY_C)
        .map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let shown = compiler.join(" ");
    let out = Command::new(program)
        .args(flags)
        .arg("-O2")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("no C compiler: cannot run `{shown}`: {e} (set $CC)"))?;
    let mut log = out.stdout.clone();
    log.extend_from_slice(&out.stderr);
    // The log is a convenience; a failure to write it changes nothing.
    let _ = std::fs::write(dir.join("epoll_relay.build.log"), &log);
    if !out.status.success() {
        let first = String::from_utf8_lossy(&log)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(format!(
            "`{shown} -O2 -o {} {}` failed ({}){}",
            binary.display(),
            source.display(),
            out.status,
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        ));
    }
    if !binary.is_file() {
        return Err(format!(
            "`{shown}` succeeded but left no {}",
            binary.display()
        ));
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cc_env_is_split_and_defaults_to_cc() {
        assert_eq!(compiler_command(None), ["cc"]);
        assert_eq!(compiler_command(Some("  ")), ["cc"]);
        assert_eq!(compiler_command(Some("gcc -m64")), ["gcc", "-m64"]);
    }

    #[test]
    fn the_embedded_source_is_the_relay() {
        assert!(EPOLL_RELAY_C.contains("epoll_relay LISTEN_HOST:PORT UPSTREAM_HOST:PORT"));
        assert!(EPOLL_RELAY_C.contains("int main("));
    }

    #[test]
    fn a_missing_compiler_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(dir.path(), &["/nonexistent/cc".to_string()]).unwrap_err();
        assert!(
            err.starts_with("no C compiler: cannot run `/nonexistent/cc`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        assert!(dir.path().join("epoll_relay.c").is_file());
    }

    #[test]
    fn a_failing_compiler_is_reported_with_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(dir.path(), &["false".to_string()]).unwrap_err();
        assert!(err.contains("failed (exit status: 1)"), "{err}");
    }
}
