//! Naming personas on the command line: one by library id or file
//! (`resolve`), or many for a batch (`select`: `all`, `ID,ID,...`, a glob
//! over library ids, or a folder of persona files).

use super::{LIBRARY, Persona, PersonaError, library_persona, load_file};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonaLookupError {
    #[error("no persona '{spec}': not a library id ({}) and not a file", library_ids().join(", "))]
    Unknown { spec: String },
    #[error("invalid persona:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<PersonaError>),
    #[error("cannot read the persona folder {path}: {message}")]
    Folder { path: String, message: String },
    #[error(
        "'{0}' names no personas: give all, library ids separated by commas, a glob over library ids (e.g. 'a*'), or a folder of .toml files"
    )]
    Empty(String),
}

fn library_ids() -> Vec<&'static str> {
    LIBRARY.iter().map(|(id, _)| *id).collect()
}

/// A library id, or a path to a persona file.
pub fn resolve(spec: &str) -> Result<Persona, PersonaLookupError> {
    let path = Path::new(spec);
    let looks_like_file = spec.ends_with(".toml") || spec.contains(std::path::MAIN_SEPARATOR);
    let loaded = if looks_like_file || path.is_file() {
        load_file(path)
    } else {
        library_persona(spec).ok_or_else(|| PersonaLookupError::Unknown { spec: spec.into() })?
    };
    loaded.map_err(PersonaLookupError::Invalid)
}

/// The personas a batch names, as specs `resolve` takes, in a stable
/// order: `all` (the library), a folder (its `.toml` files, sorted), a
/// glob with `*` and `?` over library ids, or a comma-separated list of
/// ids and files. Every one is resolved here, so a bad one stops the batch
/// before it starts.
pub fn select(selection: &str) -> Result<Vec<String>, PersonaLookupError> {
    let selection = selection.trim();
    let specs: Vec<String> = if selection == "all" {
        library_ids().into_iter().map(String::from).collect()
    } else if Path::new(selection).is_dir() {
        let folder = |e: std::io::Error| PersonaLookupError::Folder {
            path: selection.into(),
            message: e.to_string(),
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(selection).map_err(folder)? {
            let path = entry.map_err(folder)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path.display().to_string());
            }
        }
        files.sort();
        files
    } else if selection.contains(['*', '?']) {
        library_ids()
            .into_iter()
            .filter(|id| glob_matches(selection, id))
            .map(String::from)
            .collect()
    } else {
        selection
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    if specs.is_empty() {
        return Err(PersonaLookupError::Empty(selection.into()));
    }
    for spec in &specs {
        resolve(spec)?;
    }
    Ok(specs)
}

/// Whether `text` matches `pattern`, where `*` is any run of characters
/// and `?` any one character.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer match with backtracking to the last star.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_library_ids() {
        assert!(glob_matches("a*", "alicia-rodriguez"));
        assert!(glob_matches("*-n*", "tomasz-nowak"));
        assert!(glob_matches("?ei-lin-chen", "mei-lin-chen"));
        assert!(!glob_matches("a*", "samuel-okafor"));
        assert!(!glob_matches("alicia", "alicia-rodriguez"));
    }

    #[test]
    fn selections_name_library_personas() {
        assert_eq!(select("all").unwrap().len(), LIBRARY.len());
        assert_eq!(
            select("samuel-okafor, alicia-rodriguez").unwrap(),
            ["samuel-okafor", "alicia-rodriguez"]
        );
        assert_eq!(select("a*").unwrap(), ["alicia-rodriguez", "aroha-ngata"]);
        let error = select("nobody").unwrap_err();
        assert!(error.to_string().contains("no persona 'nobody'"), "{error}");
        assert!(matches!(select("zz*"), Err(PersonaLookupError::Empty(_))));
        let folder = select(concat!(env!("CARGO_MANIFEST_DIR"), "/personas")).unwrap();
        assert_eq!(folder.len(), LIBRARY.len());
        assert!(folder[0].ends_with("personas/alicia-rodriguez.toml"));
    }
}
