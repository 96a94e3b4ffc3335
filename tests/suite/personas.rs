//! Persona files: the library, and located errors for broken files.

use super::util::{data, run};
use cbtsim::RiskLevel;
use cbtsim::persona::{self, ConversationalStyle, Disclosure, LIBRARY};
use std::collections::BTreeSet;

#[test]
fn every_library_persona_is_valid_and_the_library_is_diverse() {
    let personas = persona::library().unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors.iter().map(|e| format!("{e}\n")).collect::<String>()
        )
    });
    assert!(personas.len() >= 8);
    let styles: BTreeSet<_> = personas.iter().map(|p| p.conversation.style).collect();
    assert_eq!(
        styles.len(),
        ConversationalStyle::ALL.len(),
        "every style is used"
    );
    let ages: Vec<u32> = personas.iter().map(|p| p.identity.age).collect();
    assert!(ages.iter().any(|a| *a < 25) && ages.iter().any(|a| *a > 65));
    let genders: BTreeSet<_> = personas
        .iter()
        .map(|p| p.identity.gender.as_str())
        .collect();
    assert!(genders.len() >= 3);
    let problems: String = personas
        .iter()
        .flat_map(|p| p.background.presenting_problems.iter())
        .map(|p| format!("{p}; "))
        .collect();
    for needed in [
        "depression",
        "generalized anxiety",
        "social anxiety",
        "panic",
        "grief",
        "insomnia",
        "relationship conflict",
        "work stress",
    ] {
        assert!(problems.contains(needed), "no persona with {needed}");
    }
    assert!(
        personas.iter().any(|p| p.risk.level >= RiskLevel::High
            && p.risk.disclosure == Disclosure::AfterTrust),
        "a high-risk persona that discloses only later"
    );
    let alicia = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    assert_eq!(alicia.identity.name, "Alicia Rodriguez");
    assert!(
        alicia
            .background
            .presenting_problems
            .contains(&"grief".to_string())
    );
}

#[test]
fn the_library_matches_the_personas_folder() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("personas");
    let mut on_disk: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut built_in: Vec<String> = LIBRARY.iter().map(|(id, _)| id.to_string()).collect();
    built_in.sort();
    assert_eq!(on_disk, built_in);
}

#[test]
fn persona_check_passes_every_library_file() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("personas");
    let mut args = vec!["persona".to_string(), "check".to_string()];
    for (id, _) in LIBRARY {
        args.push(folder.join(format!("{id}.toml")).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, _) = run(&args);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout.lines().count(), LIBRARY.len());
}

#[test]
fn broken_personas_get_file_line_field_errors() {
    let mut report = String::new();
    for name in [
        "bad-risk-level.toml",
        "missing-fields.toml",
        "wrong-types.toml",
        "Risk_Without_Details.toml",
        "syntax-error.toml",
    ] {
        let path = data(&format!("personas/{name}"));
        let (code, stdout, _) = run(&["persona", "check", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}");
        let prefix = format!("{}:", path.display());
        for line in stdout.lines() {
            assert!(line.starts_with(&prefix), "{line}");
            report += &format!("{}\n", line.replacen(&prefix, &format!("{name}:"), 1));
        }
    }
    insta::assert_snapshot!(report);
}

#[test]
fn the_level_error_reads_as_documented() {
    let path = data("personas/bad-risk-level.toml");
    let (_, stdout, _) = run(&["persona", "check", path.to_str().unwrap()]);
    assert_eq!(
        stdout.trim(),
        format!(
            "{}:57: field risk.level: expected one of none, low, high, imminent",
            path.display()
        )
    );
}
