//! The sample personas in `personas/`, compiled into the binary so that it
//! runs from anywhere with nothing beside it.

use super::{Persona, PersonaError, parse_persona};

macro_rules! persona {
    ($id:literal) => {
        (
            $id,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/personas/",
                $id,
                ".toml"
            )),
        )
    };
}

/// (id, TOML text) of every library persona, in `personas/`.
pub const LIBRARY: &[(&str, &str)] = &[
    persona!("alicia-rodriguez"),
    persona!("samuel-okafor"),
    persona!("mei-lin-chen"),
    persona!("tomasz-nowak"),
    persona!("priya-raman"),
    persona!("david-levin"),
    persona!("aroha-ngata"),
    persona!("jordan-blake"),
    persona!("kenji-watanabe"),
];

/// Every library persona, parsed.
pub fn library() -> Result<Vec<Persona>, Vec<PersonaError>> {
    LIBRARY
        .iter()
        .map(|(id, text)| parse_persona(id, &library_file(id), text))
        .collect()
}

/// One library persona by id, or None when the library has no such id.
pub fn library_persona(id: &str) -> Option<Result<Persona, Vec<PersonaError>>> {
    LIBRARY
        .iter()
        .find(|(known, _)| *known == id)
        .map(|(id, text)| parse_persona(id, &library_file(id), text))
}

fn library_file(id: &str) -> String {
    format!("personas/{id}.toml")
}
