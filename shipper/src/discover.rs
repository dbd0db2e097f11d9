//! Finding the files to tail: every include glob of every input, minus its excludes. The
//! periodic rescan is the source of truth for new, renamed and deleted files.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::config::Input;

/// A regular file matched by an input.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its path.
    pub path: PathBuf,
    /// Index of the first input that matched it.
    pub input: usize,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes (compressed size for gzip files).
    pub size: u64,
    /// Last modification.
    pub modified: Option<SystemTime>,
}

/// Expands the inputs' globs; a path matched by several inputs belongs to the first. Paths that
/// cannot be read (permissions, vanished between listing and `stat`) are skipped and returned as
/// errors to log.
pub fn scan(inputs: &[Input]) -> (Vec<Found>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (index, input) in inputs.iter().enumerate() {
        for pattern in &input.include {
            let paths = match glob::glob(pattern.as_str()) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(format!("glob {}: {e}", pattern.as_str()));
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(e.to_string());
                        continue;
                    }
                };
                if input.exclude.iter().any(|x| x.matches_path(&path)) {
                    continue;
                }
                if !seen.insert(path.clone()) {
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => found.push(Found {
                        input: index,
                        dev: m.dev(),
                        ino: m.ino(),
                        size: m.len(),
                        modified: m.modified().ok(),
                        path,
                    }),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                }
            }
        }
    }
    (found, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReadFrom;

    #[test]
    fn includes_minus_excludes_first_input_wins() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["tracker.log", "tracker-debug.log", "other.txt"] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("tracker-dir.log")).unwrap();
        let d = dir.path().display();
        let input = |inc: &str, exc: &[&str]| Input {
            include: vec![glob::Pattern::new(&format!("{d}/{inc}")).unwrap()],
            exclude: exc
                .iter()
                .map(|x| glob::Pattern::new(&format!("{d}/{x}")).unwrap())
                .collect(),
            read_from: ReadFrom::Beginning,
            ignore_older: None,
            max_line_bytes: 100,
        };
        let (found, errors) = scan(&[input("tracker*.log", &["*debug*"]), input("*", &[])]);
        assert!(errors.is_empty());
        let mut names: Vec<_> = found
            .iter()
            .map(|f| (f.path.file_name().unwrap().to_str().unwrap(), f.input))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("other.txt", 1),
                ("tracker-debug.log", 1),
                ("tracker.log", 0)
            ]
        );
    }
}
