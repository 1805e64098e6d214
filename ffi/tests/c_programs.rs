//! The C tests: every program in `ffi/tests/c/` is compiled by the system C
//! compiler against `ffi/include` and the library this build made, installed
//! the way `ffi/install.sh` lays it out (`lib/libSaCkpt.so.1` and the
//! `libSaCkpt.so` link), then run with a private `CKPT_DIR`. A program passes
//! by exiting 0; its output is shown when it does not.
//!
//! With `CKPT_C_VALGRIND=1` each program runs under valgrind's memcheck, and
//! any memory error or leak (definite, or possible: valgrind's default; a
//! program that forks, definite only) fails it (CI does this); the programs
//! see the variable too, and the long races among them run fewer rounds.
//! Valgrind runs one thread at a time, and its default hand-over lets a
//! thread that takes and releases a lock in a loop (the programs that hammer
//! one instance from several threads) keep it for minutes while the others
//! wait: `--fair-sched=yes` hands the CPU over in turn, as real cores do.
//! `CKPT_C_ONLY=name,name` runs only those programs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// This build's libSaCkpt.so: `cargo test` leaves it in `deps`, `cargo
/// build` in the profile directory; the newer one is this build's.
fn built_library() -> PathBuf {
    // target/<profile>/deps/c_programs-<hash>
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    let profile = deps.parent().expect("profile directory");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [deps, profile]
        .iter()
        .map(|d| d.join("libSaCkpt.so"))
        .filter_map(|p| Some((modified(&p)?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("libSaCkpt.so not found next to {}", exe.display()))
}

fn compiler() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc).arg("--version").output().is_ok();
    found.then_some(cc)
}

/// Lays the library out as an install does: the real file under its soname,
/// the link name pointing to it.
fn install_lib(into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    std::fs::copy(built_library(), into.join("libSaCkpt.so.1")).unwrap();
    std::os::unix::fs::symlink("libSaCkpt.so.1", into.join("libSaCkpt.so")).unwrap();
}

#[test]
fn c_programs_pass() {
    let Some(cc) = compiler() else {
        eprintln!("SKIPPED: no C compiler (set CC or install cc)");
        return;
    };
    let valgrind = std::env::var_os("CKPT_C_VALGRIND").is_some_and(|v| v == "1");
    if valgrind {
        let found = Command::new("valgrind").arg("--version").output().is_ok();
        assert!(found, "CKPT_C_VALGRIND=1 but valgrind is not installed");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let lib = work.path().join("lib");
    install_lib(&lib);
    let mut programs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    programs.sort();
    if let Ok(only) = std::env::var("CKPT_C_ONLY") {
        let wanted: Vec<&str> = only.split(',').collect();
        programs.retain(|p| {
            let stem = p.file_stem().unwrap_or_default().to_string_lossy();
            wanted.contains(&stem.as_ref())
        });
    }
    assert!(!programs.is_empty(), "no C programs in ffi/tests/c");
    let mut failed = Vec::new();
    for source in &programs {
        let name = source.file_stem().unwrap().to_string_lossy().into_owned();
        let exe = work.path().join(&name);
        let compiled = Command::new(&cc)
            .args([
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-pedantic",
                "-Werror",
                "-g",
                "-pthread",
            ])
            .arg("-I")
            .arg(root.join("include"))
            .arg("-I")
            .arg(root.join("tests/c"))
            .arg(source)
            .arg("-o")
            .arg(&exe)
            .arg(format!("-L{}", lib.display()))
            .arg("-lSaCkpt")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .output()
            .unwrap();
        if !compiled.status.success() {
            failed.push(format!(
                "{name}: does not compile:\n{}",
                String::from_utf8_lossy(&compiled.stderr)
            ));
            continue;
        }
        let dir = work.path().join(format!("ckpt-{name}"));
        // Memory "possibly lost" counts too (valgrind's default, which
        // users run), except in programs that fork: a child holds a copy
        // of its parent's threads' memory (the clock ticker's stack), whose
        // threads it does not have.
        let forks = std::fs::read_to_string(source).is_ok_and(|c| c.contains("fork()"));
        let leak_kinds = if forks {
            "--errors-for-leak-kinds=definite"
        } else {
            "--errors-for-leak-kinds=definite,possible"
        };
        let mut command = if valgrind {
            let mut v = Command::new("valgrind");
            v.args([
                "--quiet",
                "--fair-sched=yes",
                "--error-exitcode=99",
                "--leak-check=full",
                leak_kinds,
            ])
            .arg(format!(
                "--suppressions={}",
                root.join("tests/c/valgrind.supp").display()
            ))
            .arg(&exe);
            v
        } else {
            Command::new(&exe)
        };
        let started = std::time::Instant::now();
        let run = command.env("CKPT_DIR", &dir).output().unwrap();
        let took = started.elapsed().as_secs_f64();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        if run.status.success() {
            let how = if valgrind { " (memcheck clean)" } else { "" };
            eprintln!("{name}: ok{how} ({took:.1} s)");
        } else {
            failed.push(format!("{name}: {}:\n{out}", run.status));
        }
    }
    assert!(
        failed.is_empty(),
        "C programs failed:\n{}",
        failed.join("\n")
    );
}

/// The headers compile cleanly as C99 and as C++, with classic and extended
/// names.
#[test]
fn headers_compile_as_c99_and_cxx() {
    let Some(cc) = compiler() else {
        eprintln!("SKIPPED: no C compiler (set CC or install cc)");
        return;
    };
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let have_cxx = Command::new(&cxx).arg("--version").output().is_ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("headers.c");
    std::fs::write(
        &source,
        "#include <saAis.h>\n#include <saCkpt.h>\n#include <saCkpt_B_02_03.h>\n\
         #include <clCkptHotStandby.h>\n\
         int main(void) { SaNameT n; SaCkptSectionIdT id = SA_CKPT_DEFAULT_SECTION_ID;\n\
         (void)n; (void)id; return 0; }\n",
    )
    .unwrap();
    let mut runs = vec![(cc.clone(), "c", "-std=c99")];
    if have_cxx {
        runs.push((cxx.clone(), "c++", "-std=c++11"));
    } else {
        eprintln!("SKIPPED (C++ part): no C++ compiler (set CXX or install c++)");
    }
    for (compiler, language, standard) in runs {
        for extended in [false, true] {
            let mut c = Command::new(&compiler);
            c.args([
                "-x",
                language,
                standard,
                "-Wall",
                "-Wextra",
                "-pedantic",
                "-Werror",
            ])
            .arg("-fsyntax-only")
            .arg("-I")
            .arg(root.join("include"));
            if extended {
                c.arg("-DSA_EXTENDED_NAME_SOURCE");
            }
            let out = c.arg(&source).output().unwrap();
            assert!(
                out.status.success(),
                "{language} {standard} (extended names: {extended}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
