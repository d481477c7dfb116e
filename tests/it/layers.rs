//! The layering rule of docs/ARCHITECTURE.md, checked over the source: each top-level module
//! names (`crate::...`) only the modules below it. Comments and a file's `#[cfg(test)]` tail
//! (and `tests.rs` files) are not held to it.

use std::path::{Path, PathBuf};

/// Which modules each module may use; `*` anything. Keep in step with docs/ARCHITECTURE.md.
const RULES: &[(&str, &[&str])] = &[
    ("secret", &[]),
    ("sync", &[]),
    ("metrics", &[]),
    ("process", &[]),
    ("text", &[]),
    ("clock", &["sync"]),
    ("db", &["clock", "metrics", "secret", "sync"]),
    ("cache", &["db", "clock", "secret", "sync"]),
    ("activity", &["db", "clock", "text"]),
    ("settings", &["cache", "db", "secret", "sync"]),
    (
        "identity",
        &[
            "settings", "cache", "activity", "db", "clock", "metrics", "secret", "sync", "text",
        ],
    ),
    (
        "api",
        &["identity", "settings", "metrics", "secret", "sync", "text"],
    ),
    ("telemetry", &["settings"]),
    ("cli", &["settings"]),
    ("devidp", &["settings", "clock", "secret", "sync"]),
    (
        "web",
        &[
            "identity", "api", "cache", "activity", "db", "settings", "clock", "metrics",
            "process", "secret", "sync", "text",
        ],
    ),
    (
        "worker",
        &[
            "identity", "api", "cache", "activity", "db", "settings", "clock", "metrics",
            "process", "secret", "sync", "text",
        ],
    ),
    ("commands", &["*"]),
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The `crate::name` paths a line of code names (also `crate::{a, b::c}`).
fn named_modules(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        } else {
            names.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    names
}

/// `(file, line, module, named)` for every name a module may not use.
fn crossings(src: &Path) -> Vec<(String, usize, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some((_, allowed)) = RULES.iter().find(|(m, _)| *m == module) else {
            continue; // lib.rs and main.rs may use anything
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            for named in named_modules(code) {
                // An item of the crate root (`crate::Failure`) is the binary's: only for `*`.
                let ok =
                    named == module || allowed.contains(&"*") || allowed.contains(&named.as_str());
                if !ok {
                    found.push((relative.display().to_string(), n + 1, module.clone(), named));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = crossings(&src);
    assert!(
        found.is_empty(),
        "modules naming what their layer may not use (docs/ARCHITECTURE.md, Layers):\n{}",
        found
            .iter()
            .map(|(file, line, module, named)| format!(
                "  src/{file}:{line}: {module} uses crate::{named}"
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_check_finds_a_crossing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("cache")).unwrap();
    std::fs::write(
        dir.path().join("cache/store.rs"),
        "// crate::activity in a comment is fine\n\
         use crate::{db::DbConnection, activity::store};\n\
         #[cfg(test)]\nmod tests { use crate::web; }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("db.rs"), "use crate::Failure;\n").unwrap();
    let found = crossings(dir.path());
    let named: Vec<(&str, &str)> = found
        .iter()
        .map(|(_, _, module, named)| (module.as_str(), named.as_str()))
        .collect();
    assert_eq!(
        named,
        [("cache", "activity"), ("db", "Failure")],
        "{found:?}"
    );
    assert_eq!(
        named_modules("x = crate::db::Database::connect(crate::settings::x)"),
        ["db", "settings"]
    );
}
