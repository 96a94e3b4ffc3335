//! The semantic layer: a support vector machine (`svm`) over each
//! utterance's sentence vector (all-MiniLM-L6-v2, `model::encoder`),
//! trained on the tuning split. Where the learned layer reads which words
//! and letters an utterance shares with the tuning lines, this one reads
//! what it means, so "I've sorted who gets the dog" lands near "I've
//! written my will" without a word in common.
//!
//! The tuning split's vectors take the encoder about a minute and a half
//! to make, and training on them (deterministic) about twenty seconds, so
//! both are cached beside the encoder, keyed by what they depend on. Each
//! change to the tuning split or the head leaves the old files behind, so
//! writing a cache deletes the ones unread for a month.

use super::svm::Svm;
use crate::model::encoder::{self, DIMENSIONS, Encoder, EncoderError};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How many utterances are encoded between reports of progress (the
/// encoder reads one at a time).
const ENCODE_BATCH: usize = 32;

/// What the encoder reads of an utterance: the text as the other layers
/// read it (shorthand spelt out, figures of speech taken out).
pub fn input(text: &str) -> String {
    super::rules::without_idioms(&super::normalize(text)).into_owned()
}

/// What the encoder reads of each utterance of a labelled set.
pub fn inputs(set: &[super::eval::Labelled]) -> Vec<String> {
    set.iter().map(|l| input(&l.text)).collect()
}

/// The head trained on `texts` (labelled `risk`): read from the cache
/// when it was trained on them before (training takes seconds, which every
/// process that runs a session would pay), otherwise encoded, trained and
/// cached.
pub fn trained_cached(
    encoder: &Encoder,
    texts: &[&str],
    risk: &[bool],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Svm, EncoderError> {
    let path = cache_path(encoder, texts, risk);
    if let Some(svm) = read_floats(&path).and_then(|v| Svm::from_floats(&v, DIMENSIONS)) {
        // Its vectors are not read, but they are what a change to the
        // head's settings retrains from (minutes to make again): kept too.
        mark_used(&cache_path(encoder, texts, &[]));
        return Ok(svm);
    }
    let vectors = vectors_cached(encoder, texts, progress)?;
    // Every line is encoded now (or was cached); training takes seconds
    // more, and a caller showing progress shows it during them too.
    progress(texts.len(), texts.len());
    let svm = Svm::train(&vectors, risk);
    let _ = write_floats(&path, &svm.to_floats());
    Ok(svm)
}

/// The sentence vectors of `texts`, read from the cache beside the encoder
/// when it holds them (keyed by the texts themselves), otherwise made and
/// cached. `progress` is told how many are done while they are made.
pub fn vectors_cached(
    encoder: &Encoder,
    texts: &[&str],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>, EncoderError> {
    let path = cache_path(encoder, texts, &[]);
    if let Some(values) = read_floats(&path).filter(|v| v.len() == texts.len() * DIMENSIONS) {
        return Ok(values.chunks(DIMENSIONS).map(<[f32]>::to_vec).collect());
    }
    let vectors = vectors(encoder, texts, progress)?;
    // A cache that cannot be written (a read-only or full disk) costs the
    // next process the same minute again; it is not an error.
    let _ = write_floats(&path, &vectors.concat());
    Ok(vectors)
}

/// The sentence vectors of `texts`, made now; `progress` is told how
/// many are done.
pub fn vectors(
    encoder: &Encoder,
    texts: &[&str],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>, EncoderError> {
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(ENCODE_BATCH) {
        vectors.extend(encoder.encode(chunk)?);
        progress(vectors.len(), texts.len());
    }
    Ok(vectors)
}

/// A cache file's path, keyed by everything its numbers depend on: the
/// encoder's files, how it encodes, what it makes on this machine
/// (`Encoder::fingerprint`), the texts, and for a head their labels and
/// how it is trained.
fn cache_path(encoder: &Encoder, texts: &[&str], risk: &[bool]) -> PathBuf {
    let mut hasher = Sha256::new();
    for (name, sha) in encoder::FILES {
        hasher.update(format!("{name} {sha}\n"));
    }
    hasher.update(encoder::ENCODING);
    hasher.update(encoder.fingerprint());
    for text in texts {
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    if !risk.is_empty() {
        hasher.update(risk.iter().map(|&r| u8::from(r)).collect::<Vec<u8>>());
        hasher.update(super::svm::settings());
    }
    let key = crate::model::default_model::hex(&hasher.finalize()[..12]);
    let extension = if risk.is_empty() { "f32" } else { "svm" };
    encoder::default_dir()
        .join("vectors")
        .join(format!("{key}.{extension}"))
}

/// The floats of a cache file, or None if it is missing or not whole
/// floats.
fn read_floats(path: &Path) -> Option<Vec<f32>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    mark_used(path);
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn write_floats(path: &Path, values: &[f32]) -> std::io::Result<()> {
    let dir = path.parent().expect("the cache path has a folder");
    std::fs::create_dir_all(dir)?;
    // Written aside and renamed, so a process killed mid-write leaves no
    // half a cache for the next one to read.
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    for value in values {
        file.write_all(&value.to_le_bytes())?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, path)?;
    prune(dir, UNUSED_FOR);
    Ok(())
}

/// Marks a cache file as used now, so `prune` keeps it. Best effort: a
/// read-only disk, or a file another user owns, keeps its old time.
fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// How long a cache file may go unread before a new one's writing
/// deletes it: each change to the tuning split or the head's settings
/// leaves the old vectors (24 MB) and machine (13 MB) behind.
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Deletes the cache files (`.f32`, `.svm`, and partial files a killed
/// process left) in `dir` that have not been read or written for `unused`.
fn prune(dir: &Path, unused: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "f32" || e == "svm" || e.starts_with("partial-"));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > unused));
        if ours && stale {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_file_is_read_back_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("x.f32");
        write_floats(&path, &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(read_floats(&path), Some(vec![1.0, -2.5, 3.25]));
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert_eq!(read_floats(&path), None);
        assert_eq!(read_floats(&dir.path().join("none.f32")), None);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.f32"], "no partial file is left behind");
    }

    #[test]
    fn caches_unused_for_a_month_are_deleted_when_a_new_one_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let age = |name: &str, days: u64| {
            let then = SystemTime::now() - Duration::from_secs(days * 24 * 60 * 60);
            let file = std::fs::File::options().write(true).open(at(name)).unwrap();
            file.set_modified(then).unwrap();
        };
        for name in ["old.f32", "old.svm", "read.f32", "recent.svm", "notes.txt"] {
            write_floats(&at(name), &[1.0]).unwrap();
        }
        std::fs::write(at("old.partial-7"), [0u8; 3]).unwrap();
        for name in [
            "old.f32",
            "old.svm",
            "read.f32",
            "notes.txt",
            "old.partial-7",
        ] {
            age(name, 40);
        }
        age("recent.svm", 20);
        // Reading a cache marks it as used.
        assert_eq!(read_floats(&at("read.f32")), Some(vec![1.0]));
        write_floats(&at("new.f32"), &[2.0]).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["new.f32", "notes.txt", "read.f32", "recent.svm"]);
    }
}
